"""Interrupt coalescing per NIC (what `ethtool -c` shows: rx-usecs, rx-frames, adaptive-rx), and its tree file."""

from dataclasses import dataclass

from lxcwatch.errors import ParseError

# Not a kernel file: in tree mode the values come from here; `lxcwatch record` writes it from the live
# ETHTOOL_GCOALESCE answers (docs/contract.md).
SOURCE = "lxcwatch/ethtool_coalesce"
HEADER = "# device rx_usecs rx_frames adaptive_rx"


@dataclass(frozen=True, slots=True)
class Coalesce:
    rx_usecs: int  # delay an RX interrupt up to this long after a packet (0: no time-based coalescing)
    rx_frames: int  # or until this many packets arrived (0: no count-based coalescing)
    adaptive_rx: bool  # the driver moves both with the load (DIM, adaptive ITR)


def parse(text: str) -> dict[str, Coalesce]:
    out = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 4 or not all(f.isdigit() for f in fields[1:]) or fields[3] not in ("0", "1"):
            raise ParseError(SOURCE, f"expected 'device rx_usecs rx_frames adaptive_rx(0|1)', found {line.strip()[:60]!r}", number)
        out[fields[0]] = Coalesce(int(fields[1]), int(fields[2]), fields[3] == "1")
    return out


def format_values(values: dict[str, Coalesce]) -> str:
    lines = [f"{d} {c.rx_usecs} {c.rx_frames} {int(c.adaptive_rx)}\n" for d, c in sorted(values.items())]
    return "".join([HEADER + "\n"] + lines)
