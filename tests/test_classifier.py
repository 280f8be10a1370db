"""The classifier on hand-built snapshot sequences: every kind of evidence at its documented threshold, hysteresis,
tuned polling, host pressure, and "unknown" when a source failed. Expected values are the numbers of
docs/detection.md, written out here, never read from Thresholds()."""

import re
import subprocess
from pathlib import Path

import pytest

from agent import lxcwatch_binary
from lxcwatch.core.classifier import REASONS, Mode, Thresholds, Verdict, advance, boundary, step
from lxcwatch.kernel.link import Driver
from lxcwatch.kernel.ethtool_coalesce import Coalesce
from lxcwatch.kernel.irq_vectors import NicIrq
from lxcwatch.kernel.kthread import KernelThread
from lxcwatch.kernel.link import Link
from lxcwatch.kernel.napi import Napi, NapiTuning
from lxcwatch.kernel.napi_poll import NapiPollReading, NapiPolls
from lxcwatch.kernel.net_dev import NetDevCounters
from lxcwatch.core.rates import NicRates
from lxcwatch.collectors import build
from lxcwatch.collectors.interrupts import Interrupts
from lxcwatch.collectors.softirqs import Softirqs
from lxcwatch.core.snapshot import CollectorResult
from lxcwatch.kernel.softnet_stat import SoftnetRow

DEFAULTS = Thresholds()  # the agent's defaults; each value is pinned in test_defaults_are_the_documented_numbers
T = Thresholds(enter_samples=3, leave_samples=4)  # short hysteresis for the sequences below
OK = CollectorResult(True, 0.0)
KSOFTIRQD = (KernelThread(10, "ksoftirqd/0", 0, None), KernelThread(18, "ksoftirqd/1", 1, None))
NO_POLL_COUNTS = "napi:napi_poll is not available: no tracefs"


class Host:
    """eth0 (one rx vector, 38, served by CPU 0), two CPUs with their ksoftirqd; each tick adds the given
    per-second rates. `counts=True` gives the kernel's poll counts (napi_poll collector) as well; `both_cpus=True`
    has CPU 1 serve the vector too, with as many IRQs as CPU 0."""

    def __init__(self, promiscuous=True, tuning=NapiTuning(False, 0, 0), sysctls=None, counts=False, both_cpus=False):
        self.t, self.rx, self.irqs, self.squeeze, self.drops = 0, 0, 0, [0, 0], [0, 0]
        self.ticks, self.polls, self.full = [0, 0], 0, 0
        self.link = Link("eth0", 2, "physical", "br0" if promiscuous else "", "up", 0x1103 if promiscuous else 0x1003,
                         1, Driver("tg3", "3.119"))
        self.napi = Napi({"eth0": tuning}, sysctls or {"busy_poll": 0, "busy_read": 0})
        self.counts = counts
        self.both_cpus = both_cpus
        self.snap = None
        self.verdict = Verdict()

    def tick(self, pps=0, irqs=0, squeeze=(0, 0), drops=(0, 0), ksoftirqd=(0, 0), polls=0, full=0, failed=(),
             poll_reading=None, disabled=()):
        """One second. `ksoftirqd`: share of each CPU; `failed`: collectors that fail in this sample; `disabled`:
        collectors that do not run at all (--no-collector.NAME)."""
        self.t += 1
        self.rx += pps
        self.irqs += irqs
        self.squeeze = [a + b for a, b in zip(self.squeeze, squeeze)]
        self.drops = [a + b for a, b in zip(self.drops, drops)]
        self.ticks = [a + round(100 * b) for a, b in zip(self.ticks, ksoftirqd)]  # USER_HZ ticks
        self.polls += polls
        self.full += full
        readings = {
            "softnet": tuple(SoftnetRow(c, 0, self.drops[c], self.squeeze[c], 0, 0, 0, 0, None, None) for c in (0, 1)),
            "softirqs": Softirqs({"NET_RX": {0: 0, 1: 0}}, {0: 0, 1: 0}),
            "interrupts": Interrupts((0, 1), (NicIrq("eth0", "38", "rx", "eth0-rx-1"),), {"38": (self.irqs + 1, self.irqs if self.both_cpus else 0)}),
            "netdev": {"eth0": NetDevCounters(0, self.rx, 0, 0, 0, 0, 0, 0)},
            "links": {"eth0": self.link},
            "napi": self.napi,
            "kthreads": dict(zip(KSOFTIRQD, self.ticks)),
        }
        if self.counts:
            readings["napi_poll"] = poll_reading or NapiPollReading({"eth0": NapiPolls(self.polls, self.full)})
        results = {n: CollectorResult(False, 0.0, "broken") if n in failed else OK for n in readings if n not in disabled}
        readings = {n: r for n, r in readings.items() if n not in failed and n in results}
        new = build(self.snap, self.t, 1000.0 + self.t, float(self.t), readings, results)
        if self.snap is not None:
            self.verdict = step(self.verdict, self.snap, new, T)
        self.snap = new
        return self.verdict

    def run(self, n, **rates):
        return [self.tick(**rates) for _ in range(n)]


def evidence(host: Host, **rates) -> str:
    host.tick()
    return host.tick(**rates).nics["eth0"].evidence


def with_coalescing(c: Coalesce) -> Host:
    return Host(tuning=NapiTuning(False, 0, 0, c))


LOAD = dict(pps=500_000, irqs=1_000, squeeze=(50, 0))  # 500 packets per interrupt and squeezing: polls run full
QUIET = dict(pps=20_000, irqs=10_000)  # 2 packets per interrupt: interrupt-driven


DOCUMENTED = {"min_packets_per_second": 1000, "full_poll_share": 0.9, "packets_per_interrupt": 128,
              "squeezes_per_second": 10, "ksoftirqd_share": 0.2, "host_squeezes_per_second": 10,
              "host_drops_per_second": 1, "enter_samples": 4, "leave_samples": 10}


def test_defaults_are_the_documented_numbers():
    assert DEFAULTS == Thresholds(**DOCUMENTED)


def test_the_docs_table_gives_the_same_defaults():
    text = (Path(__file__).parents[1] / "docs" / "detection.md").read_text()
    table = dict(re.findall(r"^\| `(\w+)` \| ([0-9.]+) \|", text, re.M))
    assert {name: float(value) for name, value in table.items()} == DOCUMENTED


def test_help_gives_every_flag_with_its_default():
    out = subprocess.run([lxcwatch_binary(), "--help"], capture_output=True, text=True, timeout=30)
    help_text = " ".join(out.stdout.split())
    found = dict(re.findall(r"--detect\.([a-z-]+) N NAPI-heavy detection: [a-z ]+ \(default ([0-9.]+);", help_text))
    assert {flag.replace("-", "_"): float(value) for flag, value in found.items()} == DOCUMENTED


def test_the_documented_mutation_run_is_the_make_target():
    """docs/detection.md's `make mutation`: mutmut over the detection core, then its survivors (a run is 10 to 25 min)."""
    root = Path(__file__).parents[1]
    assert "`make mutation`" in (root / "docs" / "detection.md").read_text()
    out = subprocess.run(["make", "-n", "mutation"], cwd=root, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "scripts/mutation run --max-children 2" in out.stdout and "scripts/mutation results" in out.stdout


# --- counter evidence (no poll counts) ---


@pytest.mark.parametrize(
    "rates,expected",
    [
        (LOAD, "time_squeeze"),
        (QUIET, "none"),
        # coalescing unknown: it may be adaptive, batches up to 256, boundary 1.25 * 256 = 320 packets per IRQ
        (dict(pps=321_000, irqs=1_000, squeeze=(10, 0)), "time_squeeze"),  # just above, 10 squeezes/s
        (dict(pps=320_000, irqs=1_000, squeeze=(500, 0)), "none"),  # 320 per IRQ is coalescing's side of the line
        (dict(pps=500_000, irqs=1_000, squeeze=(9, 0)), "none"),  # 9 squeezes/s: not corroborated
        (dict(pps=500_000, irqs=1_000, ksoftirqd=(0.2, 0)), "ksoftirqd"),  # a fifth of the serving CPU
        (dict(pps=500_000, irqs=1_000, ksoftirqd=(0.19, 0)), "none"),
        (dict(pps=500_000, irqs=1_000, ksoftirqd=(0, 0.9)), "none"),  # ksoftirqd of a CPU that does not serve eth0
        (dict(pps=20_000, irqs=10_000, squeeze=(500, 0)), "none"),  # a squeeze alone is not polling
        (dict(pps=20_000, irqs=10_000, ksoftirqd=(0.9, 0)), "none"),  # nor ksoftirqd alone
        (dict(pps=50_000, irqs=0), "packets_per_interrupt"),  # IRQs masked throughout
        (dict(pps=1_000, irqs=0), "packets_per_interrupt"),  # 1000 packets/s is enough
        (dict(pps=999, irqs=0), "none"),  # light traffic is never heavy, whatever the ratio
        (dict(pps=500_000, irqs=1_000, squeeze=(0, 50)), "none"),  # squeezes on a CPU that does not serve eth0
    ],
    ids=["load", "quiet", "ppi-321", "ppi-320", "squeeze-9", "ksoftirqd", "ksoftirqd-0.19", "ksoftirqd-elsewhere",
         "squeeze-alone", "ksoftirqd-alone", "irqs-masked", "min-packets", "below-min-packets", "squeeze-elsewhere"],
)
def test_counter_evidence(rates, expected):
    assert evidence(Host(), **rates) == expected


@pytest.mark.parametrize(
    "coalesce,pps,irqs,expected",
    [
        # rx-frames 256: ceiling 256, boundary 1.25 * 256 = 320 packets per IRQ
        (Coalesce(0, 256, False), 320_000, 1_000, "none"),
        (Coalesce(0, 256, False), 321_000, 1_000, "time_squeeze"),
        # adaptive (DIM): up to 256 per IRQ, the same boundary whatever rx-frames says
        (Coalesce(8, 32, True), 320_000, 1_000, "none"),
        (Coalesce(8, 32, True), 321_000, 1_000, "time_squeeze"),
        # rx-usecs 200 at 1 Mpps on one queue: 200 packets per window, boundary 250
        (Coalesce(200, 0, False), 1_000_000, 4_000, "none"),
        (Coalesce(200, 0, False), 1_000_000, 3_980, "time_squeeze"),  # 251 per IRQ
        # rx-frames 400: boundary 500
        (Coalesce(0, 400, False), 500_000, 1_000, "none"),
        (Coalesce(0, 400, False), 501_000, 1_000, "time_squeeze"),
        # tg3_init_coal (rx-usecs 20, rx-frames 5): the ceiling is below packets_per_interrupt (128), which stays
        (Coalesce(20, 5, False), 129_000, 1_000, "time_squeeze"),
        (Coalesce(20, 5, False), 128_000, 1_000, "none"),
    ],
    ids=["frames-320", "frames-321", "adaptive-320", "adaptive-321", "usecs-250", "usecs-251", "frames-500",
         "frames-501", "tg3-129", "tg3-128"],
)
def test_the_boundary_rises_to_the_nics_coalescing_ceiling(coalesce, pps, irqs, expected):
    assert evidence(with_coalescing(coalesce), pps=pps, irqs=irqs, squeeze=(500, 0)) == expected


def test_the_coalescing_window_is_per_queue():
    """rx-usecs 400 at 1 Mpps: 400 packets per window on one queue (boundary 500), 200 on each of two (boundary 250)."""
    h = with_coalescing(Coalesce(400, 0, False))
    h.tick()
    v = h.tick(pps=1_000_000, irqs=2_500, squeeze=(50, 0)).nics["eth0"]  # one vector, 400 per IRQ
    assert (v.evidence, v.boundary) == ("none", 500.0)


def test_the_coalescing_window_is_split_over_the_queues_that_fired():
    """rx-usecs 400 at 1 Mpps over two queues: 200 packets per window on each, boundary 1.25 * 200 = 250."""
    r = NicRates("eth0", 1_000_000.0, 5_000.0, 200.0, 0.0, 0.0, (0, 1), queues=2)
    assert boundary(r, Coalesce(400, 0, False), DEFAULTS) == 250.0


def test_a_nic_that_does_not_coalesce_leaves_the_threshold_alone():
    """rx-usecs 0, rx-frames 0, not adaptive: no ceiling, so even a threshold of 1 packet per IRQ stands."""
    r = NicRates("eth0", 1_000_000.0, 5_000.0, 200.0, 0.0, 0.0, (0,))
    assert boundary(r, Coalesce(0, 0, False), Thresholds(packets_per_interrupt=1.0)) == 1.0


# --- poll-count evidence ---


@pytest.mark.parametrize(
    "pps,polls,full,expected",
    [
        (500_000, 3_000, 2_700, "full_polls"),  # 0.9 of the polls full
        (500_000, 3_000, 2_699, "none"),
        (500_000, 3_000, 2_400, "none"),  # 0.8: DIM's 256-packet batches (4 full polls and one partial per IRQ)
        (999, 3_000, 3_000, "none"),  # light traffic
        (500_000, 0, 0, "packets_per_interrupt"),  # no poll counted for the device: the counters decide
    ],
    ids=["share-0.9", "share-0.8997", "share-0.8", "light", "no-polls"],
)
def test_poll_count_evidence(pps, polls, full, expected):
    """The counts decide alone: 500 packets per IRQ with squeezes, or no IRQ at all, would be counter evidence."""
    h = Host(counts=True)
    h.tick()
    assert h.tick(pps=pps, irqs=0 if expected == "packets_per_interrupt" else 1_000, squeeze=(50, 0), polls=polls,
                  full=full).nics["eth0"].evidence == expected


def test_counts_the_host_cannot_give_fall_back_to_the_counters():
    h = Host(counts=True)
    h.tick(poll_reading=NapiPollReading(unavailable=NO_POLL_COUNTS))
    v = h.tick(poll_reading=NapiPollReading(unavailable=NO_POLL_COUNTS), **LOAD).nics["eth0"]
    assert (v.evidence, v.known, v.rates.polls) == ("time_squeeze", True, None)


def test_a_restarted_count_falls_back_for_one_sample():
    h = Host(counts=True)
    h.tick(polls=10_000, full=10_000)
    v = h.tick(poll_reading=NapiPollReading({"eth0": NapiPolls(5, 5)}), **LOAD).nics["eth0"]
    assert (v.evidence, v.rates.polls) == ("time_squeeze", None)


def test_a_device_the_counts_do_not_name_falls_back():
    h = Host(counts=True)
    h.tick(poll_reading=NapiPollReading({"eth9": NapiPolls(1, 1)}))
    v = h.tick(poll_reading=NapiPollReading({"eth9": NapiPolls(9, 9)}), **LOAD).nics["eth0"]
    assert v.evidence == "time_squeeze"


def test_a_failed_poll_count_makes_the_verdict_unknown():
    h = Host(counts=True)
    h.tick()
    v = h.tick(failed=("napi_poll",), **LOAD).nics["eth0"]
    assert (v.evidence, v.missing) == ("unknown", ("napi_poll",))
    v = h.tick(**LOAD).nics["eth0"]  # the previous sample has no counts to difference against
    assert v.missing == ("napi_poll",)
    assert h.tick(polls=3_000, full=3_000, **LOAD).nics["eth0"].evidence == "full_polls"


# --- tuned polling ---


@pytest.mark.parametrize(
    "host,reason",
    [
        (Host(tuning=NapiTuning(True, 0, 0)), "threaded"),
        (Host(tuning=NapiTuning(False, 2, 200_000)), "defer_hard_irqs"),
        (Host(sysctls={"busy_poll": 50, "busy_read": 0}), "busy_poll"),
        (Host(sysctls={"busy_poll": 0, "busy_read": 50}), "busy_poll"),
    ],
    ids=["threaded", "defer", "busy-poll", "busy-read"],
)
def test_tuned_polling_is_evidence_without_counts_and_says_why(host, reason):
    host.tick()
    v = host.run(3, **QUIET)[-1]  # the counters are blind to configured polling: it counts on its own
    assert v.nics["eth0"].mode.heavy and v.nics["eth0"].mode.reason == reason
    assert v.host.heavy and v.host.reason == "nic"
    assert host.tick(pps=999, irqs=100).nics["eth0"].evidence == "none"


def test_with_counts_tuned_polling_needs_full_polls_and_keeps_its_name():
    h = Host(tuning=NapiTuning(True, 0, 0), counts=True)
    h.tick()
    assert h.tick(polls=3_000, full=1_500, **QUIET).nics["eth0"].evidence == "none"
    assert h.tick(polls=3_000, full=2_900, **QUIET).nics["eth0"].evidence == "threaded"


# --- hysteresis ---


def test_enters_after_n_samples_and_leaves_after_m():
    h = Host()
    h.tick()
    modes = [v.nics["eth0"].mode.heavy for v in h.run(3, **LOAD)]
    assert modes == [False, False, True]
    entered = h.verdict.nics["eth0"].mode
    assert entered.since == 1002.0  # the first sample with evidence, not the third
    assert entered.changes == 1 and entered.reason == "time_squeeze"
    v = h.run(2, **LOAD)[-1]  # staying heavy keeps since and the count of changes, host and NIC
    assert (v.host.heavy, v.host.reason, v.host.since, v.host.changes, v.host_evidence) == (True, "nic", 1002.0, 1, "nic")
    assert (v.nics["eth0"].mode.since, v.nics["eth0"].mode.changes) == (1002.0, 1)
    modes = [v.nics["eth0"].mode.heavy for v in h.run(4, **QUIET)]
    assert modes == [True, True, True, False]
    assert h.verdict.nics["eth0"].mode.changes == 2 and h.verdict.nics["eth0"].mode.reason == "none"
    assert (h.verdict.host.heavy, h.verdict.host.changes, h.verdict.host.since) == (False, 2, None)


def test_the_default_hysteresis_is_four_samples_in_and_ten_out():
    verdict, heavy = Verdict(), []
    snaps = _snapshots([LOAD] * 4 + [QUIET] * 10)
    for a, b in zip(snaps, snaps[1:]):
        verdict = step(verdict, a, b, DEFAULTS)
        heavy.append(verdict.nics["eth0"].mode.heavy)
    assert heavy == [False] * 3 + [True] * 10 + [False]


def _snapshots(rates: list[dict]) -> list:
    h, out = Host(), []
    h.tick()
    out.append(h.snap)
    for r in rates:
        h.tick(**r)
        out.append(h.snap)
    return out


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


def test_advance_keeps_the_streak_start():
    m = advance(Mode(), "time_squeeze", 10.0, T)
    m = advance(m, "time_squeeze", 11.0, T)
    assert (m.heavy, m.streak, m.streak_since) == (False, 2, 10.0)
    m = advance(m, "none", 12.0, T)
    assert (m.heavy, m.streak) == (False, 0)


def test_a_heavy_nic_takes_the_reason_of_its_latest_evidence():
    h = Host()
    h.tick()
    h.run(3, **LOAD)
    mode = h.tick(pps=500_000, irqs=1_000, ksoftirqd=(0.5, 0)).nics["eth0"].mode  # no squeeze now, ksoftirqd instead
    assert (mode.heavy, mode.reason, mode.since, mode.changes) == (True, "ksoftirqd", 1002.0, 1)


def test_after_leaving_a_nic_enters_again_after_n_fresh_samples():
    h = Host()
    h.tick()
    h.run(3, **LOAD)  # heavy at t=4
    h.run(4, **QUIET)  # calm again at t=8
    modes = [v.nics["eth0"].mode for v in h.run(3, **LOAD)]  # t=9, 10, 11
    assert [m.heavy for m in modes] == [False, False, True]
    assert (modes[-1].since, modes[-1].changes) == (1009.0, 3)


@pytest.mark.parametrize("reason", [r for r in REASONS if r != "none"])
def test_every_reason_can_be_the_mode_of_a_heavy_nic(reason):
    tuning = {"threaded": NapiTuning(True, 0, 0), "defer_hard_irqs": NapiTuning(False, 1, 0)}.get(reason, NapiTuning(False, 0, 0))
    h = Host(tuning=tuning, sysctls={"busy_poll": 50 if reason == "busy_poll" else 0, "busy_read": 0},
             counts=reason == "full_polls")
    rates = {"full_polls": dict(pps=500_000, irqs=100, polls=3_000, full=2_950),
             "packets_per_interrupt": dict(pps=200_000, irqs=0),
             "time_squeeze": LOAD, "ksoftirqd": dict(pps=500_000, irqs=1_000, ksoftirqd=(0.5, 0))}.get(reason, QUIET)
    h.tick()
    mode = h.run(3, **rates)[-1].nics["eth0"].mode
    assert (mode.heavy, mode.reason) == (True, reason)


# --- the host ---


def test_host_follows_only_exposed_nics():
    h = Host(promiscuous=False)
    h.tick()
    v = h.run(3, **LOAD)[-1]
    assert v.nics["eth0"].mode.heavy
    assert not v.host.heavy and v.host_known  # neither promiscuous nor a bridge port


def test_host_softnet_pressure_without_nic_traffic():
    h = Host()
    h.tick()
    v = h.run(3, squeeze=(0, 10))[-1]  # veth floods on CPU 1; eth0 idle
    assert not v.nics["eth0"].mode.heavy
    assert v.host.heavy and v.host.reason == "softnet_pressure" and v.host.since == 1002.0
    assert not v.pressure.heavy or v.pressure.reason == "softnet_pressure"
    v = h.run(4)[-1]
    assert not v.host.heavy and v.host.changes == 2


def test_host_squeezes_below_ten_a_second_are_no_pressure():
    h = Host()
    h.tick()
    assert not h.run(3, squeeze=(0, 9))[-1].host.heavy


def test_squeezes_on_a_busy_nics_cpu_are_that_nics_not_the_hosts():
    h = Host(promiscuous=False)
    h.tick()
    v = h.run(3, pps=20_000, irqs=10_000, squeeze=(500, 0))[-1]
    assert not v.host.heavy and v.host_evidence == "none"


@pytest.mark.parametrize("drops,heavy", [((1, 0), True), ((0, 1), True), ((0, 0), False)])
def test_backlog_drops_are_pressure_anywhere(drops, heavy):
    h = Host(promiscuous=False)
    h.tick()
    assert h.run(3, drops=drops)[-1].host.heavy == heavy


@pytest.mark.parametrize("master,flags,exposed", [("br0", 0x1003, True), ("", 0x1103, True), ("", 0x1003, False)],
                         ids=["bridge-port", "promiscuous", "neither"])
def test_a_bridge_port_or_a_promiscuous_nic_is_exposed(master, flags, exposed):
    h = Host()
    h.link = Link("eth0", 2, "physical", master, "up", flags, 1, Driver("tg3", "3.119"))
    h.tick()
    v = h.run(3, **LOAD)[-1]
    assert (v.nics["eth0"].mode.heavy, v.host.heavy) == (True, exposed)


def test_host_evidence_is_this_samples_pressure_while_the_mode_follows_with_hysteresis():
    h = Host(promiscuous=False)
    h.tick()
    seq = [(v.host.heavy, v.host_evidence) for v in h.run(3, squeeze=(0, 500)) + [h.tick()]]
    assert seq == [(False, "softnet_pressure"), (False, "softnet_pressure"), (True, "softnet_pressure"), (True, "none")]
    h.run(3)
    assert h.tick(drops=(0, 5)).host_evidence == "softnet_pressure"


def test_host_keeps_its_since_when_the_nic_takes_over_from_pressure():
    h = Host()
    h.tick()
    h.run(3, squeeze=(0, 500))  # pressure (and so the host) heavy at t=4, since t=2
    v = h.run(4, **LOAD)[-1]  # eth0 heavy at t=7 since t=5; pressure leaves at t=8
    assert (v.pressure.heavy, v.nics["eth0"].mode.heavy) == (False, True)
    assert (v.host.heavy, v.host.reason, v.host.since, v.host.changes) == (True, "nic", 1002.0, 1)


@pytest.mark.parametrize("pps,expected", [(1_000, "none"), (999, "softnet_pressure")])
def test_a_nic_at_the_packet_floor_explains_the_squeezes_on_its_cpu(pps, expected):
    h = Host(promiscuous=False)
    h.tick()
    assert h.tick(pps=pps, irqs=100, squeeze=(500, 0)).host_evidence == expected


def test_ksoftirqd_share_is_the_mean_over_the_nics_cpus():
    h = Host(both_cpus=True)
    h.tick()
    v = h.tick(pps=500_000, irqs=500, ksoftirqd=(0.5, 0.1)).nics["eth0"]  # 500 IRQs on each CPU: 500 packets per IRQ
    assert (v.rates.cpus, v.rates.packets_per_irq) == ((0, 1), 500.0)
    assert (v.ksoftirqd_share, v.evidence) == (pytest.approx(0.3), "ksoftirqd")
    assert h.tick(pps=500_000, irqs=500).nics["eth0"].ksoftirqd_share == 0.0


def test_a_nic_whose_vector_never_fired_has_no_serving_cpu_and_no_ksoftirqd_share():
    h = Host()
    h.irqs = -1  # /proc/interrupts shows 0 on every CPU for vector 38
    h.tick()
    v = h.tick(pps=50_000, ksoftirqd=(0.9, 0.9)).nics["eth0"]
    assert (v.rates.cpus, v.ksoftirqd_share, v.evidence) == ((), 0.0, "packets_per_interrupt")


# --- unknown is not no ---


@pytest.mark.parametrize(
    "failed,rates,missing",
    [
        (("softnet",), dict(pps=500_000, irqs=1_000), ("softnet",)),  # no ksoftirqd: only a squeeze could say
        (("kthreads",), dict(pps=500_000, irqs=1_000), ("kthreads",)),  # no squeeze: only ksoftirqd could say
        (("interrupts",), QUIET, ("interrupts",)),
        (("netdev",), QUIET, ("netdev",)),
        (("napi",), QUIET, ()),  # the previous sample's tuning and coalescing stand in
    ],
    ids=["softnet", "kthreads", "interrupts", "netdev", "napi"],
)
def test_a_failed_source_the_verdict_needs_makes_it_unknown(failed, rates, missing):
    h = Host()
    h.run(2)  # without interrupts the NICs are those of the last verdict
    v = h.tick(failed=failed, **rates).nics["eth0"]
    assert v.missing == missing and v.known == (not missing)
    assert v.evidence == ("unknown" if missing else "none")


def test_a_failed_corroboration_source_does_not_matter_below_the_boundary_or_when_the_other_holds():
    h = Host()
    h.tick()
    assert h.tick(failed=("softnet",), **QUIET).nics["eth0"].known
    assert h.tick(failed=("kthreads",), **QUIET).nics["eth0"].known
    h.tick()
    v = h.tick(failed=("softnet",), pps=500_000, irqs=1_000, ksoftirqd=(0.5, 0)).nics["eth0"]
    assert (v.known, v.evidence) == (True, "ksoftirqd")


def test_tuning_read_in_neither_sample_is_unknown():
    h = Host()
    h.tick(failed=("napi",))
    assert h.tick(failed=("napi",), **QUIET).nics["eth0"].missing == ("napi",)


def test_a_source_that_failed_in_the_previous_sample_still_spoils_the_interval():
    h = Host()
    h.tick()
    h.tick(failed=("netdev",), **LOAD)
    assert h.tick(**LOAD).nics["eth0"].missing == ("netdev",)
    assert h.tick(**LOAD).nics["eth0"].known


def test_an_unknown_sample_holds_the_mode_without_advancing_it():
    h = Host()
    h.tick()
    h.run(3, **LOAD)
    heavy = h.verdict.nics["eth0"].mode
    h.run(3, **QUIET)  # 3 of the 4 calm samples needed to leave
    held = [h.tick(failed=("interrupts",), **QUIET).nics["eth0"] for _ in range(5)]
    assert all(v.mode.heavy and v.mode.streak == 3 and not v.known for v in held)
    assert h.verdict.host.heavy == heavy.heavy and not h.verdict.host_known
    h.tick(**QUIET)  # spoilt interval: the previous sample had no interrupts
    assert h.verdict.nics["eth0"].mode.heavy
    mode = h.tick(**QUIET).nics["eth0"].mode  # the fourth calm sample
    assert (mode.heavy, mode.changes) == (False, 2)


def test_the_host_is_unknown_while_an_exposed_nics_verdict_is():
    h = Host()
    h.tick()
    v = h.tick(failed=("kthreads",), pps=500_000, irqs=1_000)
    assert (v.host_known, v.host_missing, v.host_evidence) == (False, ("kthreads",), "unknown")


def test_an_unexposed_nics_unknown_verdict_leaves_the_host_known():
    h = Host(promiscuous=False)
    h.tick()
    v = h.tick(failed=("kthreads",), pps=500_000, irqs=1_000)
    assert not v.nics["eth0"].known and v.host_known and not v.host.heavy


@pytest.mark.parametrize("failed", [("softnet",), ("links",)])
def test_the_host_is_unknown_when_softnet_or_links_fail(failed):
    h = Host()
    h.tick()
    v = h.tick(failed=failed, **QUIET)
    assert v.host_missing == failed and not v.host_known


def test_a_known_heavy_exposed_nic_makes_the_host_heavy_whatever_failed():
    h = Host(counts=True)
    h.tick()
    h.run(3, pps=500_000, irqs=100, polls=3_000, full=2_950)
    v = h.tick(failed=("softnet",), pps=500_000, irqs=100, polls=3_000, full=2_950)
    assert v.nics["eth0"].known and v.host_known and v.host.heavy and v.host.reason == "nic"


def test_known_pressure_makes_the_host_heavy_while_a_nic_is_unknown():
    h = Host()
    h.tick()
    h.run(3, squeeze=(0, 500))
    v = h.tick(failed=("kthreads",), pps=500_000, irqs=1_000, squeeze=(0, 500))
    assert not v.nics["eth0"].known and v.host_known and v.host.reason == "softnet_pressure"


# --- the same verdicts in `lxcwatch status` ---


def status_of(h: Host, **rates) -> dict:
    from lxcwatch.export import status

    before = h.snap
    h.tick(**rates)
    return status.report(before, h.snap, h.verdict)


def test_status_shows_this_intervals_evidence_in_the_agents_words():
    from lxcwatch.export import status

    h = Host(counts=True)
    h.tick()
    (row,) = status_of(h, pps=500_000, irqs=100, polls=3_000, full=2_850)["nics"]
    assert (row["mode"], row["reason"]) == ("napi_heavy", "full_polls")
    line = next(x for x in status.to_text(status_of(h, pps=500_000, irqs=100, polls=3_000, full=2_850)).splitlines()
                if x.startswith("eth0"))
    assert line.split()[6:9] == ["95.0%", "napi_heavy", "full_polls"]
    (row,) = status_of(h, **QUIET)["nics"]
    assert (row["mode"], row["reason"]) == ("interrupt", "none")


def test_status_says_unknown_and_which_source_failed():
    h = Host()
    h.tick()
    data = status_of(h, failed=("kthreads",), pps=500_000, irqs=1_000)
    (row,) = data["nics"]
    assert (row["mode"], row["reason"]) == ("unknown", "kthreads failed")
    assert data["host"] == {"mode": "unknown", "reason": "kthreads failed"}


@pytest.mark.parametrize("flag", ["--detect.full-poll-share=1.5", "--detect.ksoftirqd-share=1.01"])
def test_a_share_above_one_is_a_usage_error(flag):
    out = subprocess.run([lxcwatch_binary(), flag], capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stderr) == (2, f"lxcwatch: error: invalid {flag.replace('=', ' ')}: a share is at most 1\n")


@pytest.mark.parametrize("disabled", [("kthreads",), ("softnet",), ("napi",), ("kthreads", "softnet")])
def test_a_disabled_collector_gives_no_evidence_and_no_doubt(disabled):
    h = Host()
    h.tick(disabled=disabled)
    v = h.tick(disabled=disabled, pps=500_000, irqs=1_000)  # above the boundary, nothing corroborates
    assert (v.nics["eth0"].evidence, v.nics["eth0"].known, v.host_known) == ("none", True, True)


def test_with_links_disabled_no_nic_is_exposed_and_the_host_is_known():
    h = Host()
    h.tick(disabled=("links",))
    v = h.run(3, disabled=("links",), **LOAD)[-1]
    assert v.nics["eth0"].mode.heavy and v.host_known and not v.host.heavy


def test_without_nic_rates_a_squeeze_cannot_be_placed_but_a_drop_can():
    h = Host()
    h.run(2)
    v = h.tick(failed=("interrupts",), squeeze=(0, 500))
    assert (v.host_known, v.host_missing) == (False, ("interrupts",))
    h.run(2)
    v = h.run(3, failed=("netdev",), drops=(0, 5))[-1]
    assert v.host_known and v.host.heavy and v.host.reason == "softnet_pressure"


def test_without_nic_rates_squeezes_hold_the_pressure_even_with_no_nic_exposed():
    h = Host(promiscuous=False)
    h.run(2)
    v = h.run(3, failed=("interrupts",), squeeze=(0, 500))[-1]
    assert (v.host_known, v.host_missing, v.host.heavy) == (False, ("interrupts",), False)
    assert (v.pressure.heavy, v.pressure.streak) == (False, 0)


def test_a_collector_enabled_since_the_previous_sample_gives_no_rate_yet():
    h = Host()
    h.tick(disabled=("kthreads",))
    v = h.tick(pps=500_000, irqs=1_000).nics["eth0"]  # above the boundary, no squeeze: only ksoftirqd could say
    assert (v.evidence, v.missing) == ("unknown", ("kthreads",))


def test_without_nic_rates_and_no_squeeze_anywhere_the_host_is_known_calm():
    h = Host(promiscuous=False)
    h.run(2)
    v = h.tick(failed=("interrupts",))
    assert (v.host_known, v.host_evidence, v.nics["eth0"].known) == (True, "none", False)
