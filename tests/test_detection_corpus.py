"""Detection on the labelled corpus (tests/corpus, from tests/tracegen.py): real Sampler and classifier, default thresholds."""

import filecmp
import itertools
from pathlib import Path

import pytest

import detection
import tracegen
from lxcwatch.traces import capture, trace
from lxcwatch.kernel import interrupts, net_dev, proc_stat, softirqs, softnet_stat
from lxcwatch.export import metrics
from lxcwatch.core.classifier import Thresholds

CORPUS = Path(__file__).parent / "corpus"
PATHS = detection.corpus(str(CORPUS))  # recorded traces in subdirectories count too
GENERATED = sorted(str(p) for p in CORPUS.glob("*.trace.gz"))
# The targets of issue 11 and docs/detection.md, as numbers: not read from the code under test.
BAR = 0.99  # precision and recall, after grace
GRACE = detection.Grace(onset=5, offset=11)  # enter_samples 4 + 1, leave_samples 10 + 1 (docs/detection.md)
LATENCY = 5  # samples from onset to the first heavy verdict, at most
NEVER_HEAVY = ["interrupt_driven", "bursty_light", *tracegen.COALESCING]
WITH_ONSETS = [name for name in tracegen.SCENARIOS if name not in NEVER_HEAVY]


def traces(scenario: str) -> list[str]:
    return [p for p in PATHS if Path(p).name.startswith(f"{scenario}-")]


def with_counts(path: str) -> bool:
    """The trace carries the kernel's poll counts (tracegen --counts, or `lxcwatch record` on a host that has them)."""
    _, first = itertools.islice(trace.read(path), 2)
    return tracegen.NAPI_POLL in first.files


@pytest.fixture(scope="module")
def trace_scores() -> dict[str, detection.Score]:
    return dict(zip(PATHS, detection.evaluate_all(PATHS, Thresholds(), GRACE)))


@pytest.fixture(scope="module")
def scores(trace_scores) -> dict[str, detection.Score]:
    return detection.by_scenario(list(trace_scores.values()))


def check_bar(score: detection.Score, level: str) -> None:
    c = getattr(score, level)
    where = f"{score.scenario}, {level} level: tp={c.tp} fp={c.fp} fn={c.fn} tn={c.tn}"
    assert c.fp <= (1 - BAR) * (c.tp + c.fp), f"precision {c.precision} below {BAR} ({where})"
    assert c.fn <= (1 - BAR) * (c.tp + c.fn), f"recall {c.recall} below {BAR} ({where})"


# --- the corpus itself ---


def test_the_corpus_is_what_the_generator_makes(tmp_path):
    made = tracegen.write_corpus(str(tmp_path))
    regenerate = "regenerate: python tests/tracegen.py --corpus tests/corpus"
    assert sorted(Path(p).name for p in made) == [Path(p).name for p in GENERATED], regenerate
    for path in made:
        assert filecmp.cmp(path, CORPUS / Path(path).name, shallow=False), f"{Path(path).name} differs: {regenerate}"
    assert sum(Path(p).stat().st_size for p in GENERATED) < 3_500_000


def test_every_scenario_has_several_labelled_traces():
    for name in tracegen.SCENARIOS:
        assert len(traces(name)) >= 2, name
    for name in [*tracegen.COALESCING, "e1000_napi_howto", "vlan_storm", "slide_into_polling", "bursty_light"]:
        assert {with_counts(p) for p in traces(name)} == {True, False}, f"{name}: with and without poll counts"
    header, first, *_ = trace.read(traces("slide_into_polling")[0])
    assert header["scenario"] == "slide_into_polling" and first.label == {"nics": [], "host": False}


def test_a_trace_starts_as_the_fixture_tree():
    _, records = tracegen.generate("interrupt_driven", 1, 60)
    assert trace.apply(trace.Tree(), next(records)) == capture.full(
        str(tracegen.FIXTURE / "proc"), str(tracegen.FIXTURE / "sys"))


def trees(path: str):
    tree = trace.Tree()
    for record in list(trace.read(path))[1:]:
        tree = trace.apply(tree, record)
        yield tree


def test_kernel_formats_hold_and_32_bit_counters_wrap():
    fixture = capture.full(str(tracegen.FIXTURE / "proc"), str(tracegen.FIXTURE / "sys")).files
    widths = {line.split(":")[0]: len(line) for line in fixture[tracegen.INTERRUPTS].splitlines()}
    decreased, prev = set(), None
    for tree in trees(traces("counter_wraps")[0]):
        f = tree.files
        for line in f[tracegen.INTERRUPTS].splitlines():
            assert len(line) == widths[line.split(":")[0]], line
        assert all(len(field) == 8 for line in f[tracegen.SOFTNET].splitlines() for field in line.split())
        now = {
            "interrupts": interrupts.parse(f[tracegen.INTERRUPTS]).rows["72"].counts[1],
            "processed": softnet_stat.parse(f[tracegen.SOFTNET])[1].processed,
            "time_squeeze": softnet_stat.parse(f[tracegen.SOFTNET])[1].time_squeeze,
            "NET_RX": softirqs.parse(f[tracegen.SOFTIRQS])["NET_RX"][1],
        }
        proc_stat.parse_softirq_ticks(f[tracegen.STAT])
        net_dev.parse(f[tracegen.NETDEV])
        if prev:
            decreased |= {name for name in now if now[name] < prev[name]}
        prev = now
    assert decreased == {"interrupts", "processed", "time_squeeze", "NET_RX"}  # eth0's rx-1 on CPU 1


# --- detection, per scenario ---


@pytest.mark.parametrize("scenario", list(tracegen.SCENARIOS))
def test_precision_and_recall(scores, scenario):
    check_bar(scores[scenario], "nic")
    check_bar(scores[scenario], "host")


@pytest.mark.parametrize("level", ["nic", "host"])
def test_precision_and_recall_over_the_corpus(scores, level):
    total = detection.Score("corpus", 0)
    for score in scores.values():
        total += score
    check_bar(total, level)


@pytest.mark.parametrize("scenario", WITH_ONSETS)
def test_every_onset_is_detected_within_five_samples(scores, scenario):
    latencies = scores[scenario].nic_latency + scores[scenario].host_latency
    assert latencies and None not in latencies, f"missed onsets: {latencies}"
    assert max(latencies) <= LATENCY, f"latencies {latencies}"


@pytest.mark.parametrize("scenario", tracegen.COALESCING)
def test_coalescing_at_high_load_is_never_heavy(scores, scenario):
    s = scores[scenario]
    assert s.heavy_verdicts == 0 and s.evidence == {"none"}, f"{s.heavy_verdicts} heavy samples; evidence {s.evidence}"
    assert s.highest["packets"] >= 300_000  # the load is high: it is coalescing that keeps it interrupt-driven


def test_the_coalescing_traces_hold_the_published_figures(scores):
    """Packets per IRQ of each trace, within the model's noise, against the figures it is built from."""
    ppi = {name: (scores[name].lowest["packets_per_irq"], scores[name].highest["packets_per_irq"]) for name in tracegen.COALESCING}
    assert 25 <= ppi["coalescing_e1000e"][0] and ppi["coalescing_e1000e"][1] <= 55  # 40 at 320 kpps (ITR 8000)
    assert 30 <= ppi["coalescing_ixgbe"][0] and ppi["coalescing_ixgbe"][1] <= 75  # 50 at 1 Mpps (rx-usecs 50)
    assert ppi["coalescing_mlx5"][1] <= 32  # 16 us / 32 packets
    assert ppi["coalescing_dim"][1] <= 256 and ppi["coalescing_dim"][0] < 200  # DIM up to 256
    assert 250 <= ppi["coalescing_ceiling"][0] and ppi["coalescing_ceiling"][1] <= 256  # at rx-frames 256


def test_both_kinds_of_evidence_decide_on_their_own_traces(trace_scores):
    counted = {p: s for p, s in trace_scores.items() if with_counts(p) and s.reasons}
    counters = {p: s for p, s in trace_scores.items() if not with_counts(p) and s.reasons}
    assert counted and counters
    assert set().union(*(s.reasons for s in counted.values())) == {"full_polls"}
    assert set().union(*(s.reasons for s in counters.values())) == {"time_squeeze", "threaded"}


def test_olssons_e1000_is_heavy_only_on_the_rows_that_poll(scores):
    s = scores["e1000_napi_howto"]
    assert s.nic.fp == 0 and s.nic.fn == 0 and s.nic.tp > 0
    assert s.highest["packets_per_irq"] > 20_000 and s.lowest["packets_per_irq"] < 1.2  # 23810-58824 and 1.06


def test_bursty_but_light_traffic_never_flaps(scores):
    s = scores["bursty_light"]
    assert (s.nic_flaps, s.host_flaps) == (0, 0), (
        f"{s.flaps_per_hour('nic'):.0f} NIC and {s.flaps_per_hour('host'):.0f} host mode changes per hour; "
        f"NIC reasons {sorted(s.reasons)}")


def test_tuned_polling_says_threaded(scores):
    s = scores["tuned_threaded"]
    assert s.reasons == {"threaded"} and s.host_reasons == {"nic"}


def test_wrapping_counters_give_no_false_heavy_and_no_absurd_rates(scores):
    s = scores["counter_wraps"]
    assert (s.nic.fp, s.host.fp) == (0, 0)
    assert min(s.lowest.values()) >= 0
    assert 0.5 <= s.lowest["packets_per_irq"] and s.highest["packets_per_irq"] < 100_000  # a misread wrap gives ~2^32
    assert s.highest["packets"] < 2e6 and s.highest["irqs"] < 1e6 and s.highest["squeezes"] < 1e5


def test_no_collector_fails_anywhere(scores):
    assert {name: s.collector_failures for name, s in scores.items() if s.collector_failures} == {}


@pytest.mark.parametrize("path", traces("nic_disappears"))
def test_a_disappearing_nic_ends_its_series(path):
    agent = metrics.Agent("test", "", "node-a")
    gone = None
    for n, step in enumerate(detection.steps(path)):
        devices = {labels[f.labels.index("device")] for f in metrics.families(step.snapshot, agent, 0, step.verdict)
                   if "device" in f.labels for labels, _ in f.samples}
        assert all(r.success for r in step.snapshot.collectors.values()), step.snapshot.collectors
        assert "eth0" in devices
        if gone is None and step.record.removed:
            gone = n
        if gone is None:
            assert "eth1" in devices
        else:
            assert "eth1" not in devices | set(step.snapshot.netdev) | set(step.verdict.nics)
            assert all(i.device != "eth1" for i in step.snapshot.nic_irqs)
    assert gone is not None
