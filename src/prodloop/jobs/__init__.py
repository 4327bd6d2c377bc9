"""Background jobs shared by any number of ``prodloop worker`` processes, through the store's job
table (``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL): no broker besides the database."""

from prodloop.jobs.queue import (
    JOB_STATUSES,
    Job,
    JobLost,
    claim_jobs,
    complete_job,
    count_jobs,
    enqueue,
    fail_job,
    get_job,
    list_jobs,
    prune_jobs,
    renew_lock,
    retry_delay_seconds,
)
from prodloop.jobs.registry import (
    HANDLER_MODULES,
    handled_kinds,
    load_handler_modules,
    register_handler,
    register_scheduler,
)
from prodloop.jobs.worker import JobContext, WorkerStats, run_job, run_schedulers, run_worker

__all__ = [
    "HANDLER_MODULES",
    "JOB_STATUSES",
    "Job",
    "JobContext",
    "JobLost",
    "WorkerStats",
    "claim_jobs",
    "complete_job",
    "count_jobs",
    "enqueue",
    "fail_job",
    "get_job",
    "handled_kinds",
    "list_jobs",
    "load_handler_modules",
    "prune_jobs",
    "register_handler",
    "register_scheduler",
    "renew_lock",
    "retry_delay_seconds",
    "run_job",
    "run_schedulers",
    "run_worker",
]
