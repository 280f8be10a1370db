"""Prometheus-style durations ("1s", "500ms", "1m30s"), as flags and the probes file write them."""

import re

from lxcwatch.errors import UsageError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """Prometheus-style durations: "1s", "500ms", "1m30s"."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"invalid duration {text!r}: want e.g. 1s, 500ms, 1m30s")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise UsageError(f"invalid duration {text!r}: must be greater than zero")
    return seconds
