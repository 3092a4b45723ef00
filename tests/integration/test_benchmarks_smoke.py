"""The benchmark suite at tiny sizes, so it cannot rot: every workload runs end to end against
real servers and reports numbers, and fan-out loses, repeats and reorders nothing. Timings are
the suite's business (docs/performance.md); nothing here asserts one."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ("rest", "history", "connections", "fanout", "ceiling", "scaleout")


def _fan_out_is_clean(result: dict[str, Any]) -> None:
    assert result["steps"], result
    for step in result["steps"]:
        assert step["sent"] > 0 and step["delivered"] > 0, step
        assert step["deliveries_per_s"] > 0 and step["p50_ms"] > 0 and step["p99_ms"] > 0, step
        assert (step["lost"], step["duplicated"], step["reordered"]) == (0, 0, 0), step
        assert step["errors"] == {} and step["closed_sockets"] == 0, step
        assert step["acked"] > 0 and step["server_us_per_msg"] >= 0, step
        assert 0 <= step["steal_pct"] <= step["machine_cpu_pct"] + 1, step  # steal is part of busy
    # every message sent reached every socket of its room
    assert result["totals"]["delivered"] == sum(s["acked"] for s in result["steps"]) * result["members"], result


def test_quick_run_of_every_workload(tmp_path: Path, postgres_url: str, redis_url: str) -> None:
    output = tmp_path / "quick.json"
    env = {**os.environ, "CONVOCORE_BENCH_POSTGRES_URL": postgres_url, "CONVOCORE_BENCH_REDIS_URL": redis_url}
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "all", "--quick", "--output", str(output)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    assert "| 2 fan-out" in run.stdout and "JSON:" in run.stdout

    result = json.loads(output.read_text())
    workloads = result["workloads"]
    assert set(workloads) == set(WORKLOADS)
    assert set(result["machine_steal_pct"]) == set(WORKLOADS)

    rest = workloads["rest"]
    assert rest["acked"] > 0 and rest["msgs_per_s"] > 0 and rest["p50_ms"] > 0 and rest["p99_ms"] > 0
    assert rest["statuses"] == {"201": rest["acked"]}
    assert rest["durable"] == {"acked": rest["acked"], "stored_after_kill": rest["acked"], "missing": 0}
    normal = rest["synchronous_normal"]  # the faster SQLite setting, measured beside the default
    assert normal["acked"] > 0 and normal["durable"]["missing"] == 0

    for where in ("newest", "deep", "post"):
        assert workloads["history"][where]["p50_ms"] > 0 and workloads["history"][where]["p99_ms"] > 0
    assert workloads["history"]["posts"] == 18  # 20, less the tenth that warms up
    assert "| 3 post at depth" in run.stdout

    idle = workloads["connections"]
    assert idle["authenticated"] == idle["sockets"] == idle["still_open"] > 0
    assert idle["rss_before_kib"] > 0 and idle["rss_after_kib"] > 0

    for name in ("fanout", "ceiling"):
        assert workloads[name], name
        for shape in workloads[name].values():
            _fan_out_is_clean(shape)
    for shape in workloads["ceiling"].values():  # the ceiling, and the relay it replaced beside it
        assert shape["relay"] == "coalesced" and set(shape["also"]) == {"websockets"}
        _fan_out_is_clean(shape["also"]["websockets"])
    assert "as a share of the 'websockets' relay" in run.stdout
    for shape in workloads["fanout"].values():  # storing and authorising a message is never free
        assert all(step["server_us_per_msg"] > 0 for step in shape["steps"]), shape["steps"]
    assert "server CPU" in run.stdout and "us per message sent at the first step" in run.stdout
    for shape in workloads["scaleout"].values():
        _fan_out_is_clean(shape["one"])
        _fan_out_is_clean(shape["two"])
        assert shape["two"]["processes"] == 2
    for added in result["scaleout_added_latency"].values():
        assert added["clean"] and added["p50_ms"][0] > 0 and added["p50_ms"][1] > 0, added

    assert {t["target"].split(" ")[0] for t in result["targets"]} >= {"fan-out", "REST", "history", "<="}
    assert result["machine"]["nproc"] > 0 and result["machine"]["versions"]["litestar"]
    assert result["machine"]["python_loop_s"] > 0


def _instructions(*args: str) -> str:
    """``benchmarks.instructions`` with ``args``: what it printed (skipped without valgrind)."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        pytest.skip("valgrind is not installed (apt-get install valgrind): benchmarks.instructions needs it")
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.instructions", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def _total_and_each(pattern: str, printed: str, times: int) -> None:
    found = re.search(pattern, printed)
    assert found is not None, printed
    total, each = (int(value.replace(",", "")) for value in found.groups())
    assert 100_000 < each < 100_000_000 and total == pytest.approx(times * each, abs=times)


def test_instruction_count_of_a_rest_send_runs() -> None:
    """benchmarks.instructions (the A/B for levers under the noise), at three sends: the server
    starts under callgrind, the sends are counted, and nothing else is (instrumentation is off
    for startup and setup, which alone cost billions)."""
    printed = _instructions("--sends", "3")
    _total_and_each(r"over 3 sends: ([\d,]+); per REST send: ([\d,]+)", printed, 3)


def test_instruction_count_of_a_socket_message_runs() -> None:
    """``--route ws``: each message is read on every member's socket before the next is sent,
    so a run that counts anything delivered all of them (a lost delivery times out instead)."""
    printed = _instructions("--route", "ws", "--members", "3", "--sends", "3")
    _total_and_each(r"over 3 socket messages to 3 sockets: ([\d,]+); per message: ([\d,]+)", printed, 3)
