"""Start and stop a real `convocore serve` process on a free loopback port."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

# Tests create many users and messages from one address in seconds; the limits have tests of
# their own, which pass their own values.
GENEROUS_LIMITS = {
    "CONVOCORE_AUTH_RATE_PER_MINUTE": "1000000",
    "CONVOCORE_HTTP_RATE_PER_MINUTE": "1000000",
    "CONVOCORE_SEND_LIMIT": "1000000",
}
# Test servers start on fresh databases, as a deploy with --migrate would (SQLite always does).
MIGRATED = {"CONVOCORE_MIGRATE": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def convocore_command() -> list[str]:
    script = Path(sys.executable).with_name("convocore")
    if script.exists():
        return [str(script)]
    found = shutil.which("convocore")
    return [found] if found else [sys.executable, "-m", "convocore.entrypoints.cli"]


class ServerProcess:
    """One server; stopped by its own PID, never by name."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, under: tuple[str, ...] = ()
    ) -> None:
        """``under``: a command the server runs under (``strace -f ...``), given its command line."""
        self.under = under
        self.port = free_port()
        self.args = args
        self.env = {**os.environ, **GENEROUS_LIMITS, **MIGRATED, **(env or {})}
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "ServerProcess":
        command = [
            *self.under,
            *convocore_command(),
            "serve",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            *self.args,
        ]
        self.log_path = Path(self.cwd or ".") / f"server-{self.port}.log"
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.output()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not come up in {timeout}s: {self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
