"""Job handlers for the worker tests, importable by ``prodloop worker`` subprocesses through
``PRODLOOP_WORKER_MODULES=tests.jobs.recording``.

``test.record`` appends ``"<job id> <worker>"`` to the file named in the payload (one ``write`` of an
``O_APPEND`` file per job, so lines from several processes never interleave); ``test.hang`` writes
``"<job id> <worker> attempt <n>"`` and, on its first attempt only, sleeps ``first_attempt_seconds``
(a worker that hangs, or is killed, mid-job).
"""

from __future__ import annotations

import os
import time
from typing import Any

from prodloop.jobs import JobContext, register_handler


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def record(ctx: JobContext) -> dict[str, Any]:
    _append(ctx.payload["log"], f"{ctx.job_id} {ctx.worker}\n")
    time.sleep(ctx.payload.get("seconds", 0))
    return {"worker": ctx.worker}


def hang(ctx: JobContext) -> dict[str, Any]:
    _append(ctx.payload["log"], f"{ctx.job_id} {ctx.worker} attempt {ctx.attempt}\n")
    if ctx.attempt == 1:
        time.sleep(ctx.payload["first_attempt_seconds"])
    return {"attempt": ctx.attempt}


register_handler("test.record", record)
register_handler("test.hang", hang)
