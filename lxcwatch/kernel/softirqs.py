"""Parser for /proc/softirqs: softirq counts per vector and per possible CPU."""

from collections.abc import Collection

from lxcwatch.errors import ParseError

SOURCE = "softirqs"


def parse(text: str, wanted: Collection[str] | None = None) -> dict[str, dict[int, int]]:
    """Return {vector: {cpu: count}}, for the vectors in `wanted` (all when None): ten rows of a column per CPU,
    and the agent needs two. Columns are possible CPUs (unlike /proc/interrupts: online CPUs)."""
    lines = text.splitlines()
    if not lines or not lines[0].split():
        raise ParseError(SOURCE, "missing CPU header", 1)
    try:
        cpus = [int(tok.removeprefix("CPU")) for tok in lines[0].split()]
        if min(cpus) < 0:
            raise ValueError
    except ValueError:
        raise ParseError(SOURCE, f"bad CPU header {lines[0].strip()[:60]!r}", 1) from None
    vectors: dict[str, dict[int, int]] = {}
    for number, line in enumerate(lines[1:], start=2):
        name, colon, rest = line.partition(":")
        if not colon:
            if line.strip():
                raise ParseError(SOURCE, f"no colon in {line.strip()[:60]!r}", number)
            continue
        if wanted is not None and name.strip() not in wanted:
            continue
        counts = rest.split()
        if len(counts) != len(cpus):
            raise ParseError(SOURCE, f"{name.strip()}: expected {len(cpus)} counts, found {len(counts)}", number)
        try:
            values = dict(zip(cpus, map(int, counts)))
            if values and min(values.values()) < 0:  # int() takes a sign; the kernel prints unsigned counts
                raise ValueError
            vectors[name.strip()] = values
        except ValueError:
            raise ParseError(SOURCE, f"{name.strip()}: not a number", number) from None
    if "NET_RX" not in vectors:
        raise ParseError(SOURCE, "no NET_RX row")
    return vectors
