"""The black box's metric families: a pure function of its state (lxcwatch/blackbox/recorder.py)."""

from collections import Counter
from dataclasses import dataclass, field

from lxcwatch.core.family import Family, counter, gauge
from lxcwatch.kernel.kmsg import fold


@dataclass(frozen=True)
class BlackboxState:
    recorder_enabled: bool = False
    ring_size: int | None = None  # None: no recorder configured
    records: int = 0
    written_bytes: int = 0
    write_errors: int = 0
    previous_boot_unclean: bool | None = None  # None: the ring cannot tell (old format, no boot id)
    kernel_log_source: str = "none"  # journal, kmsg or none
    previous_boot_events: Counter = field(default_factory=Counter)  # (signature, device) -> count
    events: Counter = field(default_factory=Counter)


def _one(family: Family, value: float) -> Family:
    family.add([], value)
    return family


def families(b: BlackboxState) -> list[Family]:
    out = [_one(gauge("recorder_enabled", "1 if the flight recorder ring is open for writing."), int(b.recorder_enabled))]
    if b.ring_size is not None:
        out += [_one(counter("recorder_records", "Records written to the flight recorder ring.", []), b.records),
                _one(counter("recorder_written_bytes", "Bytes written to the flight recorder ring.", []), b.written_bytes),
                _one(counter("recorder_write_errors", "Flight recorder writes or syncs that failed (disk full, EIO, ring unopenable).", []),
                     b.write_errors),
                _one(gauge("recorder_size_bytes", "Size of the flight recorder ring."), b.ring_size)]
        if b.previous_boot_unclean is not None:
            out.append(_one(gauge("previous_boot_unclean", "1 if the agent's last run in the previous boot never stopped cleanly."),
                            int(b.previous_boot_unclean)))
    source = gauge("kernel_log_source", "1 for where kernel events are read from: journal, kmsg or none.", ["source"])
    for name in ("journal", "kmsg", "none"):
        source.add([name], int(b.kernel_log_source == name))
    out.append(source)
    previous = gauge("kernel_events_previous_boot", "Kernel log signatures in the previous boot's journal and in pstore.",
                     ["signature", "device"])
    for (signature, device), n in sorted(fold(b.previous_boot_events).items()):
        previous.add([signature, device], n)
    live = counter("kernel_events", "Kernel log signatures in this boot's kernel messages.", ["signature", "device"])
    for (signature, device), n in sorted(fold(b.events).items()):
        live.add([signature, device], n)
    out.extend(f for f in (previous, live) if f.samples)
    return out
