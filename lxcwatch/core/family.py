"""A metric family and its samples: what renderers build and the text writer (lxcwatch/export/exposition.py) writes."""

from dataclasses import dataclass, field


@dataclass(slots=True)
class Family:
    """One metric family. `name` has no `_total`: counters get it on their samples, as both formats want."""

    name: str
    type: str  # "counter" or "gauge"
    help: str
    labels: tuple[str, ...] = ()
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)

    def add(self, values: list[str] | tuple[str, ...], value: float) -> None:
        self.samples.append((tuple(values), value))


def counter(name: str, doc: str, labels: list[str]) -> Family:
    return Family(f"lxcwatch_{name}", "counter", doc, tuple(labels))


def gauge(name: str, doc: str, labels: list[str] | None = None) -> Family:
    return Family(f"lxcwatch_{name}", "gauge", doc, tuple(labels or ()))
