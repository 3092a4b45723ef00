"""Processes of a benchmark run: servers pinned to core 0 with a raised fd limit, the load
generator pinned to core 1, and a PostgreSQL database made and dropped for the scale-out runs.
Every process is started here and stopped here, by its PID, in a ``finally``."""

import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

SERVER_CPU, LOADGEN_CPU = 0, 1
# Ahead of whatever else runs on this shared machine, where allowed (root); else as is. Each
# process gets a session of its own, and so an autogroup: with autogroups on, nice counts only
# within a group, so the group itself gets the nice value.
NICE = -15
PINNED = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2
POSTGRES_URL = os.environ.get("CONVOCORE_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CONVOCORE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

# Only set up is made cheaper; none of this is on a measured path. Listed in every result.
SETUP_ENV = {
    "CONVOCORE_ARGON2_TIME_COST": "1",  # registering thousands of users in seconds
    "CONVOCORE_ARGON2_MEMORY_COST": "1024",
    "CONVOCORE_AUTH_RATE_PER_MINUTE": "1000000",  # they all register and log in from 127.0.0.1
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pinned_to(cpu: int) -> Callable[[], None]:
    def prepare() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if PINNED:
            os.sched_setaffinity(0, {cpu})
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, NICE)
        with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(NICE))

    return prepare


class Process:
    """A child process, its log in the run's directory, stopped by PID."""

    def __init__(self, name: str, command: list[str], *, workdir: Path, env: dict[str, str], cpu: int) -> None:
        self.name, self.command, self.workdir = name, command, workdir
        self.log_path = workdir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=workdir,
                preexec_fn=_pinned_to(cpu), start_new_session=True,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)


class Server(Process):
    def __init__(self, name: str, command: list[str], *, workdir: Path, env: dict[str, str], port: int) -> None:
        super().__init__(name, command, workdir=workdir, env=env, cpu=SERVER_CPU)
        self.port = port

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def wait_ready(self, *, path: str | None = "/health", timeout: float = 60) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            try:
                if path is None:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return self
                if httpx.get(self.http_url + path, timeout=2).status_code == 200:
                    return self
            except (OSError, httpx.HTTPError):
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} was not ready in {timeout}s:\n{self.tail()}")


def convocore(name: str, workdir: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    """``convocore serve`` with its defaults (the SQLite file ./convocore.db in ``workdir``)."""
    port = free_port()
    script = Path(sys.executable).with_name("convocore")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "convocore.entrypoints.cli"]
    command += ["serve", "--port", str(port), "--log-level", "warning", *args]
    return Server(name, command, workdir=workdir, env={**SETUP_ENV, **(env or {})}, port=port).wait_ready()


def relay(impl: str, workdir: Path) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.relay", impl, str(port)]
    env = {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return Server(f"relay-{impl}", command, workdir=workdir, env=env, port=port).wait_ready(path=None)


def run_loadgen(job: dict[str, Any], workdir: Path, *, timeout: float) -> dict[str, Any]:
    """Run one job in a separate load-generator process; its progress lines go to our stderr."""
    name = f"loadgen-{job['kind']}-{uuid.uuid4().hex[:6]}"
    job_path, result_path = workdir / f"{name}.job.json", workdir / f"{name}.result.json"
    job_path.write_text(json.dumps({**job, "cpu": LOADGEN_CPU if PINNED else None}))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    command = [sys.executable, "-m", "benchmarks.loadgen", str(job_path), str(result_path)]
    popen = subprocess.Popen(command, env=env, cwd=workdir, preexec_fn=_pinned_to(LOADGEN_CPU), start_new_session=True)
    try:
        code = popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the load generator ({job['kind']}) ran past {timeout:.0f}s") from None
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait(timeout=10)
    if code != 0 or not result_path.exists():
        raise RuntimeError(f"the load generator ({job['kind']}) failed with exit code {code}")
    result: dict[str, Any] = json.loads(result_path.read_text())
    return result


@contextlib.contextmanager
def workdir(keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="convocore-bench-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped afterwards."""
    import asyncpg

    name = f"convocore_bench_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(POSTGRES_URL)
    admin_url = urlunsplit(parts._replace(scheme="postgresql"))

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except OSError as error:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({error}); set CONVOCORE_BENCH_POSTGRES_URL"
        ) from error
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def stop_all(processes: list[Process]) -> None:
    for process in reversed(processes):
        process.stop()
