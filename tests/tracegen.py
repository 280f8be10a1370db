"""Deterministic, seeded generator of labelled traces of the tg3-pair host (tests/fixtures/hosts/tg3-pair).

The first record is the fixture tree as `lxcwatch.capture.full` reads it; every later record changes only
the volatile files, in the kernel's own formats: the NIC rows of /proc/interrupts, /proc/net/softnet_stat,
the NET_RX/NET_TX rows of /proc/softirqs, the cpuN, intr and softirq lines of /proc/stat, /proc/net/dev,
and `threaded` in sysfs when a scenario tunes it. A NIC that disappears loses its class/net link, its bus
device directory (and every link into it), its net/dev line and its IRQ rows, all in one record.

The model, per NIC and per one-second interval. Each NIC follows a time line of segments (offered load
ramping linearly, a receive mode, a label); an interval integrates exactly over the parts of it that each
segment covers, so a mode change or a burst that starts mid-second shows in two or three samples.

- Load L packets/s is spread over the NIC's five receive vectors (tg3 txrx-0 and rx-1..4; eth0's on CPUs
  0-4, eth1's on 8-12, read from the fixture) by RSS shares drawn per trace (1/5 +-20 %), with lognormal
  noise (sigma 8 %) on every piece: a queue's rate is q.
- interrupt-driven: each IRQ carries a batch B and leads to floor(B / 64) full polls and one partial poll
  that empties the ring and re-enables the IRQ. Without a scenario coalescing B is 1 + 7 * min(1, q / KNEE)
  (+-15 %), so 1-8 (tg3-like). With one (written to proc/lxcwatch/ethtool_coalesce), B = min(rx-frames,
  q * rx-usecs) (+-8 %), or min(256, q * 128 us) when adaptive (DIM): e1000e ITR 8000 at 320 kpps gives 40,
  ixgbe rx-usecs 50 at 1 Mpps 50, rx-frames 256 at high load exactly 256. NET_RX softirqs = IRQs *
  1.00-1.05. A share (B * 1.3 - 300) / 300 (at most 0.5) of the runs squeeze: a batch and its bridged
  copies overrunning the budget; none below B = 230. A segment may give B itself (Olsson's table).
  Softirq CPU time 2 us per packet.
- polling (load-driven NAPI-heavy): polls run full and the IRQ stays masked; it fires only when the ring
  drains, POLL_IRQS * min(1, KNEE / q) times a second (30/s at the knee, Olsson's e1000 ~20/s): flat, then
  falling as load rises, so packets/IRQ is over a thousand. Full polls: q / 64 less half a poll per IRQ,
  plus one partial poll per IRQ: a full share of 0.95 and up. One net_rx_action run handles 100-200
  packets (weight 64, budget 300), so NET_RX per IRQ > 1, and a share min(0.9, 0.3 * q / KNEE) of the runs
  end with work left: time_squeeze on the CPUs serving the NIC. Softirq CPU time 1.5 us per packet.
- threaded (`threaded` = 1, 5.12+): the IRQ wakes the napi/<dev> thread instead of raising NET_RX:
  50-150 packets per IRQ at any load, two polls per IRQ (one full), no NET_RX, no squeeze, no softirq time
  (the thread's is its own).
- With `counts`, the trace carries the polls and full polls per NIC (proc/lxcwatch/napi_poll, as
  `lxcwatch record` writes it), summed over the queues; without, the tree has no such file (no tracepoint).
- A scenario may use only its first queues (`queues` = 1 for per-queue figures) and set the share of
  multicast packets (a broadcast storm).
- Load-driven segments poll above KNEE_TOTAL (KNEE per queue, five queues: 200 kpps) and are
  interrupt-driven below it, switching the moment a ramp crosses it. Light and moderate loads are
  2-150 kpps, heavy ones 300-600 kpps.
- Labels are the ground truth of each record (the interval that ends at t): a NIC is heavy when the
  segment at the middle of the interval is labelled heavy. That is the sustained mode: a 1-2 s burst
  polls but is not heavy, a 1-3 s lull inside a heavy episode does not end it. The host is heavy when a
  heavy NIC is promiscuous or a bridge port (both NICs are, in tg3-pair). A removed NIC is in no label.
- Everything else: softnet `processed` counts 1.3 passes per packet (bridged frames re-enter
  __netif_receive_skb_core through the veths); each CPU gets a background NET_RX now and then (0.2/s)
  and a stray squeeze rarely (0.02/s); TX is 5 % of RX plus 300 packets/s, reaped in the RX poll, with
  NET_TX on the CPU of vector 0. Of /proc/stat's CPU times only softirq moves, and of net/dev only the
  NIC lines: the agent reads nothing else, and every changed number costs trace size. The fixture has
  no kernel threads, so ksoftirqd evidence is left to tests/test_classifier.py. Counters are integers that carry their
  fractions to the next interval; the 32-bit ones (interrupts per CPU, softnet, softirqs, /proc/stat
  intr per IRQ) wrap at 2^32, net/dev and /proc/stat times are 64-bit.

`python tests/tracegen.py SCENARIO --out FILE [--seconds N] [--seed S] [--counts]` writes one trace;
`python tests/tracegen.py --corpus DIR` writes the committed corpus (tests/corpus).
"""

import argparse
import math
import os
import random
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from lxcwatch.traces import capture, trace
from lxcwatch.kernel import napi_poll
from lxcwatch.kernel.ethtool_coalesce import Coalesce, format_values
from lxcwatch.kernel.ethtool_coalesce import SOURCE as COALESCE_FILE

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "hosts" / "tg3-pair"
STARTED = 1764000000.0
MASK32 = 0xFFFFFFFF
IFF_PROMISC = 0x100

KNEE = 40_000.0  # packets/s per receive queue above which polls run full
QUEUES = 5
KNEE_TOTAL = KNEE * QUEUES
POLL_IRQS = 30.0  # IRQs/s per queue at the knee once polling: the ring drains now and then (Olsson: ~20/s)
WEIGHT = 64  # NAPI weight of every driver modelled: a poll that gets 64 packets is full
BUDGET = 300  # net.core.netdev_budget: work one net_rx_action may do
ADAPTIVE_USECS = 128e-6  # DIM's batch grows with the rate, up to its ceiling: q * this, at most 256
RUN_PACKETS = (100.0, 200.0)  # packets per net_rx_action run while polling (budget 300, weight 64)
THREADED_PPI = (50.0, 150.0)
COST = {"interrupt": 2e-6, "polling": 1.5e-6, "threaded": 0.0}  # softirq CPU seconds per packet
PROCESSED_PER_PACKET = 1.3
USER_HZ = 100
PROCESSED, TIME_SQUEEZE = 0, 2  # softnet_stat columns
SOFTIRQ_TICKS = 6  # the 7th value of a /proc/stat cpuN line
RX_BYTES, RX_PACKETS, RX_MULTICAST, TX_BYTES, TX_PACKETS = 0, 1, 7, 8, 9  # /proc/net/dev columns

INTERRUPTS, SOFTNET, SOFTIRQS, STAT, NETDEV = (
    "proc/interrupts", "proc/net/softnet_stat", "proc/softirqs", "proc/stat", "proc/net/dev")
NAPI_POLL, COALESCE = f"proc/{napi_poll.SOURCE}", f"proc/{COALESCE_FILE}"
NETDEV_FORMAT = "%6s:%8d %7d %4d %4d %4d %5d %10d %9d %8d %7d %4d %4d %4d %5d %7d %10d"  # net/core/net-procfs.c


# --- scenarios: time lines of segments ---


@dataclass(frozen=True)
class Segment:
    """A stretch of one NIC's time line; the offered load ramps linearly from load[0] to load[1]."""

    start: float
    end: float
    load: tuple[float, float]
    mode: str = "interrupt"  # the receive physics: interrupt, polling or threaded
    heavy: bool = False  # the ground truth: the sustained mode a detector should report
    ppi: float | None = None  # packets per IRQ measured for this load (the NAPI_HOWTO table) instead of the model

    def at(self, t: float) -> float:
        f = (t - self.start) / (self.end - self.start)
        return self.load[0] + (self.load[1] - self.load[0]) * f


@dataclass(frozen=True)
class Scenario:
    """NIC -> time line. A time line that ends before `seconds` is a NIC removed at its end."""

    name: str
    seconds: int
    lines: dict[str, list[Segment]]
    wrap: bool = False  # 32-bit counters start just below 2^32
    threaded_files: bool = False  # sysfs has `threaded`: 1 while the NIC's segment is threaded
    coalesce: Coalesce | None = None  # every NIC's interrupt coalescing (written to the tree); None: tg3's 1-8 model
    queues: int = QUEUES  # receive queues that get traffic (the first ones); 1 for single-queue figures
    multicast: float = 0.002  # share of received packets that are multicast or broadcast


def segment_at(line: list[Segment], t: float) -> Segment | None:
    return next((s for s in line if s.start <= t < s.end), None)


def ramp(start: float, end: float, l0: float, l1: float, heavy: bool | None = None) -> list[Segment]:
    """Load-driven segments: polling above KNEE_TOTAL, interrupt-driven below, split where a ramp crosses it.
    `heavy` overrides the label (a burst, a lull); by default polling is heavy."""
    def seg(a, b, la, lb):
        polling = (la + lb) / 2 > KNEE_TOTAL
        return Segment(a, b, (la, lb), "polling" if polling else "interrupt", polling if heavy is None else heavy)

    if (l0 > KNEE_TOTAL) == (l1 > KNEE_TOTAL):
        return [seg(start, end, l0, l1)]
    cross = start + (KNEE_TOTAL - l0) / (l1 - l0) * (end - start)
    if not start < cross < end:
        return [seg(start, end, l0, l1)]
    mid = l0 + (l1 - l0) * (cross - start) / (end - start)
    return [seg(start, cross, l0, mid), seg(cross, end, mid, l1)]


def wander(rng: random.Random, start: float, end: float, lo: float, hi: float,
           mode: str | None = None, heavy: bool = False) -> list[Segment]:
    """Load drifting between random levels in [lo, hi], a new level every 15-60 s; load-driven unless `mode`."""
    out, t, level = [], start, rng.uniform(lo, hi)
    while t < end:
        nxt = min(end, t + rng.uniform(15, 60))
        new = rng.uniform(lo, hi)
        out += ramp(t, nxt, level, new) if mode is None else [Segment(t, nxt, (level, new), mode, heavy)]
        t, level = nxt, new
    return out


def episode(rng: random.Random, seconds: int, onset: float, rise: float, until: float) -> list[Segment]:
    """Light load, a ramp of `rise` seconds from `onset` up past the knee, heavy load until `until`, a drop of
    2-15 s back to light load, light load to the end."""
    low, high = rng.uniform(20e3, 80e3), rng.uniform(350e3, 600e3)
    fall = rng.uniform(2, 15)
    return [*ramp(0, onset, low, low), *ramp(onset, onset + rise, low, high),
            *wander(rng, onset + rise, until, high * 0.85, high * 1.15), *ramp(until, until + fall, high, low),
            *wander(rng, until + fall, seconds, 20e3, 80e3)]


def interrupt_driven(rng: random.Random, seconds: int) -> Scenario:
    """Steady light-to-moderate load on both NICs; never heavy."""
    return Scenario("interrupt_driven", seconds, {
        "eth0": wander(rng, 0, seconds, 10e3, 150e3), "eth1": wander(rng, 0, seconds, 2e3, 60e3)})


def slide_into_polling(rng: random.Random, seconds: int) -> Scenario:
    """One NIC's load ramps up past the knee over 10-20 % of the trace, polls, then drops back."""
    nic, other = rng.sample(["eth0", "eth1"], 2)
    onset = seconds * rng.uniform(0.1, 0.2)
    rise = seconds * rng.uniform(0.1, 0.2)
    until = onset + rise + seconds * rng.uniform(0.2, 0.35)
    return Scenario("slide_into_polling", seconds, {
        nic: episode(rng, seconds, onset, rise, until), other: wander(rng, 0, seconds, 5e3, 60e3)})


def bursts(rng: random.Random, seconds: int, lo: float, hi: float, gap: tuple[float, float]) -> list[Segment]:
    """Interrupt-driven load with 1-2 s polling bursts, at any phase of the second, every `gap` seconds."""
    out, t = [], 0.0
    while t < seconds:
        quiet = min(seconds, t + rng.uniform(*gap))
        level = rng.uniform(lo, hi)
        out += ramp(t, quiet, level, level)
        if quiet >= seconds:
            break
        end = min(seconds, quiet + rng.uniform(1.0, 2.0))
        peak = rng.uniform(300e3, 600e3)
        out.append(Segment(quiet, end, (peak, peak), "polling", False))
        t = end
    return out


def bursty_light(rng: random.Random, seconds: int) -> Scenario:
    """Frequent 1-2 s bursts of polling on otherwise light NICs: must never be reported heavy."""
    return Scenario("bursty_light", seconds, {
        "eth0": bursts(rng, seconds, 20e3, 100e3, (2, 8)), "eth1": bursts(rng, seconds, 5e3, 40e3, (4, 15))})


def lulls(rng: random.Random, start: float, end: float) -> list[Segment]:
    """Polling at heavy load with 1-3 s lulls of interrupt-driven load every 6-25 s; heavy throughout."""
    out, t = [], start
    while t < end:
        busy = min(end, t + rng.uniform(6, 25))
        out += ramp(t, busy, rng.uniform(300e3, 600e3), rng.uniform(300e3, 600e3))
        if busy >= end:
            break
        lull = min(end, busy + rng.uniform(1.0, 3.0))
        low = rng.uniform(30e3, 120e3)
        out.append(Segment(busy, lull, (low, low), "interrupt", True))
        t = lull
    return out


def bursty_heavy(rng: random.Random, seconds: int) -> Scenario:
    """One NIC polls for most of the trace with short lulls that must not end the heavy mode."""
    nic, other = rng.sample(["eth0", "eth1"], 2)
    onset = seconds * rng.uniform(0.1, 0.2)
    until = seconds * rng.uniform(0.75, 0.85)
    low, high = rng.uniform(20e3, 80e3), rng.uniform(350e3, 600e3)
    rise = rng.uniform(2, 6)
    line = [*ramp(0, onset, low, low), *ramp(onset, onset + rise, low, high),
            *ramp(onset + rise, onset + rise + 10, high, high), *lulls(rng, onset + rise + 10, until - 5),
            *ramp(until - 5, until, high, high), *ramp(until, until + rise, high, low),
            *wander(rng, until + rise, seconds, 20e3, 80e3)]
    return Scenario("bursty_heavy", seconds, {nic: line, other: wander(rng, 0, seconds, 5e3, 60e3)})


def tuned_threaded(rng: random.Random, seconds: int) -> Scenario:
    """eth0 at moderate load; `threaded` set to 1 for the middle of the trace: heavy, reason threaded."""
    on, off = seconds * rng.uniform(0.2, 0.35), seconds * rng.uniform(0.7, 0.85)
    eth0 = [*wander(rng, 0, on, 50e3, 150e3), *wander(rng, on, off, 30e3, 150e3, "threaded", True),
            *wander(rng, off, seconds, 50e3, 150e3)]
    return Scenario("tuned_threaded", seconds, {"eth0": eth0, "eth1": wander(rng, 0, seconds, 5e3, 40e3)},
                    threaded_files=True)


def counter_wraps(rng: random.Random, seconds: int) -> Scenario:
    """32-bit counters start just below 2^32 and wrap while eth0 is interrupt-driven, then heavy."""
    on, off = seconds * rng.uniform(0.3, 0.45), seconds * rng.uniform(0.75, 0.85)
    eth0 = [*wander(rng, 0, on, 80e3, 150e3), *wander(rng, on, off, 350e3, 600e3),
            *wander(rng, off, seconds, 80e3, 150e3)]
    return Scenario("counter_wraps", seconds, {"eth0": eth0, "eth1": wander(rng, 0, seconds, 5e3, 60e3)}, wrap=True)


def nic_disappears(rng: random.Random, seconds: int) -> Scenario:
    """eth1 polls under heavy load, then vanishes (driver unbound, hot-unplug) while still heavy."""
    onset = seconds * rng.uniform(0.15, 0.3)
    gone = onset + seconds * rng.uniform(0.25, 0.4)
    eth1 = [*wander(rng, 0, onset, 10e3, 80e3), *wander(rng, onset, gone, 300e3, 550e3)]
    return Scenario("nic_disappears", seconds, {"eth0": wander(rng, 0, seconds, 20e3, 150e3), "eth1": eth1})


def both_nics_heavy(rng: random.Random, seconds: int) -> Scenario:
    """Both NICs slide into polling within 15 s of each other, as in the seed incident, and recover apart."""
    first = seconds * rng.uniform(0.1, 0.2)
    lines = {}
    for nic, onset in (("eth0", first), ("eth1", first + rng.uniform(0, 15))):
        rise = rng.uniform(5, 20)
        until = max(seconds * rng.uniform(0.6, 0.8), onset + rise + 30)
        lines[nic] = episode(rng, seconds, onset, rise, until)
    return Scenario("both_nics_heavy", seconds, lines)


def sustained_polling(rng: random.Random, seconds: int) -> Scenario:
    """One NIC slides into polling 15-25 s in and stays heavy until 30-45 s before the end: the lab's
    single-replica warning (`for: 5m`) needs an episode longer than the corpus traces have."""
    nic, other = rng.sample(["eth0", "eth1"], 2)
    onset, rise = rng.uniform(15, 25), rng.uniform(5, 10)
    until = seconds - rng.uniform(30, 45)
    return Scenario("sustained_polling", seconds, {
        nic: episode(rng, seconds, onset, rise, until), other: wander(rng, 0, seconds, 5e3, 60e3)})


def steady(rng: random.Random, seconds: int, lo: float, hi: float) -> dict[str, list[Segment]]:
    """Both NICs interrupt-driven at a load drifting in [lo, hi] (per NIC), never heavy."""
    return {nic: wander(rng, 0, seconds, lo, hi, "interrupt") for nic in ("eth0", "eth1")}


def coalescing_e1000e(rng: random.Random, seconds: int) -> Scenario:
    """e1000e with InterruptThrottleRate 8000 (ethtool rx-usecs 125) on one queue at 300-340 kpps: 40 packets per
    IRQ at 320 kpps, every poll partial. Never polls."""
    return Scenario("coalescing_e1000e", seconds, steady(rng, seconds, 300e3, 340e3), coalesce=Coalesce(125, 0, False),
                    queues=1)


def coalescing_ixgbe(rng: random.Random, seconds: int) -> Scenario:
    """ixgbe with rx-usecs 50 (about 20k IRQs/s) at 0.95-1.05 Mpps on one queue: 50 packets per IRQ. Never polls."""
    return Scenario("coalescing_ixgbe", seconds, steady(rng, seconds, 0.95e6, 1.05e6), coalesce=Coalesce(50, 0, False),
                    queues=1)


def coalescing_mlx5(rng: random.Random, seconds: int) -> Scenario:
    """mlx5's default moderation, 16 us / 32 packets, at 1.5-3 Mpps on one queue: 24-32 packets per IRQ."""
    return Scenario("coalescing_mlx5", seconds, steady(rng, seconds, 1.5e6, 3e6), coalesce=Coalesce(16, 32, False),
                    queues=1)


def coalescing_dim(rng: random.Random, seconds: int) -> Scenario:
    """mlx5 with adaptive moderation (DIM) at 1.2-3 Mpps on one queue: batches grow up to DIM's largest profile,
    256 packets; 4 full polls and one partial per IRQ, and big batches plus their bridged copies overrun the
    budget of 300 now and then (time_squeeze). Never polls."""
    return Scenario("coalescing_dim", seconds, steady(rng, seconds, 1.2e6, 3e6), coalesce=Coalesce(8, 128, True),
                    queues=1)


def coalescing_ceiling(rng: random.Random, seconds: int) -> Scenario:
    """A NIC set to rx-frames 256, rx-usecs 500 at 1-2 Mpps on one queue: every IRQ carries exactly its ceiling
    of 256 packets (the IRQ rate sits at rate / 256), squeezing now and then. Never polls."""
    return Scenario("coalescing_ceiling", seconds, steady(rng, seconds, 1e6, 2e6), coalesce=Coalesce(500, 256, False),
                    queues=1)


# Olsson's e1000 measurements in the kernel's old Documentation/networking/NAPI_HOWTO.txt (2002), rows of 1440 down
# to 60-byte frames: input packets/s and RX interrupts over a test of 1M packets.
OLSSON = ((85_193, 946_576), (119_061, 872_519), (232_666, 241_292), (445_632, 42), (758_150, 21), (890_000, 17))


def e1000_napi_howto(rng: random.Random, seconds: int) -> Scenario:
    """One e1000 queue stepping up Olsson's table and back down, each row for an equal share of the trace, with the
    packets per IRQ of the table (1e6 / rxint: 1.1, 1.1, 4.1, then 23810, 47619, 58824). Heavy on the rows whose
    polls did not empty the ring (Ndone >> Done: 445 kpps and up); the other NIC is light."""
    steps = [*OLSSON, *reversed(OLSSON[:-1])]
    dwell = seconds / len(steps)
    line = []
    for i, (pps, rxint) in enumerate(steps):
        polling = 1e6 / rxint > WEIGHT
        line.append(Segment(i * dwell, (i + 1) * dwell, (pps, pps), "polling" if polling else "interrupt", polling,
                            1e6 / rxint))
    return Scenario("e1000_napi_howto", seconds, {"eth0": line, "eth1": wander(rng, 0, seconds, 5e3, 40e3)}, queues=1)


def vlan_storm(rng: random.Random, seconds: int) -> Scenario:
    """The seed incident's shape: tg3 ports (tg3_init_coal: rx-usecs 20, rx-frames 5) of one bridge; a broadcast
    storm on a VLAN ramps both from light load past the knee within seconds of each other, holds for 40-90 s and
    stops at once. Most of what they receive is broadcast."""
    first = seconds * rng.uniform(0.2, 0.3)
    lines = {}
    for nic in ("eth0", "eth1"):
        start, rise = first + rng.uniform(0, 5), rng.uniform(3, 10)
        until = start + rise + rng.uniform(40, 90)
        low, high = rng.uniform(10e3, 60e3), rng.uniform(400e3, 700e3)
        lines[nic] = [*ramp(0, start, low, low), *ramp(start, start + rise, low, high),
                      *wander(rng, start + rise, until, high * 0.9, high * 1.1), *ramp(until, until + 1, high, low),
                      *wander(rng, until + 1, seconds, 10e3, 60e3)]
    return Scenario("vlan_storm", seconds, lines, coalesce=Coalesce(20, 5, False), multicast=0.8)


SCENARIOS: dict[str, Callable[[random.Random, int], Scenario]] = {f.__name__: f for f in (
    interrupt_driven, slide_into_polling, bursty_light, bursty_heavy, tuned_threaded, counter_wraps,
    nic_disappears, both_nics_heavy, coalescing_e1000e, coalescing_ixgbe, coalescing_mlx5, coalescing_dim,
    coalescing_ceiling, e1000_napi_howto, vlan_storm)}
COALESCING = [name for name in SCENARIOS if name.startswith("coalescing_")]  # high steady load, never polls
LAB_SCENARIOS = {f.__name__: f for f in (sustained_polling,)}  # not in the corpus
DEFAULT_SECONDS = 300
# scenario -> (seed, seconds, counts) of each committed trace: ~550 bytes a second, about 5000 samples in all so
# that scoring takes seconds. `counts`: the trace carries the kernel's poll counts (napi_poll), so detection uses
# them; the others exercise the counter fallback. bursty_light gets the long ones, since flaps per hour is its
# figure. Seeds are unique per scenario (they name the files).
CORPUS = {name: [(1, 120, False), (2, 180, False)] for name in SCENARIOS}
CORPUS |= {name: [*CORPUS[name], (4, 150, True)] for name in ("slide_into_polling", "bursty_heavy", "both_nics_heavy")}
CORPUS["bursty_light"] = [(1, 240, False), (3, 600, False), (4, 300, True)]
CORPUS |= {name: [(1, 60, False), (2, 60, True)] for name in COALESCING}
CORPUS |= {"e1000_napi_howto": [(1, 165, False), (2, 165, True)], "vlan_storm": [(1, 120, False), (2, 120, True)]}


# --- physics: what the NIC's queues did in one interval ---


@dataclass
class Work:
    """Expected counts of one receive queue over one interval."""

    packets: float = 0.0
    irqs: float = 0.0
    net_rx: float = 0.0
    squeezes: float = 0.0
    busy: float = 0.0  # seconds of softirq time
    polls: float = 0.0  # napi_poll events
    full: float = 0.0  # of which used their whole weight


def pieces(line: list[Segment], a: float, b: float) -> Iterator[tuple[float, float, Segment]]:
    """(duration, mean load, segment) of each part of [a, b) that one segment covers."""
    for s in line:
        lo, hi = max(a, s.start), min(b, s.end)
        if hi > lo:
            yield hi - lo, s.at((lo + hi) / 2), s


def batch(rng: random.Random, rate: float, coalesce: Coalesce | None) -> float:
    """Packets per IRQ of interrupt-driven receive at `rate` packets/s on one queue. With coalescing the IRQ
    waits for rx-frames packets or rx-usecs (DIM: a batch growing with the rate), whichever comes first."""
    if coalesce is None:
        return (1 + 7 * min(1.0, rate / KNEE)) * rng.uniform(0.85, 1.15)
    window = rate * (ADAPTIVE_USECS if coalesce.adaptive_rx else coalesce.rx_usecs * 1e-6) * math.exp(rng.gauss(0, 0.08))
    ceiling = 256 if coalesce.adaptive_rx else coalesce.rx_frames or math.inf
    return max(1.0, min(ceiling, window))


def queue_work(rng: random.Random, parts: list[tuple[float, float, Segment]], weight: float,
               coalesce: Coalesce | None) -> Work:
    w = Work()
    for duration, load, seg in parts:
        rate = max(1.0, load * weight * math.exp(rng.gauss(0, 0.08)))
        packets = rate * duration
        w.packets += packets
        w.busy += packets * COST[seg.mode]
        if seg.mode == "interrupt":  # each IRQ: floor(B / weight) full polls, then one that empties the ring
            b = seg.ppi or batch(rng, rate, coalesce)
            irqs = packets / b
            w.irqs += irqs
            w.net_rx += irqs * rng.uniform(1.0, 1.05)
            w.polls += irqs * (b // WEIGHT + 1)
            w.full += irqs * (b // WEIGHT)
            w.squeezes += irqs * min(0.5, max(0.0, (b * PROCESSED_PER_PACKET - BUDGET) / BUDGET))
        elif seg.mode == "polling":  # full polls with the IRQ masked; it fires again only when the ring drains
            irqs = packets / seg.ppi if seg.ppi else POLL_IRQS * min(1.0, KNEE / rate) * duration * math.exp(rng.gauss(0, 0.1))
            w.irqs += irqs
            runs = packets / rng.uniform(*RUN_PACKETS)
            w.net_rx += runs
            w.squeezes += runs * min(0.9, 0.3 * rate / KNEE)
            w.full += max(0.0, packets / WEIGHT - irqs / 2)
            w.polls += max(0.0, packets / WEIGHT - irqs / 2) + irqs
        else:
            irqs = packets / rng.uniform(*THREADED_PPI)
            w.irqs += irqs
            w.polls += irqs * 2  # the thread polls until a poll comes back short
            w.full += irqs
    return w


# --- the host: the volatile files as counters, rendered in the kernel's formats ---


class Carry:
    """Integer increments of float expectations, each key keeping its fraction for the next interval."""

    def __init__(self):
        self.frac: dict[object, float] = {}

    def __call__(self, key: object, value: float) -> int:
        total = self.frac.get(key, 0.0) + value
        n = math.floor(total)
        self.frac[key] = total - n
        return n


@dataclass(frozen=True)
class Queue:
    irq: str
    cpu: int


class Host:
    """tg3-pair's volatile files, advanced interval by interval."""

    def __init__(self, base: trace.Tree, rng: random.Random, scenario: Scenario, counts: bool):
        self.base = base
        self.rng = rng
        self.scenario = scenario
        self.counts = {} if counts else None  # nic -> [polls, full polls] when the trace carries them
        self.carry = Carry()
        self.devices = {nic: _device_dir(base, nic) for nic in ("eth0", "eth1")}
        self.exposed = {nic for nic in self.devices if _exposed(base, nic)}
        self._parse_interrupts(base.files[INTERRUPTS])
        self.queues = {nic: self._queues(nic) for nic in self.devices}
        self.weights = {nic: _weights(rng, queues, scenario.queues) for nic, queues in self.queues.items()}
        self.softnet = [[int(x, 16) for x in line.split()] for line in base.files[SOFTNET].splitlines()]
        self._parse_softirqs(base.files[SOFTIRQS])
        self.stat = base.files[STAT].splitlines()
        self.cpu_times = {int(f[0][3:]): list(map(int, f[1:])) for f in map(str.split, self.stat)
                          if f[0].startswith("cpu") and f[0] != "cpu"}
        self.intr = list(map(int, next(line for line in self.stat if line.startswith("intr ")).split()[1:]))
        netdev = base.files[NETDEV].splitlines()
        self.netdev_head = netdev[:2]
        self.netdev = {name.strip(): list(map(int, rest.split()))
                       for name, _, rest in (line.partition(":") for line in netdev[2:])}
        self.removed: set[str] = set()

    # parsing

    def _parse_interrupts(self, text: str) -> None:
        self.irq_lines = text.splitlines()
        self.irq_cpus = [int(tok[3:]) for tok in self.irq_lines[0].split()]
        n = len(self.irq_cpus)
        self.irq_counts, self.irq_tails = {}, {}
        wanted = {irq for device in self.devices.values() for irq in _msi_irqs(self.base, device)}
        for line in self.irq_lines[1:]:
            irq = line.partition(":")[0].strip()
            if irq in wanted:  # kernel/irq/proc.c: "%3d:", then " %10u" per online CPU, then chip and actions
                self.irq_counts[irq] = list(map(int, line[4:4 + 11 * n].split()))
                self.irq_tails[irq] = line[4 + 11 * n:]

    def _queues(self, nic: str) -> list[Queue]:
        """Each receive vector and the CPU that serves it (the column where its count is)."""
        out = []
        for irq in _msi_irqs(self.base, self.devices[nic]):
            counts = self.irq_counts[irq]
            out.append(Queue(irq, self.irq_cpus[counts.index(max(counts))]))
        return out

    def _parse_softirqs(self, text: str) -> None:
        lines = text.splitlines()
        self.softirq_head = lines[0]
        rows = (line.partition(":") for line in lines[1:])
        self.softirqs = {name.strip(): list(map(int, rest.split())) for name, _, rest in rows}

    # counters

    def wrap_counters(self) -> None:
        """Start the 32-bit counters of the serving CPUs a few seconds of traffic below 2^32: IRQs and NET_RX
        wrap while the NIC is interrupt-driven, time_squeeze once it polls. net/dev is 64-bit: it crosses 2^32."""
        for nic, queues in self.queues.items():
            for q in queues:
                self.irq_counts[q.irq][self.irq_cpus.index(q.cpu)] = 2**32 - round(self.rng.uniform(1e4, 1e5))
                self.softnet[q.cpu][PROCESSED] = 2**32 - round(self.rng.uniform(5e4, 1e6))
                self.softnet[q.cpu][TIME_SQUEEZE] = 2**32 - round(self.rng.uniform(1, 5000))
                self.softirqs["NET_RX"][q.cpu] = 2**32 - round(self.rng.uniform(1e4, 1e5))
            self.netdev[nic][RX_PACKETS] = 2**32 - round(self.rng.uniform(1e6, 5e6))
        for irq, counts in self.irq_counts.items():
            self.intr[1 + int(irq)] = sum(counts) & MASK32

    def add_irq(self, irq: str, cpu: int, value: float) -> None:
        n = self.carry((irq, cpu), value)
        counts = self.irq_counts[irq]
        i = self.irq_cpus.index(cpu)
        counts[i] = (counts[i] + n) & MASK32
        self.intr[1 + int(irq)] = sum(counts) & MASK32
        self.intr[0] += n

    def add_softirq(self, vector: str, cpu: int, value: float) -> None:
        counts = self.softirqs[vector]
        counts[cpu] = (counts[cpu] + self.carry((vector, cpu), value)) & MASK32

    def add_softnet(self, column: int, cpu: int, value: float) -> None:
        row = self.softnet[cpu]
        row[column] = (row[column] + self.carry(("softnet", column, cpu), value)) & MASK32

    def interval(self, lines: dict[str, list[Segment]], a: float, b: float) -> None:
        """Advances every counter by what happened in [a, b)."""
        busy = dict.fromkeys(range(len(self.softnet)), 0.0)
        for nic, line in lines.items():
            if nic not in self.removed:
                for cpu, seconds in self._nic_interval(nic, list(pieces(line, a, b)), b - a).items():
                    busy[cpu] += seconds
        for cpu, seconds in busy.items():
            self._background(cpu, seconds, b - a)

    def _nic_interval(self, nic: str, parts: list, dt: float) -> dict[int, float]:
        received, busy, polls, full = 0.0, {}, 0.0, 0.0
        for q in self.queues[nic]:
            w = queue_work(self.rng, parts, self.weights[nic][q.irq], self.scenario.coalesce)
            received, polls, full = received + w.packets, polls + w.polls, full + w.full
            self.add_irq(q.irq, q.cpu, w.irqs)
            self.add_softirq("NET_RX", q.cpu, w.net_rx)
            self.add_softnet(PROCESSED, q.cpu, w.packets * PROCESSED_PER_PACKET)
            self.add_softnet(TIME_SQUEEZE, q.cpu, w.squeezes)
            busy[q.cpu] = w.busy
        if self.counts is not None:
            totals = self.counts.setdefault(nic, [0, 0])
            totals[0] += self.carry((nic, "polls"), polls)
            totals[1] += self.carry((nic, "full"), full)
        sent = received * 0.05 + 300 * dt
        self.add_softirq("NET_TX", self.queues[nic][0].cpu, sent / 32)
        self._netdev(nic, received, sent)
        return busy

    def _netdev(self, nic: str, received: float, sent: float) -> None:
        size = 600 if nic == "eth0" else 900  # mean frame size
        c = self.netdev[nic]
        for i, value in ((RX_BYTES, received * size), (RX_PACKETS, received), (RX_MULTICAST, received * self.scenario.multicast),
                         (TX_BYTES, sent * 200), (TX_PACKETS, sent)):
            c[i] += self.carry((nic, i), value)

    def _background(self, cpu: int, busy: float, dt: float) -> None:
        if self.rng.random() < 0.2:
            self.add_softirq("NET_RX", cpu, 1)
        if self.rng.random() < 0.02:
            self.add_softnet(TIME_SQUEEZE, cpu, 1)
        self.cpu_times[cpu][SOFTIRQ_TICKS] += self.carry(("softirq", cpu), min(busy, 0.95 * dt) * USER_HZ)

    def remove(self, nic: str) -> None:
        self.removed.add(nic)
        for q in self.queues[nic]:
            del self.irq_counts[q.irq]
            self.intr[1 + int(q.irq)] = 0  # the freed descriptor counts nothing
        del self.netdev[nic]

    # rendering

    def tree(self, threaded: dict[str, bool]) -> trace.Tree:
        files = {**self.base.files, INTERRUPTS: self._interrupts(), SOFTNET: self._softnet(),
                 SOFTIRQS: self._softirqs(), STAT: self._stat(), NETDEV: self._netdev_text()}
        for nic, on in threaded.items():
            files[f"{self.devices[nic]}/net/{nic}/threaded"] = f"{int(on)}\n"
        present = [nic for nic in self.devices if nic not in self.removed]
        if self.counts is not None:
            files[NAPI_POLL] = napi_poll.format_counts(
                {nic: napi_poll.NapiPolls(*self.counts.get(nic, (0, 0))) for nic in present})
        if self.scenario.coalesce is not None:
            files[COALESCE] = format_values(dict.fromkeys(present, self.scenario.coalesce))
        tree = trace.Tree(files, dict(self.base.links))
        for nic in self.removed:
            _remove_nic(tree, nic, self.devices[nic])
        return tree

    def _interrupts(self) -> str:
        out = [self.irq_lines[0]]
        for line in self.irq_lines[1:]:
            irq = line.partition(":")[0].strip()
            if irq not in self.irq_tails:
                out.append(line)
            elif irq in self.irq_counts:
                out.append(f"{irq:>3}:" + "".join(f" {c:>10}" for c in self.irq_counts[irq]) + self.irq_tails[irq])
        return "\n".join(out) + "\n"

    def _softnet(self) -> str:
        return "".join(" ".join(f"{v:08x}" for v in row) + "\n" for row in self.softnet)

    def _softirqs(self) -> str:
        rows = [f"{name:>12}:" + "".join(f" {v:>10}" for v in counts) for name, counts in self.softirqs.items()]
        return "\n".join([self.softirq_head, *rows]) + "\n"

    def _stat(self) -> str:
        """fs/proc/stat.c: the cpu lines, intr (per IRQ: the 32-bit sum over CPUs) and softirq (u64 sums)."""
        total = [sum(col) for col in zip(*self.cpu_times.values())]
        sums = [sum(counts) for counts in self.softirqs.values()]
        out = []
        for line in self.stat:
            word = line.split(" ", 1)[0]
            if word == "cpu":
                line = "cpu " + "".join(f" {v}" for v in total)
            elif word.startswith("cpu"):
                line = word + "".join(f" {v}" for v in self.cpu_times[int(word[3:])])
            elif word == "intr":
                line = "intr" + "".join(f" {v}" for v in self.intr)
            elif word == "softirq":
                line = "softirq" + "".join(f" {v}" for v in [sum(sums), *sums])
            out.append(line)
        return "\n".join(out) + "\n"

    def _netdev_text(self) -> str:
        rows = [NETDEV_FORMAT % (name, *c) for name, c in self.netdev.items()]
        return "\n".join([*self.netdev_head, *rows]) + "\n"


def _weights(rng: random.Random, queues: list[Queue], used: int) -> dict[str, float]:
    """RSS shares of the first `used` receive queues: even, +-20 %; the others get nothing."""
    raw = [rng.uniform(0.8, 1.2) if i < used else 0.0 for i in range(len(queues))]
    return {q.irq: r / sum(raw) for q, r in zip(queues, raw)}


def _device_dir(tree: trace.Tree, nic: str) -> str:
    """The bus device directory of a NIC, e.g. sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0."""
    net = os.path.normpath(os.path.join("sys/class/net", tree.links[f"sys/class/net/{nic}"]))
    return os.path.normpath(os.path.join(net, tree.links[f"{net}/device"]))


def _msi_irqs(tree: trace.Tree, device: str) -> list[str]:
    prefix = f"{device}/msi_irqs/"
    return sorted((p[len(prefix):] for p in tree.files if p.startswith(prefix)), key=int)


def _exposed(tree: trace.Tree, nic: str) -> bool:
    net = os.path.normpath(os.path.join("sys/class/net", tree.links[f"sys/class/net/{nic}"]))
    return bool(int(tree.files[f"{net}/flags"], 16) & IFF_PROMISC) or f"{net}/master" in tree.links


def _remove_nic(tree: trace.Tree, nic: str, device: str) -> None:
    """The class/net link, the bus device directory, and every link that leads into it (brif, driver)."""
    def gone(path: str) -> bool:
        return path == device or path.startswith(device + "/")

    for path in [p for p in tree.files if gone(p)]:
        del tree.files[path]
    for path, target in list(tree.links.items()):
        if gone(path) or gone(os.path.normpath(os.path.join(os.path.dirname(path), target))):
            del tree.links[path]
    tree.links.pop(f"sys/class/net/{nic}", None)


# --- the trace ---


def label(scenario: Scenario, host: Host, t: float) -> dict:
    heavy = sorted(nic for nic, line in scenario.lines.items()
                   if nic not in host.removed and (s := segment_at(line, max(0.0, t - 0.5))) and s.heavy)
    return {"nics": heavy, "host": any(nic in host.exposed for nic in heavy)}


def threaded(scenario: Scenario, host: Host, t: float) -> dict[str, bool]:
    if not scenario.threaded_files:
        return {}
    out = {}
    for nic, line in scenario.lines.items():
        if nic not in host.removed:
            s = segment_at(line, t) or segment_at(line, t - 0.5)
            out[nic] = bool(s and s.mode == "threaded")
    return out


def records(scenario: Scenario, rng: random.Random, counts: bool = False) -> Iterator[trace.Record]:
    """One record per second, t = 0 .. scenario.seconds."""
    base = capture.full(str(FIXTURE / "proc"), str(FIXTURE / "sys"))
    host = Host(base, rng, scenario, counts)
    if scenario.wrap:
        host.wrap_counters()
    prev = trace.Tree()
    for k in range(scenario.seconds + 1):
        if k:
            host.interval(scenario.lines, k - 1, k)
        for nic, line in scenario.lines.items():
            if nic not in host.removed and max(s.end for s in line) <= k < scenario.seconds:
                host.remove(nic)
        tree = host.tree(threaded(scenario, host, k))
        yield replace(trace.delta(prev, tree, float(k)), label=label(scenario, host, k))
        prev = tree


def generate(name: str, seed: int, seconds: int = DEFAULT_SECONDS, counts: bool = False) -> tuple[dict, Iterator[trace.Record]]:
    """The header and records of one trace; the same name, seed, seconds and counts give the same trace."""
    rng = random.Random(f"{name}/{seed}/{seconds}")
    scenario = (SCENARIOS | LAB_SCENARIOS)[name](rng, seconds)
    head = {**trace.header(1.0, "tg3-pair", STARTED, ""), "scenario": name, "seed": seed, "counts": counts}
    return head, records(scenario, rng, counts)


def write(path: str, name: str, seed: int, seconds: int = DEFAULT_SECONDS, counts: bool = False) -> None:
    head, recs = generate(name, seed, seconds, counts)
    writer = trace.Writer(open(path, "wb"), max_size=1 << 40)
    writer.write(trace.encode(head))
    for record in recs:
        writer.write(trace.encode(record))
    writer.close()


def write_corpus(directory: str) -> list[str]:
    """Every trace of CORPUS into directory, replacing the traces that were there."""
    os.makedirs(directory, exist_ok=True)
    for old in Path(directory).glob("*.trace.gz"):
        old.unlink()
    jobs = [(os.path.join(directory, f"{name}-{seed}.trace.gz"), name, seed, seconds, counts)
            for name, runs in CORPUS.items() for seed, seconds, counts in runs]
    with ProcessPoolExecutor() as pool:
        list(pool.map(write, *zip(*jobs)))
    return [job[0] for job in jobs]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS | LAB_SCENARIOS))
    p.add_argument("--out", metavar="FILE", help="trace to write (*.trace.gz)")
    p.add_argument("--seconds", type=int, default=DEFAULT_SECONDS, help=f"length (default {DEFAULT_SECONDS})")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--counts", action="store_true", help="carry the kernel's NAPI poll counts (proc/lxcwatch/napi_poll)")
    p.add_argument("--corpus", metavar="DIR", help="write the labelled corpus (every scenario, several seeds) into DIR")
    args = p.parse_args(argv)
    if args.corpus:
        for path in write_corpus(args.corpus):
            print(f"{path}: {os.path.getsize(path)} bytes")
        return 0
    if not (args.scenario and args.out) or args.seconds < 60:
        p.error("want SCENARIO --out FILE (and --seconds of at least 60), or --corpus DIR")
    write(args.out, args.scenario, args.seed, args.seconds, args.counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
