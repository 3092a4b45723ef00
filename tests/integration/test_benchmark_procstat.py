"""The benchmark harness's reading of /proc/stat's ``cpu`` line: busy time counts everything but
idle and iowait, and steal (what the host gave other guests) is reported on its own."""

import os

from benchmarks import procstat

TICK = os.sysconf("SC_CLK_TCK")


def test_busy_and_steal_come_from_their_own_columns() -> None:
    #           user  nice system idle  iowait irq softirq steal guest guest_nice
    line = "cpu  77418 0 17934 204127 1284 0 5174 7770 0 0\n"
    busy, steal = procstat.busy_and_steal_s(line)
    assert busy == (77418 + 17934 + 5174 + 7770) / TICK
    assert steal == 7770 / TICK


def test_a_kernel_without_a_steal_column_reports_none() -> None:
    busy, steal = procstat.busy_and_steal_s("cpu  100 0 50 1000 10 0 5\n")
    assert (busy, steal) == (155 / TICK, 0.0)


def test_this_machine_reads_as_counters_that_only_grow() -> None:
    busy, steal = procstat.machine_busy_and_steal_s()
    assert busy > 0 and 0 <= steal <= busy
    busy_later, steal_later = procstat.machine_busy_and_steal_s()
    assert busy_later >= busy and steal_later >= steal
