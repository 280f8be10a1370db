"""The classifier on hand-built snapshot sequences: evidence, hysteresis, tuned polling, host pressure."""

import pytest

from lxcwatch.classifier import Mode, Thresholds, Verdict, advance, step
from lxcwatch.ethtool import Driver
from lxcwatch.irq_vectors import NicIrq
from lxcwatch.links import Link
from lxcwatch.napi import Napi, NapiTuning
from lxcwatch.net_dev import NetDevCounters
from lxcwatch.snapshot import CollectorResult, Interrupts, Softirqs, build
from lxcwatch.softnet_stat import SoftnetRow

T = Thresholds(enter_samples=3, leave_samples=4)
OK = CollectorResult(True, 0.0)


class Host:
    """eth0 (rx vector 38 served by CPU 0) and two CPUs; each tick adds the given per-second rates."""

    def __init__(self, promiscuous=True, tuning=NapiTuning(False, 0, 0), sysctls=None):
        self.t, self.rx, self.irqs, self.squeeze, self.drops = 0, 0, 0, [0, 0], [0, 0]
        self.link = Link("eth0", 2, "physical", "br0" if promiscuous else "", "up", 0x1103 if promiscuous else 0x1003,
                         1, Driver("tg3", "3.119"))
        self.napi = Napi({"eth0": tuning}, sysctls or {"busy_poll": 0, "busy_read": 0})
        self.snap = None
        self.verdict = Verdict()

    def tick(self, pps=0, irqs=0, squeeze=(0, 0), drops=(0, 0)):
        self.t += 1
        self.rx += pps
        self.irqs += irqs
        self.squeeze = [a + b for a, b in zip(self.squeeze, squeeze)]
        self.drops = [a + b for a, b in zip(self.drops, drops)]
        readings = {
            "softnet": tuple(SoftnetRow(c, 0, self.drops[c], self.squeeze[c], 0, 0, 0, 0, None, None) for c in (0, 1)),
            "softirqs": Softirqs({"NET_RX": {0: 0, 1: 0}}, {0: 0, 1: 0}),
            "interrupts": Interrupts((0, 1), (NicIrq("eth0", "38", "rx", "eth0-rx-1"),), {"38": (self.irqs + 1, 0)}),
            "netdev": {"eth0": NetDevCounters(0, self.rx, 0, 0, 0, 0, 0, 0)},
            "links": {"eth0": self.link},
            "napi": self.napi,
        }
        new = build(self.snap, self.t, 1000.0 + self.t, float(self.t), readings, {n: OK for n in readings})
        if self.snap is not None:
            self.verdict = step(self.verdict, self.snap, new, T)
        self.snap = new
        return self.verdict

    def run(self, n, **rates):
        return [self.tick(**rates) for _ in range(n)]


LOAD = dict(pps=200_000, irqs=1_000)  # 200 packets per interrupt: polls run full
QUIET = dict(pps=20_000, irqs=10_000)  # 2 packets per interrupt: interrupt-driven


@pytest.mark.parametrize(
    "rates,evidence",
    [
        (LOAD, "packets_per_interrupt"),
        (QUIET, "none"),
        (dict(pps=500, irqs=1), "none"),  # light traffic is never heavy, whatever the ratio
        (dict(pps=50_000, irqs=0), "packets_per_interrupt"),  # IRQs masked throughout
        (dict(pps=20_000, irqs=10_000, squeeze=(50, 0)), "time_squeeze"),
        (dict(pps=20_000, irqs=10_000, squeeze=(0, 50)), "none"),  # squeezes on a CPU that does not serve eth0
    ],
    ids=["load", "quiet", "light", "irqs-masked", "squeeze", "squeeze-elsewhere"],
)
def test_evidence(rates, evidence):
    h = Host()
    h.tick()
    assert h.tick(**rates).nics["eth0"].evidence == evidence


def test_enters_after_n_samples_and_leaves_after_m():
    h = Host()
    h.tick()
    modes = [v.nics["eth0"].mode.heavy for v in h.run(3, **LOAD)]
    assert modes == [False, False, True]
    entered = h.verdict.nics["eth0"].mode
    assert entered.since == 1002.0  # the first sample with evidence, not the third
    assert entered.changes == 1 and entered.reason == "packets_per_interrupt"
    modes = [v.nics["eth0"].mode.heavy for v in h.run(4, **QUIET)]
    assert modes == [True, True, True, False]
    assert h.verdict.nics["eth0"].mode.changes == 2 and h.verdict.nics["eth0"].mode.reason == "none"


def test_a_burst_shorter_than_n_samples_does_not_trip():
    h = Host()
    h.tick()
    for _ in range(10):
        h.run(2, **LOAD)
        h.run(1, **QUIET)
    assert not h.verdict.nics["eth0"].mode.heavy
    assert h.verdict.nics["eth0"].mode.changes == 0


def test_short_lulls_do_not_flap():
    h = Host()
    h.tick()
    h.run(3, **LOAD)
    for _ in range(10):
        h.run(3, **QUIET)
        h.run(1, **LOAD)
    assert h.verdict.nics["eth0"].mode.heavy and h.verdict.nics["eth0"].mode.changes == 1


@pytest.mark.parametrize(
    "host,reason",
    [
        (Host(tuning=NapiTuning(True, 0, 0)), "threaded"),
        (Host(tuning=NapiTuning(False, 2, 200_000)), "defer_hard_irqs"),
        (Host(sysctls={"busy_poll": 50, "busy_read": 0}), "busy_poll"),
    ],
    ids=["threaded", "defer", "busy-poll"],
)
def test_tuned_polling_still_counts_but_says_why(host, reason):
    host.tick()
    v = host.run(3, **LOAD)[-1]
    assert v.nics["eth0"].mode.heavy and v.nics["eth0"].mode.reason == reason
    assert v.host.heavy and v.host.reason == "nic"


def test_host_follows_only_exposed_nics():
    h = Host(promiscuous=False)
    h.tick()
    v = h.run(3, **LOAD)[-1]
    assert v.nics["eth0"].mode.heavy
    assert not v.host.heavy  # neither promiscuous nor a bridge port


def test_host_softnet_pressure_without_nic_traffic():
    h = Host()
    h.tick()
    v = h.run(3, squeeze=(0, 500))[-1]  # veth floods on CPU 1; eth0 idle
    assert not v.nics["eth0"].mode.heavy
    assert v.host.heavy and v.host.reason == "softnet_pressure" and v.host.since == 1002.0
    v = h.run(4)[-1]
    assert not v.host.heavy and v.host.changes == 2


def test_backlog_drops_are_pressure_anywhere():
    h = Host(promiscuous=False)
    h.tick()
    assert h.run(3, drops=(5, 0))[-1].host.heavy


def test_advance_keeps_the_streak_start():
    m = advance(Mode(), "time_squeeze", 10.0, T)
    m = advance(m, "time_squeeze", 11.0, T)
    assert (m.heavy, m.streak, m.streak_since) == (False, 2, 10.0)
    m = advance(m, "none", 12.0, T)
    assert (m.heavy, m.streak) == (False, 0)
