"""Metric families and their text and OpenMetrics exposition, written for a scrape of ~15k samples in a few ms."""

import math

from lxcwatch.core.family import Family
from lxcwatch.export import negotiation

TEXT = "text/plain; version=0.0.4; charset=utf-8"  # the classic format every Prometheus reads
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def label_value(value: str) -> str:
    """The one spelling of kernel bytes (decoded UTF-8 + surrogateescape, lxcwatch/sources/root.py) in a label: UTF-8 as
    is, a byte that is not UTF-8 as \\xNN and, so that the spelling reverses to the bytes, a backslash as \\\\."""
    if value.isascii() and "\\" not in value:
        return value
    raw = value.replace("\\", "\\\\").encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace")


def _escape(value: str) -> str:
    if not value.isascii() or "\\" in value or '"' in value or "\n" in value:
        return label_value(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _number(value: float) -> str:
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class Writer:
    """Writes expositions, keeping the label text of each series from one exposition to the next: a big host's
    12k series mostly keep their labels from sample to sample, and escaping and joining them was two thirds of the
    writing time (docs/performance.md); and the lines of each family whose samples are those of the last exposition.
    Only the last exposition's series are kept, so churn cannot grow it."""

    def __init__(self):
        # sample name -> (label values of each series, their 'name{...} ' text), in the last exposition's order
        self._prefixes: dict[str, tuple[list[tuple[str, ...]], list[str]]] = {}
        # sample name -> (the last exposition's samples, their lines): a family whose values did not move (most
        # link counters of a host in a second, its flags and infos) is not written again
        self._lines: dict[str, tuple[list, str]] = {}

    def render(self, families: list[Family], openmetrics: bool, end: bool = True) -> bytes:
        """`end`: close an OpenMetrics exposition with "# EOF"; without, more families may follow."""
        out: list[str] = []
        kept: dict[str, tuple[list[tuple[str, ...]], list[str]]] = {}
        written: dict[str, tuple[list, str]] = {}
        for f in families:
            sample_name = f.name + "_total" if f.type == "counter" else f.name
            type_name = f.name if openmetrics else sample_name
            out.append(f"# HELP {type_name} {_help(f.help)}\n# TYPE {type_name} {f.type}\n")
            last = self._lines.get(sample_name)
            if last is not None and last[0] == f.samples:
                written[sample_name] = last
                out.append(last[1])
                if sample_name in self._prefixes:
                    kept[sample_name] = self._prefixes[sample_name]
                continue
            if not f.labels:
                lines = "".join(f"{sample_name} {_number(value)}\n" for _, value in f.samples)
            else:
                keys = [values for values, _ in f.samples]
                before = self._prefixes.get(sample_name)
                if before is None or before[0] != keys:  # series came, went or moved: the rest keep their text
                    known = dict(zip(*before)) if before else {}
                    names = [f'{k}="' for k in f.labels]
                    prefixes = [known.get(values) or _prefix(sample_name, names, values) for values in keys]
                    before = keys, prefixes
                kept[sample_name] = before
                lines = "".join([prefix + (str(value) if type(value) is int else _number(value)) + "\n"
                                 for prefix, (_, value) in zip(before[1], f.samples)])
            written[sample_name] = list(f.samples), lines  # a copy: a family's list is not ours to keep
            out.append(lines)
        self._prefixes, self._lines = kept, written
        if openmetrics and end:
            out.append("# EOF\n")
        return "".join(out).encode()


def _prefix(sample_name: str, names: list[str], values: tuple[str, ...]) -> str:
    return sample_name + "{" + ",".join(k + _escape(v) + '"' for k, v in zip(names, values)) + "} "


def render(families: list[Family], openmetrics: bool, end: bool = True) -> bytes:
    """`end`: close an OpenMetrics exposition with "# EOF"; without, more families may follow."""
    return Writer().render(families, openmetrics, end)


def from_client(metrics) -> list[Family]:
    """prometheus_client's metric families (e.g. its process collector's) as Families, for this module's writer."""
    out = []
    for m in metrics:
        labels = tuple(m.samples[0].labels) if m.samples else ()
        out.append(Family(m.name, m.type, m.documentation, labels,
                          [(tuple(s.labels[k] for k in labels), s.value) for s in m.samples
                           if s.name in (m.name, m.name + "_total")]))  # no _created samples
    return out


def negotiate(accept: str) -> tuple[bool, str]:
    """(openmetrics?, content type) for an Accept header (negotiation.wants_openmetrics)."""
    return (True, OPENMETRICS) if negotiation.wants_openmetrics(accept) else (False, TEXT)
