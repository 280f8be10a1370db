"""The classifier: per NIC and per host, interrupt-driven, NAPI-heavy or unknown, with hysteresis; pure over snapshots.

In interrupt-driven receive each hard IRQ (one coalesced batch) leads to polls that empty the ring; the last
one uses less than its weight and re-enables the IRQ. Under load a poll uses its whole budget, stays scheduled
with the IRQ masked, and is polled again and again: the kernel's own count of full polls says so directly
(napi:napi_poll). Without that count, packets per hard IRQ climb past anything coalescing explains while
net_rx_action runs out of budget (time_squeeze) or overflows into ksoftirqd. The seed incident was two
replicas entering that mode together on a tg3 driver whose NAPI path could panic."""

from dataclasses import dataclass, field, replace

from lxcwatch.core.rates import CpuRates, NicRates, cpu_rates, ksoftirqd_shares, nic_rates
from lxcwatch.core.snapshot import Snapshot
from lxcwatch.kernel.ethtool_coalesce import Coalesce

# The fixed set of reasons an operator can read. Tuned reasons win: polling that was configured is
# still polling, but it is not the load-driven slide the page is about.
REASONS = ("none", "full_polls", "packets_per_interrupt", "time_squeeze", "ksoftirqd", "threaded", "defer_hard_irqs",
           "busy_poll")
HOST_REASONS = ("none", "nic", "softnet_pressure")
UNKNOWN = "unknown"  # evidence of a sample whose sources failed: the mode is held, not advanced
ADAPTIVE_BATCH = 256.0  # the largest batch a published adaptive moderation allows (mlx5 DIM, lib/dim/net_dim.c)
COALESCE_MARGIN = 1.25  # above a coalescing ceiling: batches split at sample edges, a window's arrivals vary


@dataclass(frozen=True)
class Thresholds:
    """Defaults are argued in docs/detection.md; every one is a --detect.* flag."""

    min_packets_per_second: float = 1000.0  # below this a NIC is never heavy: light traffic is no danger
    full_poll_share: float = 0.9  # polls that used their whole budget; coalescing alone stays at or below 0.8
    packets_per_interrupt: float = 128.0  # twice the NAPI weight, raised to the NIC's coalescing ceiling
    squeezes_per_second: float = 10.0  # net_rx_action out of budget on the NIC's CPUs
    ksoftirqd_share: float = 0.2  # a fifth of a serving CPU in ksoftirqd: softirq work overflowed
    host_squeezes_per_second: float = 10.0  # on CPUs no busy NIC explains (veth and bridge traffic)
    host_drops_per_second: float = 1.0  # backlog overflow anywhere
    enter_samples: int = 4  # consecutive samples of evidence before entering napi_heavy (a 2 s burst spans 3)
    leave_samples: int = 10  # consecutive samples without evidence before leaving it


@dataclass(frozen=True)
class Mode:
    """Hysteresis state of one NIC or the host."""

    heavy: bool = False
    reason: str = "none"
    streak: int = 0  # consecutive samples whose evidence disagrees with `heavy`
    streak_since: float = 0.0  # wall time of the first of those samples
    since: float | None = None  # wall time the evidence of the current heavy mode began
    changes: int = 0


@dataclass(frozen=True)
class NicVerdict:
    device: str
    mode: Mode
    evidence: str  # this sample's reason, "none" without evidence, UNKNOWN when a source it needs failed
    rates: NicRates
    softirqs_per_interrupt: float | None
    ksoftirqd_share: float  # mean over the NIC's CPUs
    missing: tuple[str, ...] = ()  # the failed sources that made this sample's verdict unknown
    boundary: float | None = None  # packets per IRQ above which the counters count as polling (coalescing-aware)

    @property
    def known(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class Verdict:
    nics: dict[str, NicVerdict] = field(default_factory=dict)
    pressure: Mode = Mode()  # host softnet pressure not explained by a busy NIC
    host: Mode = Mode()  # the host verdict: a promiscuous or bridged NIC heavy, or pressure
    host_evidence: str = "none"  # "nic", "softnet_pressure", "none" or UNKNOWN
    host_missing: tuple[str, ...] = ()  # why the host verdict is unknown this sample ("" sources: known)
    cpus: dict[int, CpuRates] = field(default_factory=dict)  # this interval's per-CPU rates (the flight recorder's)

    @property
    def host_known(self) -> bool:
        return not self.host_missing


def advance(mode: Mode, evidence: str, now: float, t: Thresholds) -> Mode:
    """One step of hysteresis: flip only after enough consecutive samples that disagree."""
    if (evidence != "none") == mode.heavy:
        return replace(mode, streak=0, reason=evidence)
    streak = mode.streak + 1
    since = mode.streak_since if mode.streak else now
    if streak < (t.leave_samples if mode.heavy else t.enter_samples):
        return replace(mode, streak=streak, streak_since=since)
    if mode.heavy:
        return Mode(changes=mode.changes + 1)
    return Mode(True, evidence, since=since, changes=mode.changes + 1)


def _failed(before: Snapshot, now: Snapshot, *names: str) -> tuple[str, ...]:
    """The enabled sources not read in one of the two snapshots: no rate over the interval. A collector disabled
    in both gives no evidence, and its absence is no doubt either."""
    return tuple(n for n in names if (n in before.collectors or n in now.collectors) and not (before.ok(n) and now.ok(n)))


def _tuning(napi, device: str) -> str | None:
    tuning = napi.nics.get(device)
    if tuning and tuning.threaded:
        return "threaded"
    if tuning and tuning.defer_hard_irqs:
        return "defer_hard_irqs"
    if napi.sysctls.get("busy_poll") or napi.sysctls.get("busy_read"):
        return "busy_poll"
    return None


def boundary(r: NicRates, coalesce: Coalesce | None, t: Thresholds) -> float:
    """Packets per IRQ above which coalescing no longer explains the ratio: packets_per_interrupt, or a margin
    above the NIC's own ceiling, the largest of the frames one IRQ may wait for (rx-frames), the packets one
    queue receives in one coalescing window (rx-usecs) and the largest adaptive batch (adaptive-rx). A NIC whose
    coalescing is not known may be moderating adaptively: its ceiling is the largest adaptive batch."""
    if coalesce is None:
        ceiling = ADAPTIVE_BATCH
    else:
        window = r.packets / max(r.queues, 1) * coalesce.rx_usecs * 1e-6
        ceiling = max(float(coalesce.rx_frames), window, ADAPTIVE_BATCH if coalesce.adaptive_rx else 0.0)
    return max(t.packets_per_interrupt, ceiling * COALESCE_MARGIN)


def _counter_evidence(r: NicRates, limit: float, squeezing: bool | None, overflow: bool | None) -> str:
    """Without poll counts: no IRQ at all while receiving (masked throughout), or packets per IRQ above what
    coalescing explains corroborated by squeezes or ksoftirqd. None for a corroboration means its source failed."""
    if r.packets_per_irq is None:
        return "packets_per_interrupt"
    if r.packets_per_irq <= limit:
        return "none"
    if squeezing:
        return "time_squeeze"
    if overflow:
        return "ksoftirqd"
    return UNKNOWN if squeezing is None or overflow is None else "none"


def _nic(before: Snapshot, now: Snapshot, r: NicRates, share: float | None, t: Thresholds) -> tuple[str, tuple, float | None]:
    """(evidence, failed sources, boundary) of one NIC in this sample."""
    if r.packets < t.min_packets_per_second:
        return "none", (), None
    napi = now.napi or before.napi  # tuning and coalescing change rarely: the last sample that read them will do
    if r.polls is not None:  # the kernel's counts: a poll that used its whole budget is polling
        tuned = napi and _tuning(napi, r.device)
        return ((tuned or "full_polls") if r.full_polls / r.polls >= t.full_poll_share else "none"), (), None
    failed = _failed(before, now, "napi_poll") + (("napi",) if napi is None and _failed(before, now, "napi") else ())
    if failed:
        return UNKNOWN, failed, None
    tuned = napi and _tuning(napi, r.device)
    if tuned:  # configured polling: the counters are blind to it (deferred IRQs, work outside softirq)
        return tuned, (), None
    tuning = napi.nics.get(r.device) if napi else None
    limit = boundary(r, tuning.coalesce if tuning else None, t)
    squeezing = r.squeezes >= t.squeezes_per_second if not _failed(before, now, "softnet") else None
    overflow = share >= t.ksoftirqd_share if share is not None else None
    evidence = _counter_evidence(r, limit, squeezing, overflow)
    missing = _failed(before, now, "softnet", "kthreads") if evidence == UNKNOWN else ()
    return evidence, missing, limit


def _host_pressure(cpus: dict[int, CpuRates], busy_cpus: set[int] | None, t: Thresholds) -> str:
    """Backlog drops anywhere, or squeezes on a CPU no busy NIC explains; UNKNOWN when only squeezes on CPUs
    whose NICs are unknown could say."""
    if any(c.dropped >= t.host_drops_per_second for c in cpus.values()):
        return "softnet_pressure"
    squeezed = {c.cpu for c in cpus.values() if c.squeezes >= t.host_squeezes_per_second}
    if busy_cpus is None:
        return UNKNOWN if squeezed else "none"
    return "softnet_pressure" if squeezed - busy_cpus else "none"


def step(prev: Verdict, before: Snapshot, now: Snapshot, t: Thresholds) -> Verdict:
    """The verdict after snapshot `now`, given the verdict after `before`."""
    cpus = cpu_rates(before, now)
    ksoftirqd = ksoftirqd_shares(before, now)
    nics, busy_cpus = {}, set()
    rate_sources = _failed(before, now, "interrupts", "netdev")
    kthreads_ok = not _failed(before, now, "kthreads")
    for device, r in nic_rates(before, now).items():
        share = None
        if kthreads_ok:
            share = sum(ksoftirqd.get(c, 0.0) for c in r.cpus) / len(r.cpus) if r.cpus else 0.0
        evidence, missing, limit = (UNKNOWN, rate_sources, None) if rate_sources else _nic(before, now, r, share, t)
        old = prev.nics.get(device)
        mode = old.mode if old else Mode()
        nics[device] = NicVerdict(
            device, mode if missing else advance(mode, evidence, now.timestamp, t), evidence, r,
            r.net_rx / r.irqs if r.irqs else None, share or 0.0, missing, limit,
        )
        if r.packets >= t.min_packets_per_second:
            busy_cpus.update(r.cpus)
    if rate_sources:  # the NICs known before whose IRQs this sample could not list: held, and unknown
        nics = {**{d: replace(v, evidence=UNKNOWN, missing=rate_sources) for d, v in prev.nics.items()}, **nics}

    pressure_missing = _failed(before, now, "softnet")
    evidence = UNKNOWN if pressure_missing else _host_pressure(cpus, None if rate_sources else busy_cpus, t)
    if evidence == UNKNOWN:
        pressure_missing = pressure_missing or rate_sources
    pressure = prev.pressure if pressure_missing else advance(prev.pressure, evidence, now.timestamp, t)
    return replace(_host(prev, now, nics, pressure, evidence, pressure_missing), cpus=cpus)


def _host(prev: Verdict, now: Snapshot, nics: dict[str, NicVerdict], pressure: Mode, pressure_evidence: str,
          pressure_missing: tuple[str, ...]) -> Verdict:
    """Heavy when a known heavy NIC is exposed or softnet pressure is known heavy; otherwise unknown when the
    pressure, the links or an exposed NIC's verdict is unknown."""
    links_ok = now.ok("links") or "links" not in now.collectors  # disabled: no NIC is known exposed
    exposed = [v for v in nics.values() if links_ok and v.known and v.mode.heavy and _exposed(now, v.device)]
    heavy_pressure = not pressure_missing and pressure.heavy
    if exposed or heavy_pressure:
        since = min([v.mode.since for v in exposed] + ([pressure.since] if heavy_pressure else []))
        reason = "nic" if exposed else "softnet_pressure"
        host = Mode(True, reason, since=prev.host.since if prev.host.heavy else since,
                    changes=prev.host.changes + (not prev.host.heavy))
        return Verdict(nics, pressure, host, "nic" if exposed else pressure_evidence)
    missing = set(pressure_missing)
    if not links_ok:
        missing.add("links")
    for v in nics.values():
        if not v.known and (not links_ok or _exposed(now, v.device)):
            missing.update(v.missing)
    if missing:
        return Verdict(nics, pressure, prev.host, UNKNOWN, tuple(sorted(missing)))
    host = Mode(changes=prev.host.changes + prev.host.heavy)
    return Verdict(nics, pressure, host, pressure_evidence)


def _exposed(s: Snapshot, device: str) -> bool:
    """A NIC the incident is about: promiscuous (the bridge made it so) or a bridge/bond port."""
    link = s.links.get(device)
    return link is not None and (link.promiscuous or bool(link.master))


def mode_name(heavy: bool) -> str:
    """The one name of each mode, in logs and in `lxcwatch status`."""
    return "napi_heavy" if heavy else "interrupt"
