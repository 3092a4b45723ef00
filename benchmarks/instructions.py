"""Instructions per REST send, counted by callgrind: an A/B for changes smaller than the noise.

    python -m benchmarks.instructions [--sends 200] [--route send|history|ws] [--members 10] [--client-ids]
                                      [--pythonpath DIR] [--keep callgrind.out]

CPU time on a shared VM moves by 2x between runs of the same code minutes apart, which hides a
change worth 5-10%; an instruction count barely moves. The server (`convocore serve` on its
default SQLite file, in a temporary directory) runs under `valgrind --tool=callgrind` with
instrumentation off; one client sets up a user and a group, then instrumentation is switched on
(`callgrind_control -i on`) for ``--sends`` posts one at a time, and off again. With
``--route history``, 60 messages are posted first, uninstrumented, and what is counted is as
many GETs of the newest page of 50. With ``--route ws``, ``--members`` users each hold a user
socket (``/ws/``) in one group and the first sends ``message.send`` frames, one at a time: what
is counted is one message as the 100x10 fan-out has it (the frame read, the message stored,
acked and delivered to every member's socket), read on every socket before the next is sent.
``--client-ids`` gives each post a ``client_id``, as the
REST and fan-out workloads' posts have (and as a client that retries would). What is counted
is the whole process over that stretch (its timers and the WAL checkpoint thread included,
a few percent at most). ``--pythonpath`` puts another checkout's ``src`` in front (the "before"
of an A/B). The send limit is lifted (CONVOCORE_SEND_LIMIT) so one user can post them all; the
limiter still runs on every send. Takes a few minutes: valgrind runs the server ~50x slower.
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from websockets.sync.client import ClientConnection, connect

from benchmarks.harness import free_port

_SETUP = {
    "CONVOCORE_ARGON2_TIME_COST": "1",
    "CONVOCORE_ARGON2_MEMORY_COST": "1024",
    "CONVOCORE_SEND_LIMIT": "1000000",
    "CONVOCORE_AUTH_RATE_PER_MINUTE": "1000000",  # --members registrations and logins from one address
    "PYTHONHASHSEED": "0",
}


def count(
    sends: int,
    *,
    pythonpath: str | None,
    route: str = "send",
    client_ids: bool = False,
    members: int = 10,
    keep: Path | None = None,
) -> int:
    """Instructions the server ran while serving ``sends`` requests of ``route`` (a post, a
    page of history, or a message sent over a socket to ``members`` sockets), one at a time."""
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

        def counting(on: bool) -> None:
            subprocess.run([control, "-i", "on" if on else "off", str(server.pid)], check=True, capture_output=True)

        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                _wait_for(client, server)
                if route == "ws":
                    _count_frames(client, port, counting, sends=sends, members=members, client_ids=client_ids)
                else:
                    _count_requests(client, counting, route=route, sends=sends, client_ids=client_ids)
        finally:
            server.send_signal(signal.SIGINT)
            _, stderr = server.communicate(timeout=300)
        if keep is not None and out.exists():
            shutil.copyfile(out, keep)
        found = re.search(r"Collected : (\d+)", stderr)
        if found is None:
            raise SystemExit(f"callgrind reported no total:\n{stderr[-2000:]}")
        return int(found[1])


def _count_requests(
    client: httpx.Client, counting: Callable[[bool], None], *, route: str, sends: int, client_ids: bool
) -> None:
    [token], conversation = _set_up(client, members=1)
    auth = {"Authorization": f"Bearer {token}"}
    if route == "history":
        for i in range(60):
            _post(client, auth, conversation, i, client_ids)
    counting(True)
    for i in range(sends):
        if route == "history":
            page = client.get(f"/api/messages/{conversation}/", params={"limit": 50}, headers=auth)
            if page.status_code != 200 or len(page.json()["items"]) != 50:
                raise SystemExit(f"page {i}: {page.status_code} {page.text[:300]}")
        else:
            _post(client, auth, conversation, i, client_ids)
    counting(False)


def _count_frames(
    client: httpx.Client, port: int, counting: Callable[[bool], None], *, sends: int, members: int, client_ids: bool
) -> None:
    """``members`` users on their user sockets in one group; the first sends, one message at a
    time, and each is read on every socket (the sender's ack too) before the next."""
    tokens, conversation = _set_up(client, members=members)
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(connect(f"ws://127.0.0.1:{port}/ws/?token={token}", open_timeout=120))
            for token in tokens
        ]
        for socket in sockets:  # a pong comes once the socket follows its conversations
            socket.send(json.dumps({"type": "ping"}))
            while json.loads(socket.recv(timeout=120))["type"] != "pong":
                pass
        _exchange(sockets, conversation, 0, client_ids)  # warm
        counting(True)
        for i in range(1, sends + 1):
            _exchange(sockets, conversation, i, client_ids)
        counting(False)


def _exchange(sockets: list[ClientConnection], conversation: str, i: int, client_ids: bool) -> None:
    frame = {"type": "message.send", **_message(conversation, i, client_ids)}
    sockets[0].send(json.dumps(frame))
    for n, socket in enumerate(sockets):
        awaited = {"message.created", "ack"} if n == 0 else {"message.created"}
        while awaited:
            got = json.loads(socket.recv(timeout=120))
            kind = got["type"]
            if kind == "error":
                raise SystemExit(f"frame {i}: {got}")
            if kind == "message.created" and got["message"]["body"] != frame["body"]:
                raise SystemExit(f"frame {i}: socket {n} got {got['message']['body'][:5]}")
            awaited.discard(kind)


def _message(conversation: str, i: int, client_id: bool) -> dict[str, str]:
    """The ``i``-th post's fields: a 100-byte body, and a client_id if asked."""
    body = {"conversation_id": conversation, "body": f"{i:05d}" + "x" * 95}
    if client_id:
        body["client_id"] = f"counted-{i}"
    return body


def _post(client: httpx.Client, auth: dict[str, str], conversation: str, i: int, client_id: bool) -> None:
    response = client.post("/api/messages/", json=_message(conversation, i, client_id), headers=auth)
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


def _set_up(client: httpx.Client, *, members: int) -> tuple[list[str], str]:
    """``members`` users (the first named "counted") and a group of them that the first made:
    their tokens, and the group's id."""
    tokens, ids = [], []
    for n in range(members):
        credentials = {"username": f"counted{n}" if n else "counted", "password": "correct horse"}
        client.post("/api/register/", json=credentials).raise_for_status()
        login = client.post("/api/login/", json=credentials).json()
        tokens.append(str(login["access_token"]))
        ids.append(str(login["user"]["id"]))
    group = {"kind": "group", "title": "counted", "members": ids[1:], "public": False}
    created = client.post("/api/conversations/", json=group, headers={"Authorization": f"Bearer {tokens[0]}"})
    created.raise_for_status()
    return tokens, str(created.json()["id"])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__.split("\n")[0])
    parser.add_argument("--sends", type=int, default=200)
    parser.add_argument(
        "--route",
        choices=("send", "history", "ws"),
        default="send",
        help="history: newest page of 50; ws: a message.send frame delivered to --members sockets",
    )
    parser.add_argument("--members", type=int, default=10, help="sockets in the room (--route ws)")
    parser.add_argument("--keep", type=Path, help="keep callgrind's output here (for callgrind_annotate)")
    parser.add_argument("--client-ids", action="store_true", help="each post with a client_id")
    parser.add_argument("--pythonpath", help="another checkout's src, in front of this one's")
    args = parser.parse_args()
    total = count(
        args.sends,
        pythonpath=args.pythonpath,
        route=args.route,
        client_ids=args.client_ids,
        members=args.members,
        keep=args.keep,
    )
    if args.route == "ws":
        print(
            f"server instructions over {args.sends} socket messages to {args.members} sockets: {total:,}; "
            f"per message: {total / args.sends:,.0f}"
        )
    elif args.route == "history":
        print(f"server instructions over {args.sends} pages: {total:,}; per history page: {total / args.sends:,.0f}")
    else:
        print(f"server instructions over {args.sends} sends: {total:,}; per REST send: {total / args.sends:,.0f}")


if __name__ == "__main__":
    main()
