"""Metric families and their text and OpenMetrics exposition, written for a scrape of ~15k samples in a few ms."""

import math
from collections.abc import Sequence
from typing import NamedTuple

from lxcwatch.core.family import Columns, Family
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


class _Prefixes(NamedTuple):
    """A family's series as last written: their label values, their 'name{...} ' texts and, once the family was
    written as ints, those texts as one "%d" format."""

    keys: Sequence[tuple[str, ...]]
    texts: list[str]
    format: str | None = None


class Writer:
    """Writes expositions, keeping the label text of each series from one exposition to the next: a big host's
    12k series mostly keep their labels from sample to sample, and escaping and joining them was two thirds of the
    writing time (docs/performance.md); and the lines of each family whose samples are those of the last exposition.
    Only the last exposition's series are kept, so churn cannot grow it."""

    def __init__(self):
        # sample name -> its series' label text, in the last exposition's order
        self._prefixes: dict[str, _Prefixes] = {}
        # sample name -> (the last exposition's samples, their lines): a family whose values did not move (most
        # link counters of a host in a second, its flags and infos) is not written again
        self._lines: dict[str, tuple[list, str]] = {}

    def render(self, families: list[Family], openmetrics: bool, end: bool = True) -> bytes:
        """`end`: close an OpenMetrics exposition with "# EOF"; without, more families may follow."""
        out: list[str] = []
        kept: dict[str, _Prefixes] = {}
        written: dict[str, tuple[list, str]] = {}
        for f in families:
            sample_name = f.name + "_total" if f.type == "counter" else f.name
            type_name = f.name if openmetrics else sample_name
            out.append(f"# HELP {type_name} {_help(f.help)}\n# TYPE {type_name} {f.type}\n")
            samples = f.samples
            last = self._lines.get(sample_name)
            if last is not None and last[0] == samples:
                written[sample_name] = last
                out.append(last[1])
                if sample_name in self._prefixes:
                    kept[sample_name] = self._prefixes[sample_name]
                continue
            if not f.labels:
                lines = "".join(f"{sample_name} {_number(value)}\n" for _, value in samples)
            else:
                if type(samples) is Columns:
                    keys, values = samples.keys, samples.values
                else:
                    keys, values = [k for k, _ in samples], [v for _, v in samples]
                before = self._prefixes.get(sample_name)
                if before is None or before.keys != keys:  # series came, went or moved: the rest keep their text
                    known = dict(zip(before.keys, before.texts)) if before else {}
                    names = [f'{k}="' for k in f.labels]
                    texts = [known.get(values) or _prefix(sample_name, names, values) for values in keys]
                    before = _Prefixes(keys, texts)
                if set(map(type, values)) == {int}:  # counters: every line in one "%d" formatting, in C
                    if before.format is None:
                        before = before._replace(format="".join([p.replace("%", "%%") + "%d\n" for p in before.texts]))
                    lines = before.format % tuple(values)
                else:
                    lines = "".join([prefix + (str(value) if type(value) is int else _number(value)) + "\n"
                                     for prefix, value in zip(before.texts, values)])
                kept[sample_name] = before
            # a Columns is immutable; a list is not ours to keep, so a copy
            written[sample_name] = (samples if type(samples) is Columns else list(samples)), lines
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
