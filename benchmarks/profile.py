"""Where the server's time goes under fan-out: py-spy samples the server (without pausing it)
while the load generator holds one fixed rate, then the samples are summed per function. With
``--workload rest``, the same while the REST send workload's 64 clients post in a closed loop.

    python -m benchmarks.profile [--shape 10x100] [--rate 10000] [--seconds 15] [--svg profile.svg]
    python -m benchmarks.profile --workload rest [--seconds 15] [--top 70] [--raw stacks.txt]
    python -m benchmarks.profile --database postgres [--redis]  # as the scale-out workload's servers
"""

import argparse
import collections
import contextlib
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from benchmarks import harness, workloads

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _where(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``module.py:func``, trimmed of site-packages noise."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    file = match["file"]
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{file}:{match['func']}"


def _area(frame: str) -> str:
    path = _where(frame).split(":", 1)[0]
    top = path.split("/", 1)[0]
    return top if top and not top.endswith(".py") else "stdlib:" + path


def summarise(raw: Path, top: int = 25) -> dict[str, Any]:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[_where(frames[-1])] += count
        areas[_area(frames[-1])] += count
        for name in {_where(f) for f in frames}:
            inclusive[name] += count

    def share(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {"samples": total, "own": share(own), "inclusive": share(inclusive), "areas": share(areas)}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workload", choices=("fanout", "rest"), default="fanout", help="rest: the REST send workload, closed loop"
    )
    parser.add_argument("--shape", default="10x100")
    parser.add_argument("--rate", type=float, default=10_000, help="deliveries per second to hold")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument(
        "--native", action="store_true", help="also sample C frames (uvloop, sqlite3); pauses the server per sample"
    )
    parser.add_argument("--svg", type=Path, help="also write a flame graph (a second, separate sampling run)")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "profile.json")
    parser.add_argument("--top", type=int, default=25, help="how many functions each list keeps")
    parser.add_argument("--raw", type=Path, help="also keep py-spy's raw stacks (collapsed, one per line) here")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="postgres: a new database on the machine's PostgreSQL, as the scale-out workload's servers use",
    )
    parser.add_argument("--redis", action="store_true", help="also publish through Redis (as several processes do)")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    rooms, members = (int(n) for n in args.shape.split("x"))
    env, _ = workloads._send_limit_env(rooms, members)
    sizes = workloads.FULL
    with contextlib.ExitStack() as stack:
        work = stack.enter_context(harness.workdir())
        serve: list[str] = []
        if args.database == "postgres":
            serve += ["--database-url", stack.enter_context(harness.postgres_database())]
            env = {**env, "CONVOCORE_MIGRATE": "1"}
        if args.redis:
            serve += ["--redis-url", harness.REDIS_URL]
            env = {**env, "CONVOCORE_REDIS_PREFIX": f"convocore-profile-{work.name}"}
        server = harness.convocore("convocore-profile", work, *serve, env=env)
        try:
            if args.workload == "rest":
                job = workloads.rest_job(sizes, server)
            else:
                job = workloads._fanout_job(sizes, rooms, members, [server], False)
            raw = work / "profile.txt"
            record = [py_spy, "record", "--pid", str(server.pid), "--rate", "250", "--nonblocking"]
            if args.native:  # py-spy must pause the server to read C stacks: it runs slower
                record[-3:] = ["100", "--native"]
            job.update(
                start_deliveries_per_s=args.rate,
                seconds=args.seconds,
                max_steps=1,
                profile=[*record, "--format", "raw", "--output", str(raw), "--duration", str(int(args.seconds))],
            )
            result = harness.run_loadgen(job, work, timeout=600)
            if args.workload == "rest":
                result.pop("acked_per_conversation")
                what = {"workload": "rest", "run": result}
            else:
                what = {"workload": "fanout", "shape": args.shape, "rate": args.rate, "step": result["steps"][0]}
            summary = {**what, **summarise(raw, args.top)}
            if args.raw:
                shutil.copyfile(raw, args.raw)
            if args.svg:
                job["profile"] = [*record, "--output", str(args.svg.resolve()), "--duration", str(int(args.seconds))]
                job["prefix"] = workloads._prefix()  # new users: the first run's are taken
                harness.run_loadgen(job, work, timeout=600)
        finally:
            server.stop()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2))
    if args.workload == "rest":
        print(f"{summary['samples']} samples of REST send; run: {summary['run']}")
    else:
        print(f"{summary['samples']} samples at {args.rate:.0f} deliveries/s, {args.shape}; step: {summary['step']}")
    for title in ("areas", "own", "inclusive"):
        print(f"\n{title} (% of samples)")
        for name, pct in summary[title]:
            print(f"  {pct:5.1f}  {name}")
    print(f"\nJSON: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
