"""napi_poll: NAPI polls per device, all and full, counted on the napi:napi_poll tracepoint (perf_event_open)."""

from lxcwatch.collectors import Collector
from lxcwatch.core.family import counter, gauge
from lxcwatch.kernel import napi_poll


def read(s):
    return s.napi_polls.read(s.napi_poll_devices())


def merge(prev, reading) -> dict:
    """napi_polls: the tracepoint's counts (NapiPollReading); None when the collector failed."""
    return {"napi_polls": reading}


def render(s):
    reading = s.napi_polls
    available = gauge("napi_poll_available", "1 if the kernel's napi:napi_poll counts are read; 0: detection uses the counters only.")
    available.add([], int(not reading.unavailable))
    yield available
    if reading.unavailable:
        why = gauge("napi_poll_unavailable", "Why the napi:napi_poll counts are not read; value is always 1.", ["reason"])
        why.add([reading.unavailable], 1)
        yield why
        return
    polls = counter("nic_napi_polls", "NAPI polls of the device (tracepoint napi:napi_poll).", ["device"])
    full = counter("nic_napi_full_polls", "NAPI polls that used their whole budget: polled again with the IRQ masked.", ["device"])
    large = counter("nic_napi_large_budget_polls", "NAPI polls with a budget above 64 (NAPI_POLL_WEIGHT), "
                    "never counted as full: above 0, the full-poll count misses some.", ["device"])
    for device, c in sorted(reading.counts.items()):
        polls.add([device], c.polls)
        full.add([device], c.full)
        large.add([device], c.large_budget)
    yield from (polls, full, large)


COLLECTOR = Collector("napi_poll", 80, read, merge, render, files=(napi_poll.SOURCE,))
