"""The table printed at the end of a run, the issue's targets beside the measured values, and
what machine and versions the numbers came from."""

import importlib.metadata
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks import harness

PACKAGES = ("litestar", "uvicorn", "websockets", "msgspec", "picows", "uvloop", "sqlalchemy", "asyncpg", "redis")


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    root = Path(__file__).resolve().parent.parent
    git = ["git", "-C", str(root)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "src"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "versions": versions,
        "pinned": "server on core 0, load generator on core 1" if harness.PINNED else "not pinned (fewer than 2 cores)",
        "nice": harness.NICE if os.geteuid() == 0 else 0,
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "commit": commit,
        "src_uncommitted_changes": bool(dirty),
        "setup_only_settings": harness.SETUP_ENV,
        "python_loop_s": python_loop_s(),
    }


def python_loop_s() -> float:
    """Seconds for a pure-Python loop of ten million additions at module level (as
    ``python -c`` runs it), the best of three: how fast this machine runs Python, so runs on
    different machines of one kind can be told apart (they differ by up to 4x:
    benchmarks/NOTES.md)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        exec(_LOOP, {})  # a fixed string, run with module-level names as the figures in the docs were
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


_LOOP = "x = 0\nfor i in range(10_000_000):\n    x += 1\n"


def _fan(best: dict[str, Any] | None) -> tuple[str, str, str, str]:
    if best is None:
        return "no step passed", "-", "-", "-"
    clean = best["lost"] + best["duplicated"] + best["reordered"]
    return (
        f"{best['deliveries_per_s']:,.0f} deliveries/s ({best['msgs_per_s']:,.0f} msgs/s)",
        f"{best['p50_ms']:.1f}",
        f"{best['p99_ms']:.1f}",
        f"{'ok' if clean == 0 else 'LOSS'}; lg {best['loadgen_cpu_pct']:.0f}%",
    )


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    out = []
    if "rest" in results:
        first = results["rest"]
        runs = [("1 REST send", first), ("1 REST send, normal", first.get("synchronous_normal"))]
        for label, r in runs:
            if r is None:
                continue
            d = r["durable"]
            out.append((
                label,
                f"{r['clients']} clients, {r['conversations']} convs, {r['users']} users",
                f"{r['msgs_per_s']:,.0f} msgs/s",
                f"{r['p50_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                f"{d['acked'] - d['missing']}/{d['acked']} acked durable after kill -9; lg {r['loadgen_cpu_pct']:.0f}%",
            ))  # fmt: skip
    for name, label in (("fanout", "2 fan-out"), ("ceiling", "6 bare relay")):
        for shape, r in results.get(name, {}).items():
            who = f"{r['users']} users" if r["users"] else f"no auth, {r.get('relay', 'websockets')}"
            out.append((f"{label} {shape}", f"{r['sockets']} sockets, {who}", *_fan(r["best"])))
            for impl, other in r.get("also", {}).items():
                out.append((f"{label} {shape}", f"{other['sockets']} sockets, no auth, {impl}", *_fan(other["best"])))
    if "history" in results:
        r = results["history"]
        for where in ("newest", "deep"):
            what = "newest 50" if where == "newest" else f"50 at {r['messages'] - 50:,} deep"
            out.append((
                f"3 history {where}", f"{what}, {r['users']} users", f"{r['requests_per_position']} GETs",
                f"{r[where]['p50_ms']:.2f}", f"{r[where]['p99_ms']:.2f}", "page content checked",
            ))  # fmt: skip
        if "post" in r:
            out.append((
                "3 post at depth", f"into the {r['messages']:,}-message conversation", f"{r['posts']} POSTs",
                f"{r['post']['p50_ms']:.2f}", f"{r['post']['p99_ms']:.2f}", "each seq checked; one at a time",
            ))  # fmt: skip
    if "connections" in results:
        r = results["connections"]
        out.append((
            "4 idle sockets", f"{r['sockets']:,} sockets, {r['users']} users",
            f"{r['kib_per_socket']:.1f} KiB/socket", "-", "-",
            f"{r['authenticated']}/{r['sockets']} answered a ping; RSS {r['rss_before_kib'] // 1024}->"
            f"{r['rss_after_kib'] // 1024} MiB",
        ))  # fmt: skip
    for shape, r in results.get("scaleout", {}).items():
        for label in ("one", "two"):
            who = "1 process (PostgreSQL)" if label == "one" else "2 processes + Redis (PostgreSQL)"
            out.append((f"5 scale-out {shape}", who, *_fan(r[label]["best"])))
    return out


def table(results: dict[str, Any]) -> str:
    header = ("workload", "configuration", "result", "p50 ms", "p99 ms", "checks")
    body = rows(results)
    widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    lines = [line, sep]
    for row in body:
        lines.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for shape, relay in results.get("ceiling", {}).items():
        mine = results.get("fanout", {}).get(shape, {}).get("best")
        theirs = relay.get("best")
        out[shape] = round(mine["deliveries_per_s"] / theirs["deliveries_per_s"], 3) if mine and theirs else None
    return out


def other_ratios(results: dict[str, Any]) -> dict[tuple[str, str], float | None]:
    """The fan-out against each relay run beside the ceiling."""
    out: dict[tuple[str, str], float | None] = {}
    for shape, relay in results.get("ceiling", {}).items():
        mine = results.get("fanout", {}).get(shape, {}).get("best")
        for impl, other in relay.get("also", {}).items():
            theirs = other.get("best")
            out[shape, impl] = (
                round(mine["deliveries_per_s"] / theirs["deliveries_per_s"], 3) if mine and theirs else None
            )
    return out


def added_latency(results: dict[str, Any]) -> dict[str, Any]:
    """Scale-out: p50/p99 of 1 and 2 processes at the same fixed rate, well below either's limit."""
    out: dict[str, Any] = {}
    for shape, r in results.get("scaleout", {}).items():
        one, two = r["one"].get("reference"), r["two"].get("reference")
        if not one or not two:
            out[shape] = None
            continue
        p50 = [statistics.median(s["p50_ms"] for s in steps) for steps in (one, two)]
        p99 = [statistics.median(s["p99_ms"] for s in steps) for steps in (one, two)]
        out[shape] = {
            "at_deliveries_per_s": one[0]["target_deliveries_per_s"],
            "repeats": len(one),
            "p50_ms": p50,
            "p99_ms": p99,
            "added_p50_ms": round(p50[1] - p50[0], 3),
            "added_p99_ms": round(p99[1] - p99[0], 3),
            "clean": all(s["lost"] + s["duplicated"] + s["reordered"] == 0 for s in (*one, *two)),
        }
    return out


def _missing(r: dict[str, Any]) -> int | str:
    """Messages some socket never got, once the last step had settled (runs before this had no such count)."""
    at_end = r.get("at_end")
    return at_end["missing"] if at_end else "n/a"


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(target: str, measured: str, met: bool | None) -> None:
        out.append({"target": target, "measured": measured, "met": met})

    for shape, ratio in ratios(results).items():
        add(f"fan-out {shape} >= 50% of the bare relay", f"{ratio:.0%}" if ratio is not None else "n/a",
            None if ratio is None else ratio >= 0.5)  # fmt: skip
    for shape, r in results.get("fanout", {}).items():
        best = r["best"]
        rate = best["deliveries_per_s"] if best else 0.0
        add(f"fan-out {shape} >= 40,000 deliveries/s at p99 <= 50 ms, zero loss",
            f"{rate:,.0f}/s; undelivered at the end {_missing(r)}, dup/reorder over all steps: "
            f"{r['totals']['duplicated']}/{r['totals']['reordered']}",
            rate >= 40_000 and bool(best) and best["lost"] == 0 and _missing(r) == 0)  # fmt: skip
    if "rest" in results:
        r = results["rest"]
        add("REST send >= 2,500 msgs/s, p99 <= 50 ms, acked = durable",
            f"{r['msgs_per_s']:,.0f} msgs/s, p99 {r['p99_ms']:.1f} ms, {r['durable']['missing']} acked lost",
            r["msgs_per_s"] >= 2500 and r["p99_ms"] <= 50 and r["durable"]["missing"] == 0)  # fmt: skip
    if "history" in results:
        r = results["history"]
        p99 = max(r["newest"]["p99_ms"], r["deep"]["p99_ms"])
        add("history page p99 <= 2 ms, newest and 1,000,000 deep",
            f"newest {r['newest']['p99_ms']:.2f} ms, deep {r['deep']['p99_ms']:.2f} ms", p99 <= 2)  # fmt: skip
    if "connections" in results:
        r = results["connections"]
        add("<= 20 KiB per idle socket", f"{r['kib_per_socket']:.1f} KiB", r["kib_per_socket"] <= 20)
    return out
