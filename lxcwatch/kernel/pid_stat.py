"""/proc/PID/stat: the fields after the parenthesised comm (which may itself hold spaces and parentheses)."""

from dataclasses import dataclass

from lxcwatch.errors import ParseError

SOURCE = "stat"  # relative to /proc/PID


@dataclass(frozen=True, slots=True)
class PidStat:
    ppid: int  # field 4
    utime: int  # field 14, USER_HZ ticks
    stime: int  # field 15, USER_HZ ticks
    starttime: int  # field 22, USER_HZ ticks after boot

    @property
    def cpu_ticks(self) -> int:
        return self.utime + self.stime


def fields(text: str, at_least: int) -> list[str]:
    """Fields 3.. of /proc/PID/stat (index 0 is field 3, the state); ParseError with fewer than `at_least` fields."""
    _, paren, rest = text.rpartition(")")
    values = rest.split()
    if not paren or len(values) + 2 < at_least:
        raise ParseError("PID/stat", f"expected at least {at_least} fields, found {len(values) + 2}")
    return values


def parse(text: str) -> PidStat:
    """ppid, utime, stime and starttime (fields 4, 14, 15 and 22; every kernel since 2.6 prints at least 44)."""
    values = fields(text, 22)
    try:
        return PidStat(int(values[1]), int(values[11]), int(values[12]), int(values[19]))
    except ValueError:
        raise ParseError("PID/stat", "ppid, utime, stime or starttime is not a number") from None
