"""What a flight recorder ring holds for postmortem: its runs, how each ended (or that it still runs), and the damage."""

from dataclasses import dataclass
from functools import cached_property

from lxcwatch.blackbox.ring_format import SAMPLE, START, STOP, Broken, Record, Run, Scan

GAP = 1.5  # intervals between two samples of a run beyond which at least one sample is missing


@dataclass
class RunView:
    """The records of one agent run that survive in the ring, oldest first."""

    run: Run
    records: list[Record]

    @cached_property
    def samples(self) -> list[Record]:
        return [r for r in self.records if r.kind == SAMPLE]

    @property
    def stop(self) -> Record | None:
        return self.records[-1] if self.records[-1].kind == STOP else None

    @property
    def start_survives(self) -> bool:
        return self.records[0].kind == START

    @property
    def errors(self) -> int:
        """Write errors the agent had counted by the run's last surviving record."""
        return self.records[-1].errors


def runs(records: list[Record]) -> list[RunView]:
    """Records grouped by the run that wrote them (every record names it), in the order the runs started."""
    views: dict[tuple, RunView] = {}
    for r in records:
        view = views.get(r.run.key)
        if view is None:
            view = views[r.run.key] = RunView(r.run, [])
        view.records.append(r)
    return sorted(views.values(), key=lambda v: v.records[0].seq)


RUNNING, STOPPED, UNCLEAN, UNKNOWN = "running", "stopped", "unclean", "unknown"


def state(view: RunView, newest: bool, current_boot: str, holders: set[int] | None) -> str:
    """How a run ended. Alive means: this boot's run, the ring's newest, and its pid holds the ring's lock; a pid this
    namespace shows as 0 counts as the holder. A run is only called unclean when that is known, never while it may live."""
    if view.stop:
        return STOPPED
    if current_boot and view.run.boot and view.run.boot != current_boot:
        return UNCLEAN  # the boot it ran in is over
    if not current_boot or not view.run.boot:
        return UNKNOWN
    if not newest:
        return UNCLEAN  # a later run of this boot took the ring's lock: this one had died
    if holders is None:
        return UNKNOWN
    return RUNNING if holders & {view.run.pid, 0} else UNCLEAN


@dataclass
class Damage:
    missing: list[tuple[int, int]]  # seq ranges between the oldest and the newest intact record that are not intact
    damaged_headers: int  # of those, how many left a record header behind (corrupt rather than vanished)
    tail: Broken | None  # the write after the newest record, cut short
    file_size: int
    ring_size: int  # what the newest record says the ring's size is
    old_format: int
    duplicates: int


def damage(found: Scan) -> Damage:
    seqs = [r.seq for r in found.records]
    present, missing, lo, hi = set(seqs), [], seqs[0], seqs[-1]
    for a, b in zip(seqs, seqs[1:]):
        if b > a + 1:
            missing.append((a + 1, b - 1))
    inside = len({b.seq for b in found.broken if b.seq is not None and lo < b.seq < hi and b.seq not in present})
    tail = next((b for b in found.broken if b.seq == hi + 1 or (b.seq is None and b.offset > found.records[-1].offset)),
                None)
    return Damage(missing, inside, tail, len(found.buf), found.records[-1].ring_size, found.old_format,
                  found.duplicates)


def gaps(samples: list[Record]) -> list[tuple[Record, Record]]:
    """Consecutive samples of one run further apart than GAP intervals: samples were not written, or were lost."""
    return [(a, b) for a, b in zip(samples, samples[1:]) if b.time - a.time > GAP * a.run.interval]
