"""A kernel CPU list ("0-3,8,10-11"), as in /sys/devices/system/cpu/online (lib/bitmap.c, bitmap_parselist)."""

from lxcwatch.errors import ParseError

ONLINE = "devices/system/cpu/online"  # relative to --path.sysfs


def parse(text: str, source: str = ONLINE) -> tuple[int, ...]:
    """The CPU numbers, in the order listed."""
    cpus = []
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        try:
            cpus.extend(range(int(first), int(last or first) + 1))
        except ValueError:
            raise ParseError(source, f"bad CPU range {part!r}: want N or N-M") from None
    return tuple(cpus)
