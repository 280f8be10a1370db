"""The kernel's own count of NAPI polls per device (tracepoint napi:napi_poll), and the tree file that carries it."""

from dataclasses import dataclass, field

from lxcwatch.errors import ParseError

# Not a kernel file: in tree mode (--path.procfs is a tree) the counts come from here. `lxcwatch record`
# writes it from the live counters, so a replayed trace carries them (docs/contract.md).
SOURCE = "lxcwatch/napi_poll"
HEADER = "# device polls full_polls large_budget_polls"


@dataclass(frozen=True, slots=True)
class NapiPolls:
    """Totals since the counting began (64-bit, summed over CPUs); a decrease means the counting restarted."""

    polls: int  # napi_poll events of the device: one per call of its poll function
    full: int  # polls whose work reached their budget: the device is polled again with its IRQ still masked
    large_budget: int = 0  # polls with a budget above NAPI_POLL_WEIGHT (64): counted in polls, never judged full


@dataclass(frozen=True)
class NapiPollReading:
    counts: dict[str, NapiPolls] = field(default_factory=dict)  # device -> totals
    unavailable: str = ""  # why this host cannot give the kernel's counts ("" when it can): detection falls back


def parse(text: str) -> dict[str, NapiPolls]:
    counts = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) not in (3, 4):  # traces recorded before large_budget_polls have three columns
            raise ParseError(SOURCE, f"expected 'device polls full_polls [large_budget_polls]', found {line.strip()[:60]!r}", number)
        device, *values = fields
        if not all(v.isdigit() for v in values):
            raise ParseError(SOURCE, f"not a count in {line.strip()[:60]!r}", number)
        polls, full, large = (int(v) for v in values + ["0"] * (4 - len(fields)))
        if full + large > polls:
            raise ParseError(SOURCE, f"{device}: more full ({full}) and large-budget ({large}) polls than polls ({polls})", number)
        counts[device] = NapiPolls(polls, full, large)
    return counts


def format_counts(counts: dict[str, NapiPolls]) -> str:
    return "".join([HEADER + "\n"] + [f"{d} {c.polls} {c.full} {c.large_budget}\n" for d, c in sorted(counts.items())])
