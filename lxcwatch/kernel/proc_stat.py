"""Parser for /proc/stat: per-CPU time spent in softirq context (ksoftirqd time included)."""

from lxcwatch.errors import ParseError

SOURCE = "stat"
USER_HZ = 100  # the unit of /proc/stat times, fixed at 100 for userspace on every architecture


def parse_softirq_ticks(text: str) -> dict[int, int]:
    """Return {cpu: softirq time in USER_HZ ticks} from the `cpuN` lines (7th value)."""
    ticks = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        fields = line.split()
        if len(fields) < 8:
            raise ParseError(SOURCE, f"{fields[0]}: expected at least 7 values, found {len(fields) - 1}", number)
        try:
            cpu, value = int(fields[0][3:]), int(fields[7])
            if cpu < 0 or value < 0:  # int() takes a sign; the kernel prints unsigned values
                raise ValueError
            ticks[cpu] = value
        except ValueError:
            raise ParseError(SOURCE, f"not a number in {line[:60]!r}", number) from None
    if not ticks:
        raise ParseError(SOURCE, "no per-CPU lines")
    return ticks
