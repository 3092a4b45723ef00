"""The REST send workload on two ASGI servers, back to back: uvicorn (what ``convocore serve``
runs) and granian (Rust's HTTP/1.1 under the same app). The issue names the choice of server as
a lever to settle by measurement; this is that measurement.

    python -m benchmarks.servers [--rounds 2]

granian serves the app with the same settings and set-up as ``convocore serve`` (log level
warning, the garbage-collection tuning after startup, uvloop, one worker) on the same pinned
core. Only HTTP is compared: the WebSocket side of ``convocore serve`` is built on uvicorn's
protocol (``entrypoints/wsserver.py``, ``direct.py``).
"""

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from litestar import Litestar

from benchmarks import harness, workloads


def granian_app() -> Litestar:
    """The app as ``convocore serve`` builds it, for ``granian --factory``."""
    from convocore.entrypoints.cli import served_app
    from convocore.entrypoints.logs import configure_logging
    from convocore.entrypoints.settings import Settings

    configure_logging(level="warning", log_format="text")
    return served_app(Settings.from_env())


def _granian(work: Path) -> harness.Server:
    granian = shutil.which("granian") or str(Path(sys.executable).with_name("granian"))
    port = harness.free_port()
    command = [
        granian, "--interface", "asgi", "--factory", "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--workers", "1", "--log-level", "warning", "--no-ws",
        "benchmarks.servers:granian_app",
    ]  # fmt: skip
    env = {**harness.SETUP_ENV, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return harness.Server("granian", command, workdir=work, env=env, port=port).wait_ready()


def rest_on(server_kind: str) -> dict[str, Any]:
    with harness.workdir() as work:
        server = harness.convocore("convocore-rest", work) if server_kind == "uvicorn" else _granian(work)
        try:
            result = harness.run_loadgen(workloads.rest_job(workloads.FULL, server), work, timeout=300)
        finally:
            server.stop()
    result.pop("acked_per_conversation")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.servers", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"uvicorn": [], "granian": []}
    for _ in range(args.rounds):
        for kind, results in runs.items():
            result = rest_on(kind)
            results.append(result)
            rate, p50, p99 = result["msgs_per_s"], result["p50_ms"], result["p99_ms"]
            print(f"{kind:8s} {rate:7.1f} msgs/s  p50 {p50:.1f}  p99 {p99:.1f} ms  statuses {result['statuses']}")
    print(json.dumps({kind: [r["msgs_per_s"] for r in results] for kind, results in runs.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
