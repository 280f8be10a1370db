"""The immutable snapshot of one sample: the collectors' results and the fields they added (lxcwatch/collectors)."""

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CollectorResult:
    success: bool
    duration_seconds: float
    error: str = ""
    partial: bool = False  # failed in part: its reading is kept and rendered (a link with an unreadable attribute)


@dataclass(frozen=True)
class Snapshot:
    """Everything one sample saw. Never mutated after it is built. Each collector module declares the fields it
    adds (its merge), and they read as attributes: `s.softnet`, `s.links`. A failed collector contributes
    nothing new, but carries its counters so totals stay monotonic across the failure."""

    seq: int
    timestamp: float  # wall clock, seconds since the epoch
    monotonic: float
    collectors: dict[str, CollectorResult]
    fields: dict[str, object] = field(default_factory=dict)

    def __post_init__(self):
        # As plain attributes: renderers read s.netdev[name] per link, and a __getattr__ per read cost ms per sample.
        for name, value in self.fields.items():
            if name in self.__dict__ or hasattr(type(self), name):
                raise ValueError(f"a collector's field {name!r} shadows Snapshot.{name}")
            object.__setattr__(self, name, value)

    def ok(self, collector: str) -> bool:
        result = self.collectors.get(collector)
        return result is not None and result.success
