"""Snapshots from readings (pure), counter continuity across wraps and failures, and rates between snapshots."""

import pytest

from lxcwatch.kernel.irq_vectors import NicIrq
from lxcwatch.kernel.kthread import KernelThread
from lxcwatch.kernel.napi_poll import NapiPollReading, NapiPolls
from lxcwatch.kernel.net_dev import NetDevCounters
from lxcwatch.core.rates import cpu_rates, ksoftirqd_shares, nic_rates
from lxcwatch.collectors import build
from lxcwatch.collectors.interrupts import Interrupts
from lxcwatch.collectors.softirqs import Softirqs
from lxcwatch.core.snapshot import CollectorResult
from lxcwatch.kernel.softnet_stat import SoftnetRow

OK = CollectorResult(True, 0.001)
FAILED = CollectorResult(False, 0.001, "net/softnet_stat:2: expected 13 columns like the first row, found 4")


def softnet(cpu, processed, squeeze=0):
    return SoftnetRow(cpu, processed, 0, squeeze, 0, 0, 0, 0, None, None)


def netdev(rx):
    return NetDevCounters(0, rx, 0, 0, 0, 0, 0, 0)


def reading(t, processed, irq_counts, rx, net_rx, squeeze=0, ticks=0):
    """A host with one NIC eth0 (rx vector 38 on CPUs 0 and 1, control vector 37) and two CPUs."""
    return {
        "softnet": (softnet(0, processed, squeeze), softnet(1, 7)),
        "softirqs": Softirqs({"NET_RX": {0: net_rx, 1: 3}, "NET_TX": {0: 1, 1: 1}}, {0: ticks, 1: 0}),
        "interrupts": Interrupts(
            (0, 1),
            (NicIrq("eth0", "37", "control", "virtio2-config"), NicIrq("eth0", "38", "rx", "virtio2-input.0")),
            {"37": (1, 0), "38": irq_counts},
        ),
        "netdev": {"eth0": netdev(rx)},
    }


def snap(prev, t, readings, results=None):
    results = results or {name: OK for name in readings}
    return build(prev, (prev.seq + 1) if prev else 1, 1000.0 + t, t, readings, results)


def test_softnet_totals_survive_a_wrap():
    a = snap(None, 0, reading(0, 0xFFFFFFF0, (0, 0), 0, 0))
    b = snap(a, 1, reading(1, 0x00000010, (0, 0), 0, 0))
    assert b.softnet.total[(0, "processed")] == 0xFFFFFFF0 + 0x20
    assert b.softnet.total[(1, "processed")] == 7


def test_failed_collector_contributes_nothing_but_keeps_counter_state():
    a = snap(None, 0, reading(0, 0xFFFFFFF0, (0, 0), 0, 0))
    failed = reading(1, 0, (0, 0), 0, 0)
    del failed["softnet"]
    b = snap(a, 1, failed, {"softnet": FAILED, "softirqs": OK, "interrupts": OK, "netdev": OK})
    assert not b.ok("softnet") and b.ok("netdev")
    assert b.softnet_rows == {}
    c = snap(b, 2, reading(2, 0x00000010, (0, 0), 0, 0))
    assert c.softnet.total[(0, "processed")] == 0xFFFFFFF0 + 0x20


def test_nic_rates_over_the_receiving_vectors_and_their_cpus():
    a = snap(None, 0, reading(0, 100, (1000, 0), 50_000, 900, squeeze=4, ticks=10))
    b = snap(a, 2, reading(2, 300, (1100, 0), 90_000, 1500, squeeze=10, ticks=60))
    r = nic_rates(a, b)["eth0"]
    assert r.packets == 20_000  # (90000 - 50000) / 2 s
    assert r.irqs == 50  # only vector 38; the control vector 37 is left out
    assert r.packets_per_irq == 400
    assert r.cpus == (0,)  # CPU 1 never handled vector 38
    assert r.net_rx == 300  # (1500 - 900) / 2 on CPU 0
    assert r.squeezes == 3
    c = cpu_rates(a, b)[0]
    assert (c.processed, c.squeezes, c.net_rx) == (100, 3, 300)
    assert c.softirq_share == pytest.approx(0.25)  # 50 ticks = 0.5 s of 2 s


@pytest.mark.parametrize("hints", [
    pytest.param(None, id="no-hint"),
    pytest.param([None, 1, 1, 3, 2, 1, 1, 1], id="parser-hint"),  # the last column whose text changed, as the parser says
    pytest.param([1] * 8, id="stale-hint"),
    pytest.param([9] * 8, id="hint-out-of-range"),
])
def test_serving_cpus_follow_an_irq_to_other_cpus_at_once(hints):
    """rates checks first the column the parser saw each IRQ's row change in last (core/rates.py): a hint that must
    never change the result. An IRQ that irqbalance moves, or that fires on two CPUs, shows its new CPUs in the very
    next interval."""
    counts = [(0, 0, 0, 0), (0, 5, 0, 0), (0, 9, 0, 0), (0, 9, 0, 4), (2, 9, 1, 4), (2, 10, 1, 4), (3, 11, 1, 4),
              (3, 11, 1, 4)]
    serving = []
    before = None
    for t, row in enumerate(counts):
        readings = reading(t, 0, (0, 0), 0, 0)
        hot = {"38": hints[t]} if hints and hints[t] is not None else {}
        readings["interrupts"] = Interrupts((0, 1, 2, 3), (NicIrq("eth0", "38", "rx", "virtio2-input.0"),), {"38": row}, hot)
        now = snap(before, t, readings)
        if before is not None:
            serving.append(nic_rates(before, now)["eth0"].cpus)
        before = now
    # on CPU 1, again on 1, on 3 alone, on 0 and 2, on 1 again, on 1 and 0; then nothing: those that ever served it
    assert serving == [(1,), (1,), (3,), (0, 2), (1,), (0, 1), (0, 1, 2, 3)]


def test_no_interrupts_means_no_packets_per_irq():
    a = snap(None, 0, reading(0, 0, (5, 5), 10, 0))
    b = snap(a, 1, reading(1, 0, (5, 5), 10, 0))
    r = nic_rates(a, b)["eth0"]
    assert r.packets_per_irq is None and r.irqs == 0
    assert r.cpus == (0, 1)  # nothing moved: the CPUs that ever handled it


def test_interrupt_totals_survive_per_cpu_wraps():
    a = snap(None, 0, reading(0, 0, (0xFFFFFFFE, 10), 0, 0))
    b = snap(a, 1, reading(1, 0, (3, 15), 0, 0))  # CPU 0 wrapped (+5), CPU 1 +5
    assert b.irqs.total["38"] == 0xFFFFFFFE + 10 + 10


def test_a_cpu_going_offline_is_not_a_decrease():
    a = snap(None, 0, reading(0, 0, (10, 20), 0, 0))
    offline = reading(1, 0, (11,), 0, 0)
    offline["interrupts"] = Interrupts((0,), offline["interrupts"].nic_irqs, {"37": (1,), "38": (11,)})
    b = snap(a, 1, offline)
    assert b.irqs.total["38"] == 31
    c = snap(b, 2, reading(2, 0, (12, 20), 0, 0))  # back online with its old count
    assert c.irqs.total["38"] == 32


def two_queues(t, counts, rx):
    return {"interrupts": Interrupts((0, 1), (NicIrq("eth0", "38", "rx", "eth0-rx-0"), NicIrq("eth0", "39", "rx", "eth0-rx-1")),
                                     {"38": (counts[0], 0), "39": (0, counts[1])}),
            "netdev": {"eth0": netdev(rx)}}


@pytest.mark.parametrize("after,queues", [((20, 5), 1), ((20, 15), 2), ((10, 9), 1), ((20, 6), 2)])
def test_queues_are_the_receiving_vectors_that_fired(after, queues):
    a = snap(None, 0, two_queues(0, (10, 5), 0))
    b = snap(a, 1, two_queues(1, after, 1000))
    assert nic_rates(a, b)["eth0"].queues == queues


def test_no_vector_fired_still_counts_one_queue():
    a = snap(None, 0, two_queues(0, (10, 5), 0))
    assert nic_rates(a, snap(a, 1, two_queues(1, (10, 5), 1000)))["eth0"].queues == 1


def polls(t, reading):
    return {**two_queues(t, (10 + t, 5), 1000 * t), "napi_poll": reading}


@pytest.mark.parametrize("before,after,expected", [
    ({"eth0": NapiPolls(100, 50)}, {"eth0": NapiPolls(300, 200)}, (100.0, 75.0)),  # over 2 s
    ({"eth0": NapiPolls(100, 50)}, {"eth0": NapiPolls(300, 50)}, (100.0, 0.0)),  # no poll used its whole budget
    ({"eth0": NapiPolls(100, 50)}, {"eth0": NapiPolls(100, 50)}, None),  # not polled in the interval
    ({"eth0": NapiPolls(100, 50)}, {"eth0": NapiPolls(90, 60)}, None),  # the counting restarted
    ({"eth0": NapiPolls(100, 50)}, {"eth0": NapiPolls(300, 40)}, None),  # full polls went back: restarted
    ({"eth1": NapiPolls(100, 50)}, {"eth0": NapiPolls(300, 200)}, None),  # the device is new to the counts
    ({"eth0": NapiPolls(100, 50)}, {}, None),  # or gone from them
], ids=["rates", "no-full", "idle", "restart", "full-restart", "new", "gone"])
def test_poll_rates_only_over_a_clean_interval(before, after, expected):
    a = snap(None, 0, polls(0, NapiPollReading(before)))
    b = snap(a, 2, polls(2, NapiPollReading(after)))
    r = nic_rates(a, b)["eth0"]
    assert (None if r.polls is None else (r.polls, r.full_polls)) == expected


def test_no_poll_rates_when_one_sample_had_no_reading():
    a = snap(None, 0, two_queues(0, (10, 5), 0))
    b = snap(a, 1, polls(1, NapiPollReading({"eth0": NapiPolls(300, 200)})))
    assert nic_rates(a, b)["eth0"].polls is None


KSOFTIRQD = (KernelThread(10, "ksoftirqd/0", 0, None), KernelThread(18, "ksoftirqd/1", 1, None))


def test_no_rates_over_an_interval_of_no_time():
    a = snap(None, 0, {**reading(0, 100, (1000, 0), 50_000, 900), "kthreads": dict(zip(KSOFTIRQD, (0, 0)))})
    b = snap(a, 0, {**reading(0, 300, (1100, 0), 90_000, 1500), "kthreads": dict(zip(KSOFTIRQD, (50, 0)))})
    assert (nic_rates(a, b), cpu_rates(a, b), ksoftirqd_shares(a, b)) == ({}, {}, {})


def cpus_reading(cpus, ticks, net_tx, ksoftirqd):
    """Softnet rows for `cpus` (100 processed each), /proc/stat softirq ticks and NET_TX counts per CPU, ksoftirqd ticks."""
    return {
        "softnet": tuple(softnet(c, 100) for c in cpus),
        "softirqs": Softirqs({"NET_RX": {c: 0 for c in net_tx}, "NET_TX": net_tx}, ticks),
        "kthreads": dict(zip(KSOFTIRQD, ksoftirqd)),
    }


def test_cpu_rates_of_cpus_that_came_online_or_went_missing():
    """Over 2 s, CPUs 0 and 1 before; CPUs 0 to 3 after, /proc/stat listing CPU 2 only after and CPU 1 and 3 not at
    all after. A CPU without a reading at either end has nothing to rate: 0."""
    a = snap(None, 0, cpus_reading((0, 1), {0: 10, 1: 40}, {0: 1, 1: 1}, (0, 20)))
    b = snap(a, 2, cpus_reading((0, 1, 2, 3), {0: 60, 2: 30}, {0: 101, 1: 1, 2: 50, 3: 9}, (100, 40)))
    r = cpu_rates(a, b)
    assert sorted(r) == [0, 1, 2, 3]
    assert (r[0].processed, r[0].net_tx, r[0].softirq_share, r[0].ksoftirqd_share) == (0, 50, 0.25, 0.5)  # 50 ticks, 100
    assert (r[1].processed, r[1].net_tx, r[1].softirq_share, r[1].ksoftirqd_share) == (0, 0, 0, 0.1)  # 20 ksoftirqd ticks
    for cpu in (2, 3):  # new: no rate yet, and no ksoftirqd thread listed
        assert (r[cpu].processed, r[cpu].net_tx, r[cpu].softirq_share, r[cpu].ksoftirqd_share) == (0, 0, 0, 0.0)


def test_ksoftirqd_share_is_ticks_over_the_interval():
    a = snap(None, 0, {"kthreads": dict(zip(KSOFTIRQD, (0, 20)))})
    b = snap(a, 2, {"kthreads": dict(zip(KSOFTIRQD, (100, 40)))})
    assert ksoftirqd_shares(a, b) == {0: 0.5, 1: 0.1}  # 100 and 20 USER_HZ ticks of 2 s


def test_a_cpu_and_a_vector_new_in_the_interval_add_nothing():
    """CPU 1 comes online without handling vector 38; eth0 gains vector 39: neither moved over the interval."""
    irqs = (NicIrq("eth0", "38", "rx", "eth0-rx-0"), NicIrq("eth0", "39", "rx", "eth0-rx-1"))
    a = snap(None, 0, {"interrupts": Interrupts((0,), irqs[:1], {"38": (10,)}), "netdev": {"eth0": netdev(0)}})
    b = snap(a, 1, {"interrupts": Interrupts((0, 1), irqs, {"38": (15, 0), "39": (4, 0)}), "netdev": {"eth0": netdev(100)}})
    r = nic_rates(a, b)["eth0"]
    assert (r.irqs, r.cpus, r.queues) == (5, (0,), 1)


def test_no_packets_without_the_devices_counters_at_both_ends():
    a = snap(None, 0, {**two_queues(0, (10, 5), 0), "netdev": {}})
    b = snap(a, 1, two_queues(1, (20, 5), 1000))
    assert nic_rates(a, b)["eth0"].packets == 0
