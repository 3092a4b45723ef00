"""The benchmark suite of issue 4.

    python -m benchmarks all              # every workload, then a table and benchmarks/results/*.json
    python -m benchmarks fanout ceiling   # some of them
    python -m benchmarks all --quick      # tiny sizes, seconds: the smoke run the tests use

Workloads: rest, fanout, history, connections, scaleout, ceiling (see docs/performance.md).
"""

import argparse
import dataclasses
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import procstat, report, workloads

ORDER = ("rest", "history", "connections", "fanout", "ceiling", "scaleout")
RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("workloads", nargs="+", choices=["all", *ORDER])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and short steps (seconds)")
    parser.add_argument(
        "--relays",
        default=",".join(workloads.RELAYS),
        help="the ceiling's relays, comma-separated (coalesced, websockets, uvicorn); the first is the ceiling",
    )
    parser.add_argument("--shapes", help="fan-out shapes to run, e.g. 10x100,100x10 (default: the issue's)")
    parser.add_argument("--output", type=Path, help="where to write the JSON (default benchmarks/results/)")
    args = parser.parse_args(argv)
    chosen = ORDER if "all" in args.workloads else tuple(w for w in ORDER if w in args.workloads)
    sizes = workloads.QUICK if args.quick else workloads.FULL
    if args.shapes:
        pairs = [shape.split("x") for shape in args.shapes.split(",")]
        shapes = tuple((int(rooms), int(members)) for rooms, members in pairs)
        sizes = dataclasses.replace(sizes, shapes=shapes)
    print(
        "Benchmark servers hash passwords with argon2 time_cost=1, memory_cost=1024 KiB and allow unlimited "
        "logins per address, to register thousands of users in seconds; neither is on a measured path.",
        file=sys.stderr,
    )
    run: dict[str, Any] = {
        "command": "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": report.machine(),
        "workloads": {},
        "durations_s": {},
        "machine_cpu_pct": {},
        "machine_steal_pct": {},
    }
    for name in chosen:
        print(f"== {name}", file=sys.stderr, flush=True)
        started, (busy, steal) = time.perf_counter(), procstat.machine_busy_and_steal_s()
        work = workloads.WORKLOADS[name]
        relays = tuple(args.relays.split(","))
        result = work(sizes, relays) if name == "ceiling" else work(sizes)  # type: ignore[call-arg]
        run["workloads"][name] = result
        wall = time.perf_counter() - started
        run["durations_s"][name] = round(wall, 1)
        # Everyone's CPU over both cores (200% = both busy): what else ran shows here.
        busy_now, steal_now = procstat.machine_busy_and_steal_s()
        run["machine_cpu_pct"][name] = round(100 * (busy_now - busy) / wall)
        # Of that, the host's other guests (steal): noise no process of this machine shows.
        run["machine_steal_pct"][name] = round(100 * (steal_now - steal) / wall, 1)
    results = run["workloads"]
    run["ceiling_ratio"] = report.ratios(results)
    run["ceiling_ratio_also"] = {f"{shape} {impl}": r for (shape, impl), r in report.other_ratios(results).items()}
    run["scaleout_added_latency"] = report.added_latency(results)
    run["targets"] = report.targets(results)
    output = args.output or RESULTS / f"{run['started_at'].replace(':', '')}{'-quick' if args.quick else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(run, indent=2))
    print(report.table(results))
    print(f"machine: {run['machine']['cpu_model']}, a 10M-addition Python loop in {run['machine']['python_loop_s']} s")
    for name in ("fanout", "scaleout"):
        for shape, result in results.get(name, {}).items():
            for change in result.get("changed", []):
                print(f"{name} {shape} ran with a default changed: {change}")
    for shape, ratio in run["ceiling_ratio"].items():
        print(f"fan-out {shape} as a share of the bare relay: {ratio if ratio is None else f'{ratio:.0%}'}")
    for (shape, impl), ratio in report.other_ratios(results).items():
        print(f"fan-out {shape} as a share of the '{impl}' relay: {ratio if ratio is None else f'{ratio:.0%}'}")
    for name in ("fanout", "ceiling"):
        for shape, result in results.get(name, {}).items():
            first = result["steps"][0] if result["steps"] else None
            if first is not None and first.get("server_us_per_msg"):
                print(
                    f"{name} {shape}: server CPU {first['server_us_per_msg']:,} us per message sent "
                    f"at the first step ({first['target_deliveries_per_s']:,} deliveries/s)"
                )
    for shape, added in run["scaleout_added_latency"].items():
        print(f"scale-out {shape}, added by 2 processes + Redis: {added}")
    for t in run["targets"]:
        print(f"[{ {True: 'met', False: 'NOT met', None: 'n/a'}[t['met']] }] {t['target']}: {t['measured']}")
    print(f"JSON: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
