"""Instructions per REST send, counted by callgrind: an A/B for levers smaller than the noise.

    python -m benchmarks.instructions [--sends 200] [--route send|history] [--client-ids] [--pythonpath DIR]

CPU time on a shared VM moves by 2x between runs of the same code minutes apart, which hides a
lever worth 5-10%; an instruction count barely moves. The server (`convocore serve` on its
default SQLite file, in a temporary directory) runs under `valgrind --tool=callgrind` with
instrumentation off; one client sets up a user and a group, then instrumentation is switched on
(`callgrind_control -i on`) for ``--sends`` posts one at a time, and off again. With
``--route history``, 60 messages are posted first, uninstrumented, and what is counted is as
many GETs of the newest page of 50. ``--client-ids`` gives each post a ``client_id``, as the
REST and fan-out workloads' posts have (and as a client that retries would). What is counted
is the whole process over that stretch (its timers and the WAL checkpoint thread included,
a few percent at most). ``--pythonpath`` puts another checkout's ``src`` in front (the "before"
of an A/B). The send limit is lifted (CONVOCORE_SEND_LIMIT) so one user can post them all; the
limiter still runs on every send. Takes a few minutes: valgrind runs the server ~50x slower.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.harness import free_port

_SETUP = {
    "CONVOCORE_ARGON2_TIME_COST": "1",
    "CONVOCORE_ARGON2_MEMORY_COST": "1024",
    "CONVOCORE_SEND_LIMIT": "1000000",
    "PYTHONHASHSEED": "0",
}


def count(sends: int, *, pythonpath: str | None, route: str = "send", client_ids: bool = False) -> int:
    """Instructions the server ran while serving ``sends`` requests of ``route`` (a post, or a
    page of history), one at a time."""
    valgrind, control = shutil.which("valgrind"), shutil.which("callgrind_control")
    if valgrind is None or control is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="convocore-instructions-") as work:
        port, out = free_port(), Path(work) / "callgrind.out"
        env = {**os.environ, **_SETUP}
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        convocore = str(Path(sys.executable).with_name("convocore"))
        command = [valgrind, "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", convocore]
        server = subprocess.Popen(
            [*command, "serve", "--port", str(port), "--log-level", "warning"],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                _wait_for(client, server)
                token, conversation = _set_up(client)
                auth = {"Authorization": f"Bearer {token}"}
                if route == "history":
                    for i in range(60):
                        _post(client, auth, conversation, i, client_ids)
                subprocess.run([control, "-i", "on", str(server.pid)], check=True, capture_output=True)
                for i in range(sends):
                    if route == "history":
                        page = client.get(f"/api/messages/{conversation}/", params={"limit": 50}, headers=auth)
                        if page.status_code != 200 or len(page.json()["items"]) != 50:
                            raise SystemExit(f"page {i}: {page.status_code} {page.text[:300]}")
                    else:
                        _post(client, auth, conversation, i, client_ids)
                subprocess.run([control, "-i", "off", str(server.pid)], check=True, capture_output=True)
        finally:
            server.send_signal(signal.SIGINT)
            _, stderr = server.communicate(timeout=300)
        found = re.search(r"Collected : (\d+)", stderr)
        if found is None:
            raise SystemExit(f"callgrind reported no total:\n{stderr[-2000:]}")
        return int(found[1])


def _post(client: httpx.Client, auth: dict[str, str], conversation: str, i: int, client_id: bool) -> None:
    body = {"conversation_id": conversation, "body": f"{i:05d}" + "x" * 95}
    if client_id:
        body["client_id"] = f"counted-{i}"
    response = client.post("/api/messages/", json=body, headers=auth)
    if response.status_code != 201:
        raise SystemExit(f"send {i}: {response.status_code} {response.text}")


def _wait_for(client: httpx.Client, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.returncode}")
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise SystemExit("the server did not answer /health in 10 minutes")


def _set_up(client: httpx.Client) -> tuple[str, str]:
    credentials = {"username": "counted", "password": "correct horse"}
    client.post("/api/register/", json=credentials).raise_for_status()
    token = client.post("/api/login/", json=credentials).json()["access_token"]
    group = {"kind": "group", "title": "counted", "members": [], "public": False}
    created = client.post("/api/conversations/", json=group, headers={"Authorization": f"Bearer {token}"})
    created.raise_for_status()
    return str(token), str(created.json()["id"])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__.split("\n")[0])
    parser.add_argument("--sends", type=int, default=200)
    parser.add_argument("--route", choices=("send", "history"), default="send", help="history: newest page of 50")
    parser.add_argument("--client-ids", action="store_true", help="each post with a client_id")
    parser.add_argument("--pythonpath", help="another checkout's src, in front of this one's")
    args = parser.parse_args()
    total = count(args.sends, pythonpath=args.pythonpath, route=args.route, client_ids=args.client_ids)
    if args.route == "history":
        print(f"server instructions over {args.sends} pages: {total:,}; per history page: {total / args.sends:,.0f}")
    else:
        print(f"server instructions over {args.sends} sends: {total:,}; per REST send: {total / args.sends:,.0f}")


if __name__ == "__main__":
    main()
