"""The classifier: per NIC and per host, interrupt-driven or NAPI-heavy, with hysteresis; pure over snapshots.

In interrupt-driven receive each hard IRQ leads to one poll that empties the ring and re-enables the IRQ.
Under load a poll uses its whole budget, stays scheduled with the IRQ masked, and work moves to repeated
NET_RX softirqs and ksoftirqd: packets per hard IRQ climb, time_squeeze rises. The seed incident was two
replicas entering that mode together on a tg3 driver whose NAPI path could panic."""

from dataclasses import dataclass, field, replace

from lxcwatch.rates import CpuRates, NicRates, cpu_rates, nic_rates
from lxcwatch.snapshot import Snapshot

# The fixed set of reasons an operator can read. Tuned reasons win: polling that was configured is
# still polling, but it is not the load-driven slide the page is about.
REASONS = ("none", "packets_per_interrupt", "time_squeeze", "ksoftirqd", "threaded", "defer_hard_irqs", "busy_poll")
HOST_REASONS = ("none", "nic", "softnet_pressure")


@dataclass(frozen=True)
class Thresholds:
    """Defaults are argued in docs/detection.md; every one is a --detect.* flag."""

    min_packets_per_second: float = 1000.0  # below this a NIC is never heavy: light traffic is no danger
    packets_per_interrupt: float = 32.0  # half the default NAPI weight (64): polls run full
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
    evidence: str  # this sample's reason, "none" without evidence
    rates: NicRates
    softirqs_per_interrupt: float | None
    ksoftirqd_share: float  # mean over the NIC's CPUs


@dataclass(frozen=True)
class Verdict:
    nics: dict[str, NicVerdict] = field(default_factory=dict)
    pressure: Mode = Mode()  # host softnet pressure not explained by a busy NIC
    host: Mode = Mode()  # the host verdict: a promiscuous or bridged NIC heavy, or pressure
    host_evidence: str = "none"


def advance(mode: Mode, evidence: str, now: float, t: Thresholds) -> Mode:
    """One step of hysteresis: flip only after enough consecutive samples that disagree."""
    if (evidence != "none") == mode.heavy:
        return replace(mode, streak=0, reason=evidence if mode.heavy else "none")
    streak = mode.streak + 1
    since = mode.streak_since if mode.streak else now
    if streak < (t.leave_samples if mode.heavy else t.enter_samples):
        return replace(mode, streak=streak, streak_since=since)
    if mode.heavy:
        return Mode(False, "none", 0, 0.0, None, mode.changes + 1)
    return Mode(True, evidence, 0, 0.0, since, mode.changes + 1)


def _tuning(s: Snapshot, device: str) -> str | None:
    napi = s.napi
    tuning = napi.nics.get(device) if napi else None
    if tuning and tuning.threaded:
        return "threaded"
    if tuning and tuning.defer_hard_irqs:
        return "defer_hard_irqs"
    if napi and (napi.sysctls.get("busy_poll") or napi.sysctls.get("busy_read")):
        return "busy_poll"
    return None


def _evidence(r: NicRates, ksoftirqd: float, tuned: str | None, t: Thresholds) -> str:
    if r.packets < t.min_packets_per_second:
        return "none"
    polling = r.packets_per_irq is None or r.packets_per_irq >= t.packets_per_interrupt
    squeezing = r.squeezes >= t.squeezes_per_second
    overflow = ksoftirqd >= t.ksoftirqd_share
    if not (polling or squeezing or overflow):
        return "none"
    return tuned or ("packets_per_interrupt" if polling else "time_squeeze" if squeezing else "ksoftirqd")


def _host_pressure(cpus: dict[int, CpuRates], busy_cpus: set[int], t: Thresholds) -> str:
    for c in cpus.values():
        if c.dropped >= t.host_drops_per_second or (c.cpu not in busy_cpus and c.squeezes >= t.host_squeezes_per_second):
            return "softnet_pressure"
    return "none"


def step(prev: Verdict, before: Snapshot, now: Snapshot, t: Thresholds) -> Verdict:
    """The verdict after snapshot `now`, given the verdict after `before`."""
    cpus = cpu_rates(before, now)
    nics, busy_cpus = {}, set()
    for device, r in nic_rates(before, now).items():
        share = sum(cpus[c].ksoftirqd_share for c in r.cpus if c in cpus) / len(r.cpus) if r.cpus else 0.0
        evidence = _evidence(r, share, _tuning(now, device), t)
        old = prev.nics.get(device)
        nics[device] = NicVerdict(
            device, advance(old.mode if old else Mode(), evidence, now.timestamp, t), evidence, r,
            r.net_rx / r.irqs if r.irqs else None, share,
        )
        if r.packets >= t.min_packets_per_second:
            busy_cpus.update(r.cpus)
    if not (now.ok("interrupts") and now.ok("netdev")):  # no rates this sample: hold what we knew
        nics = {**prev.nics, **nics}
    evidence = _host_pressure(cpus, busy_cpus, t)
    pressure = advance(prev.pressure, evidence, now.timestamp, t)

    exposed = [v for v in nics.values() if v.mode.heavy and _exposed(now, v.device)]
    heavy = bool(exposed) or pressure.heavy
    if heavy:
        since = min([v.mode.since for v in exposed] + ([pressure.since] if pressure.heavy else []))
        reason = "nic" if exposed else "softnet_pressure"
        host = Mode(True, reason, 0, 0.0, prev.host.since if prev.host.heavy else since,
                    prev.host.changes + (not prev.host.heavy))
    else:
        host = Mode(changes=prev.host.changes + prev.host.heavy)
    return Verdict(nics, pressure, host, "nic" if exposed else evidence)


def _exposed(s: Snapshot, device: str) -> bool:
    """A NIC the incident is about: promiscuous (the bridge made it so) or a bridge/bond port."""
    link = s.links.get(device)
    return link is not None and (link.promiscuous or bool(link.master))
