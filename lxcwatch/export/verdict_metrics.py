"""Renders the classifier's verdict as metric families: a pure function of the verdict."""

from collections.abc import Iterator

from lxcwatch.core.classifier import HOST_REASONS, REASONS, Verdict
from lxcwatch.core.family import Family, counter, gauge


def render(v: Verdict) -> Iterator[Family]:
    """While a verdict is unknown (a source it needs failed) its mode, reason, since and changes are absent and
    verdict_known is 0: a rule sees "no verdict", never a reassuring 0."""
    heavy = gauge("nic_napi_heavy", "1 if the NIC is in NAPI polling-heavy mode (with hysteresis); absent while unknown.", ["device"])
    known = gauge("nic_napi_verdict_known", "1 if the NIC's verdict could be decided this sample; 0: a source it needs failed.", ["device"])
    ppi = gauge("nic_packets_per_interrupt", "Received packets per hard IRQ on the NIC's receiving vectors, last interval; absent without IRQs.", ["device"])
    spi = gauge("nic_softirqs_per_interrupt", "NET_RX softirqs on the NIC's CPUs per hard IRQ, last interval.", ["device"])
    full = gauge("nic_full_poll_ratio", "Share of the NIC's NAPI polls that used their whole budget, last interval.", ["device"])
    since = gauge("nic_napi_heavy_since_timestamp_seconds", "When the evidence of the current NAPI-heavy mode began.", ["device"])
    changes = counter("nic_mode_changes", "Changes between interrupt-driven and NAPI-heavy mode.", ["device"])
    reason = gauge("nic_napi_reason", "1 for the reason of the NIC's current mode (none when interrupt-driven).", ["device", "reason"])
    for device, n in sorted(v.nics.items()):
        known.add([device], int(n.known))
        if not n.known:
            continue
        heavy.add([device], int(n.mode.heavy))
        r = n.rates
        if r.packets_per_irq is not None:
            ppi.add([device], r.packets_per_irq)
        if n.softirqs_per_interrupt is not None:
            spi.add([device], n.softirqs_per_interrupt)
        if r.polls:
            full.add([device], r.full_polls / r.polls)
        if n.mode.heavy:
            since.add([device], n.mode.since)
        changes.add([device], n.mode.changes)
        for name in REASONS:
            reason.add([device, name], int(n.mode.reason == name))
    yield from (heavy, known, ppi, spi, full, since, changes, reason)
    host_known = gauge("host_napi_verdict_known", "1 if the host's verdict could be decided this sample; 0: a source it needs failed.")
    host_known.add([], int(v.host_known))
    yield host_known
    if not v.host_known:
        return
    host = gauge("host_napi_heavy", "1 if a promiscuous or bridged NIC is NAPI-heavy, or softnet is under pressure; absent while unknown.")
    host.add([], int(v.host.heavy))
    host_reason = gauge("host_napi_reason", "1 for the reason of the host's current mode.", ["reason"])
    for name in HOST_REASONS:
        host_reason.add([name], int(v.host.reason == name))
    host_changes = counter("host_mode_changes", "Changes of the host verdict.", [])
    host_changes.add([], v.host.changes)
    yield from (host, host_reason, host_changes)
    if v.host.heavy:
        host_since = gauge("host_napi_heavy_since_timestamp_seconds", "When the evidence of the host's NAPI-heavy mode began.")
        host_since.add([], v.host.since)
        yield host_since
