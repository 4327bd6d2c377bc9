"""What the benchmarks share: servers started as subprocesses on loopback, throwaway PostgreSQL
databases, percentiles, and a description of the machine.

Every server is started in its own process group and stopped (SIGTERM, then SIGKILL) however the
benchmark ends; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"
PRODLOOP = ROOT / ".venv" / "bin" / "prodloop"
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks, as numpy does."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds that process ``pid`` has used so far (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def revision() -> str:
    """The git commit the benchmark ran on, with "+dirty" when the work tree had changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def load_average() -> float:
    """The 1-minute load average: other work on the machine skews every figure."""
    return round(os.getloadavg()[0], 2)


def _cpu_times() -> tuple[float, float]:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [float(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)
    return sum(values), idle


def machine_cpu_seconds() -> float:
    """CPU seconds that the whole machine has spent busy since boot (all CPUs together)."""
    total, idle = _cpu_times()
    return (total - idle) / os.sysconf("SC_CLK_TCK")


def busy_cpus(window: float = 1.0, exclude: Sequence[int] = ()) -> float:
    """How many CPUs the machine kept busy during the next ``window`` seconds, not counting the
    processes ``exclude`` (the server under test, which may work in the background)."""
    total0, idle0 = _cpu_times()
    own0 = sum(cpu_seconds(pid) for pid in exclude)
    time.sleep(window)
    total1, idle1 = _cpu_times()
    own = sum(cpu_seconds(pid) for pid in exclude) - own0
    if total1 == total0:
        return 0.0
    cpus = os.cpu_count() or 1
    busy = cpus * (1 - (idle1 - idle0) / (total1 - total0))
    return max(0.0, busy - own / window)


def wait_for_quiet(max_wait: float, threshold: float = 0.3, exclude: Sequence[int] = ()) -> float:
    """Wait (at most ``max_wait`` seconds) until other work keeps fewer than ``threshold`` CPUs busy.

    On a shared 2-core machine a test suite running beside the benchmark halves its figures; this
    returns the busy CPUs last seen, which the results record.
    """
    deadline = time.monotonic() + max_wait
    busy = busy_cpus(exclude=exclude)
    while busy > threshold and time.monotonic() < deadline:
        log(f"  waiting for a quiet machine ({busy:.2f} CPUs busy)")
        busy = busy_cpus(2.0, exclude)
    return round(busy, 2)


def write_results(name: str, document: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class Server:
    """A server running as a subprocess, listening on ``url``."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    workdir: Path
    log: Path
    info: dict[str, Any] = field(default_factory=dict)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(self, path: str, timeout: float) -> None:
        """Wait until GET ``path`` answers 200; fail at once if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                status = self.process.returncode
                raise RuntimeError(
                    f"{self.name} exited with status {status} while starting:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError):
                status, _ = http_get(self.url + path, timeout=2)
                if status == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer {path} within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@contextlib.contextmanager
def run_server(
    name: str,
    command: list[str],
    env: dict[str, str],
    port: int,
    workdir: Path,
    ready_path: str,
    timeout: float = 120.0,
) -> Iterator[Server]:
    """Start ``command`` in its own process group, wait until it is ready, and stop it afterwards."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name=name, process=process, url=f"http://{HOST}:{port}", workdir=workdir, log=log)
    try:
        server.wait_ready(ready_path, timeout)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def prodloop_server(
    database_url: str | None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 120.0,
    executable: str | Path | None = None,
) -> Iterator[Server]:
    """``prodloop serve`` on a free loopback port, with PRODLOOP_HOME in a fresh temporary folder.

    ``database_url`` None means SQLite in that folder. The admin key that serve writes on an empty
    store is in ``server.info["key"]``. ``executable`` runs another ``prodloop`` (from a virtual
    environment with other packages, say) instead of the project's own.
    """
    prodloop = Path(executable).resolve() if executable else PRODLOOP
    if not prodloop.exists():
        raise RuntimeError(f"{prodloop} is missing; run `make install` first")
    with tempfile.TemporaryDirectory(prefix="prodloop-bench-") as tmp:
        home = Path(tmp)
        url = database_url or f"sqlite:///{home / 'prodloop.db'}"
        port = free_port()
        env = {**os.environ, "PRODLOOP_HOME": str(home), **(extra_env or {})}
        env.pop("PRODLOOP_DATABASE_URL", None)
        command = [str(prodloop), "serve", "--host", HOST, "--port", str(port), "--db", url]
        with run_server("prodloop", command, env, port, home, "/healthz", timeout) as server:
            key_file = home / "admin-key"
            if not key_file.exists():
                raise RuntimeError(f"prodloop serve wrote no {key_file}:\n{server.log_tail()}")
            server.info.update(key=key_file.read_text().strip(), database_url=url)
            yield server


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database (dropped afterwards); yields its SQLAlchemy URL."""
    import sqlalchemy as sa

    base = sa.make_url(admin_url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"prodloop_bench_{os.getpid()}_{secrets.token_hex(3)}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def describe_url(url: str) -> str:
    """A database URL without its password, for printing and results."""
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)


@contextlib.contextmanager
def py_spy_recording(
    py_spy: str | None, pid: int, path: Path, rate: int = 200, gil: bool = True
) -> Iterator[None]:
    """Sample process ``pid`` with py-spy while the block runs; collapsed stacks go to ``path``.

    ``gil`` samples only the thread that holds the GIL, so the stacks show where the server spends
    its one core of Python; without it every thread is sampled, waits included (pool, locks, I/O).

    ``py_spy`` None records nothing. py-spy is not a dependency of prodloop: install it into any
    virtual environment and pass the path of its executable.
    """
    if not py_spy:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        py_spy,
        "record",
        "-p",
        str(pid),
        "-r",
        str(rate),
        "-f",
        "raw",
        "-o",
        str(path),
        "--nonblocking",
        *(["--gil"] if gil else []),
    ]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)
        try:
            recorder.wait(timeout=30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait(timeout=10)
        log(f"  py-spy samples of pid {pid} written to {path}")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_common_options(parser: Any, output: str) -> None:
    """Options every benchmark takes: waiting for a quiet machine, py-spy sampling, the results file."""
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60,
        help="Before each measurement, wait up to this many seconds for other work on the machine to stop.",
    )
    parser.add_argument(
        "--py-spy",
        default=None,
        help="Path of a py-spy executable: sample each server during its measurement.",
    )
    parser.add_argument(
        "--py-spy-all-threads",
        action="store_true",
        help="Sample every thread, waits included (default: only the thread holding the GIL).",
    )
    parser.add_argument("--output", default=output, help="File name under benchmarks/results/.")


@contextlib.contextmanager
def scratch_store(backend: str, pg_url: str | None) -> Iterator[Any]:
    """A migrated, empty prodloop store in-process for the profiling scripts: SQLite in a temporary
    folder, or a throwaway PostgreSQL database. Yields the engine."""
    from prodloop.settings import Settings
    from prodloop.store import create_store_engine, upgrade

    with contextlib.ExitStack() as stack:
        if backend == "postgresql":
            url = stack.enter_context(postgres_database(pg_url or ""))
        else:
            tmp = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="prodloop-profile-", ignore_cleanup_errors=True)
            )
            url = f"sqlite:///{Path(tmp) / 'prodloop.db'}"
        engine = create_store_engine(url, settings=Settings(database_url=url))
        stack.callback(engine.dispose)
        upgrade(engine)
        yield engine


def run_load_processes(
    server: Server, target: Any, jobs: list[Any], warmup: float, duration: float
) -> dict[str, Any]:
    """Run ``target(job, ready, start, results)`` in one spawned process per job, all starting together.

    Each process puts one item on ``ready`` when it is set up, waits for ``start``, runs its load, and
    puts its report on ``results`` (a dict; one with ``"error"`` stops the run). The server's and the
    machine's CPU seconds are measured from the end of ``warmup`` until the last report. Returns
    ``{"reports", "wall", "server_cpu", "machine_cpu"}``.
    """
    import multiprocessing as mp
    import queue as queues

    context = mp.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    start = context.Event()
    processes = []
    for job in jobs:
        process = context.Process(target=target, args=(job, ready, start, results), daemon=True)
        process.start()
        processes.append(process)
    reports: list[dict[str, Any]] = []
    try:
        for _ in processes:
            ready.get(timeout=120)
        start.set()
        time.sleep(warmup)
        server_cpu0 = cpu_seconds(server.process.pid)
        machine_cpu0 = machine_cpu_seconds()
        wall0 = time.monotonic()
        deadline = time.monotonic() + duration + 120
        while len(reports) < len(processes):
            try:
                report = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queues.Empty:
                raise RuntimeError("the load generator did not finish in time") from None
            if "error" in report:
                raise RuntimeError(f"load process {report['index']}: {report['error']}")
            reports.append(report)
        wall = time.monotonic() - wall0
        server_cpu = cpu_seconds(server.process.pid) - server_cpu0
        machine_cpu = machine_cpu_seconds() - machine_cpu0
    finally:
        start.set()
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
    return {"reports": reports, "wall": wall, "server_cpu": server_cpu, "machine_cpu": machine_cpu}


@contextlib.contextmanager
def backend_server(backend: str, args: Any) -> Iterator[Server]:
    """``prodloop serve`` on a throwaway store of ``backend`` (sqlite, or postgresql in a fresh database
    under ``args.pg_url``), with ``args.sqlite_synchronous`` and ``args.prodloop`` as given."""
    with contextlib.ExitStack() as stack:
        database_url = None
        if backend == "postgresql":
            database_url = stack.enter_context(postgres_database(args.pg_url))
        extra_env = (
            {"PRODLOOP_SQLITE_SYNCHRONOUS": args.sqlite_synchronous} if args.sqlite_synchronous else {}
        )
        server = stack.enter_context(prodloop_server(database_url, extra_env, executable=args.prodloop))
        server.info["database_url"] = describe_url(server.info["database_url"])
        if backend == "sqlite":
            server.info["sqlite_synchronous"] = args.sqlite_synchronous or "FULL (default)"
        yield server
