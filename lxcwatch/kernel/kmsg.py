"""Kernel log signatures of a receive path going wrong: which message says what, and bounded counts of them."""

import re
from collections import Counter
from collections.abc import Iterable

_DEV = r"(?P<device>[\w.@:-]+)"
# (signature, pattern): a named group `device` when the line names one. Old and new kernel wordings both.
SIGNATURES = (
    ("netdev_watchdog", re.compile(r"NETDEV WATCHDOG: " + _DEV + r" \([^)]*\): transmit queue \d+ timed out")),
    ("netdev_watchdog", re.compile(_DEV + r": NETDEV WATCHDOG: CPU: \d+: transmit queue \d+ timed out")),
    ("tx_timeout", re.compile(_DEV + r": transmit timed out, resetting")),
    ("panic", re.compile(r"Kernel panic - not syncing")),
    ("null_dereference", re.compile(r"BUG: (kernel NULL pointer dereference, address|unable to handle kernel NULL pointer dereference at)")),
    ("soft_lockup", re.compile(r"BUG: soft lockup - CPU#\d+ stuck for")),
    ("rcu_stall", re.compile(r"rcu: INFO: rcu_\w+ (self-)?detected stalls? on CPU|INFO: rcu_\w+ (self-)?detected stalls? on CPU")),
    ("napi_budget", re.compile(r"NAPI poll function .+? returned \d+, exceeding its budget of \d+")),
    ("promiscuous", re.compile(r"device " + _DEV + r" entered promiscuous mode")),
    ("promiscuous", re.compile(_DEV + r": entered promiscuous mode")),
)
NAMES = tuple(dict.fromkeys(name for name, _ in SIGNATURES))


def match(line: str) -> tuple[str, str] | None:
    """(signature, device or "") of one kernel message, or None."""
    for name, pattern in SIGNATURES:
        m = pattern.search(line)
        if m:
            return name, m.groupdict().get("device") or ""
    return None


def count(lines: Iterable[str]) -> Counter:
    return Counter(hit for hit in map(match, lines) if hit)


def fold(counts: Counter, limit: int = 32) -> Counter:
    """Bounded labels: per signature the first `limit` devices seen keep their name, later ones count as
    "other" (an LXC host puts every new veth into promiscuous mode)."""
    out: Counter = Counter()
    kept: dict[str, set] = {}
    for (signature, device), n in counts.items():  # insertion order: first seen first
        names = kept.setdefault(signature, set())
        if device and device not in names and len(names) >= limit:
            device = "other"
        elif device:
            names.add(device)
        out[signature, device] += n
    return out


def kmsg_message(record: str) -> str | None:
    """The text of one /dev/kmsg record ("6,1234,5678,-;text") if the kernel wrote it; None for continuation lines
    (" KEY=value") and for what user space wrote into /dev/kmsg (systemd, `echo > /dev/kmsg`: facility not 0)."""
    if record.startswith(" "):
        return None
    head, sep, text = record.partition(";")
    if not sep:
        return record
    priority = head.split(",", 1)[0]
    return text if priority.isdigit() and int(priority) >> 3 == 0 else None
