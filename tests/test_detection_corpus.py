"""Detection on the labelled corpus (tests/corpus, from tests/tracegen.py): real Sampler and classifier, default thresholds."""

import filecmp
from pathlib import Path

import pytest

import detection
import tracegen
from lxcwatch import capture, interrupts, metrics, net_dev, proc_stat, softirqs, softnet_stat, trace
from lxcwatch.classifier import Thresholds

CORPUS = Path(__file__).parent / "corpus"
PATHS = sorted(str(p) for p in CORPUS.glob("*.trace.gz"))
T = Thresholds()
BAR = 0.95  # precision and recall, after grace
WITH_ONSETS = [name for name in tracegen.SCENARIOS if name not in ("interrupt_driven", "bursty_light")]


def traces(scenario: str) -> list[str]:
    return [p for p in PATHS if Path(p).name.startswith(f"{scenario}-")]


@pytest.fixture(scope="module")
def scores() -> dict[str, detection.Score]:
    return detection.by_scenario(detection.evaluate_all(PATHS, T))


def check_bar(score: detection.Score, level: str) -> None:
    c = getattr(score, level)
    where = f"{score.scenario}, {level} level: tp={c.tp} fp={c.fp} fn={c.fn} tn={c.tn}"
    assert c.fp <= (1 - BAR) * (c.tp + c.fp), f"precision {c.precision} below {BAR} ({where})"
    assert c.fn <= (1 - BAR) * (c.tp + c.fn), f"recall {c.recall} below {BAR} ({where})"


# --- the corpus itself ---


def test_the_corpus_is_what_the_generator_makes(tmp_path):
    made = tracegen.write_corpus(str(tmp_path))
    regenerate = "regenerate: python tests/tracegen.py --corpus tests/corpus"
    assert sorted(Path(p).name for p in made) == [Path(p).name for p in PATHS], regenerate
    for path in made:
        assert filecmp.cmp(path, CORPUS / Path(path).name, shallow=False), f"{Path(path).name} differs: {regenerate}"
    assert sum(Path(p).stat().st_size for p in PATHS) < 3_000_000


def test_every_scenario_has_several_labelled_traces():
    for name in tracegen.SCENARIOS:
        assert len(traces(name)) >= 3, name
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
def test_every_onset_is_detected_within_enter_samples_plus_two(scores, scenario):
    latencies = scores[scenario].nic_latency + scores[scenario].host_latency
    assert latencies and None not in latencies, f"missed onsets: {latencies}"
    assert max(latencies) <= T.enter_samples + 2, f"latencies {latencies}"


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
    assert 0.5 <= s.lowest["packets_per_irq"] and s.highest["packets_per_irq"] < 10_000
    assert s.highest["packets"] < 2e6 and s.highest["irqs"] < 1e6 and s.highest["squeezes"] < 1e5


def test_no_collector_fails_anywhere(scores):
    assert {name: s.collector_failures for name, s in scores.items() if s.collector_failures} == {}


@pytest.mark.parametrize("path", traces("nic_disappears"))
def test_a_disappearing_nic_ends_its_series(path):
    agent = metrics.Agent("test", "", "node-a")
    gone = None
    for n, step in enumerate(detection.steps(path, T)):
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
