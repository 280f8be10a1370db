"""A metric family and its samples: what renderers build and the text writer (lxcwatch/export/exposition.py) writes."""

from collections.abc import Sequence
from dataclasses import dataclass, field


class Columns(Sequence):
    """A family's samples as two columns, the label values of each series and their values, that reads as the list
    of (label values, value) pairs it stands for. For the ~1000-series families that move every sample (a big host's
    link counters), no pair is made per series, and the writer formats a column in one go. Immutable: the writer
    keeps it to compare with the next exposition's."""

    __slots__ = ("keys", "values")

    def __init__(self, keys, values):
        self.keys: tuple[tuple[str, ...], ...] = tuple(keys)
        self.values: tuple[float, ...] = tuple(values)
        if len(self.keys) != len(self.values):
            raise ValueError(f"{len(self.keys)} label sets for {len(self.values)} values")

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return list(zip(self.keys[i], self.values[i]))
        return self.keys[i], self.values[i]

    def __iter__(self):
        return zip(self.keys, self.values)

    def __eq__(self, other) -> bool:
        if isinstance(other, Columns):
            return self.values == other.values and self.keys == other.keys
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Columns({list(self)!r})"


@dataclass(slots=True)
class Family:
    """One metric family. `name` has no `_total`: counters get it on their samples, as both formats want."""

    name: str
    type: str  # "counter" or "gauge"
    help: str
    labels: tuple[str, ...] = ()
    samples: list[tuple[tuple[str, ...], float]] | Columns = field(default_factory=list)

    def add(self, values: list[str] | tuple[str, ...], value: float) -> None:
        self.samples.append((tuple(values), value))


def counter(name: str, doc: str, labels: list[str]) -> Family:
    return Family(f"lxcwatch_{name}", "counter", doc, tuple(labels))


def gauge(name: str, doc: str, labels: list[str] | None = None) -> Family:
    return Family(f"lxcwatch_{name}", "gauge", doc, tuple(labels or ()))
