"""What /proc says about a process: resident memory and CPU time (all its threads)."""

import os

_TICK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_s(pid: int) -> float:
    """CPU time of all the process's threads: in nanoseconds from each thread's schedstat where
    the kernel keeps one (a 0.3 s step of a fast server can use less than one 10 ms tick),
    else in ticks from /proc/PID/stat."""
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as schedstat:
                    total += int(schedstat.read().split()[0])
            except FileNotFoundError:  # the thread ended meanwhile
                continue
        if total > 0:
            return total / 1e9
    except (FileNotFoundError, ValueError, IndexError):
        pass
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def total_cpu_s(pids: list[int]) -> float:
    return sum(cpu_s(pid) for pid in pids)


def machine_busy_and_steal_s() -> tuple[float, float]:
    """CPU seconds spent busy on all cores of the machine so far, by anyone, steal included; and
    of those, the steal: what the hypervisor gave other guests while this machine's cores wanted
    to run (neighbours on a shared host, which no process here shows). One read of /proc/stat."""
    with open("/proc/stat") as stat:
        return busy_and_steal_s(stat.readline())


def busy_and_steal_s(cpu_line: str) -> tuple[float, float]:
    """Busy and steal seconds from /proc/stat's ``cpu`` line (user nice system idle iowait irq
    softirq steal ..., in ticks); busy counts everything but idle and iowait, steal included."""
    values = [int(v) for v in cpu_line.split()[1:]]
    idle = values[3] + values[4]
    steal = values[7] if len(values) > 7 else 0
    return (sum(values[:8]) - idle) / _TICK, steal / _TICK
