"""Replays labelled traces through the real Sampler and scores its verdicts against the labels.

Each record is written into a temporary tree (lxcwatch.replay's TreeWriter), then Sampler.sample() runs
once on that tree, stamped with the record's time (Sampler.sample(at=...)), so rates are per second of the
trace, not of the evaluator.

Scoring, per trace, from the second record on (the first has no rates):
- per sample, for the host and for each NIC (absent from the verdict = not heavy; an unknown verdict
  counts as the mode it holds): true/false positives/negatives against the label; the `Grace.onset`
  samples from each ground-truth onset and the `Grace.offset` samples from each offset are not counted
  (the hysteresis needs enter_samples samples of evidence to enter and leave_samples without to leave, plus
  one sample for an interval only partly in the new mode: the command line takes them from the thresholds
  it runs, the tests fix them at the documented defaults);
- latency per onset: samples from the onset (the first heavy-labelled record, counted as 1) up to and
  including the first heavy verdict, so a detector that sees evidence at once scores enter_samples;
  an episode that ends undetected is a miss;
- flaps: changes of the verdict (either way), per hour of trace, for the host and summed over NICs.

`python tests/detection.py tests/corpus [--detect.NAME=VALUE ...]` prints a markdown table. Every
*.trace.gz under the directory counts, subdirectories included (recorded traces go beside the generated
ones); a trace's scenario is its header's `scenario`, else its file name up to the first "-".
"""

import argparse
import glob
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from lxcwatch.traces import trace
from lxcwatch.core.classifier import Thresholds, Verdict
from lxcwatch.cli import DETECT_FLAGS
from lxcwatch.sources.host import Sources
from lxcwatch.sampler import Sampler
from lxcwatch.traces.replay import TreeWriter
from lxcwatch.core.snapshot import Snapshot

RECEIVE_PATH = ["softnet", "softirqs", "interrupts", "netdev", "links", "napi", "kthreads", "napi_poll"]  # what traces hold
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") else None  # tmpfs: thousands of small renames per trace


@dataclass(frozen=True)
class Step:
    record: trace.Record
    snapshot: Snapshot
    verdict: Verdict


def steps(path: str, thresholds: Thresholds = Thresholds()) -> Iterator[Step]:
    """The snapshot and verdict after each record of a trace, as the agent would have had them."""
    records = trace.read(path)
    head = next(records)
    with tempfile.TemporaryDirectory(prefix="lxcwatch-detection-", dir=SCRATCH) as root:
        writer, sources = TreeWriter(root), None
        try:
            for record in records:
                writer.apply(record)
                if sources is None:
                    sources = Sources.open(os.path.join(root, "proc"), os.path.join(root, "sys"))
                    sampler = Sampler(sources, RECEIVE_PATH, head["interval"], thresholds)
                sampler.sample(at=(head["started"] + record.t, record.t))
                yield Step(record, *sampler.current)
        finally:
            writer.close()
            if sources is not None:
                sources.close()


@dataclass
class Confusion:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, truth: bool, predicted: bool) -> None:
        name = ("t" if truth == predicted else "f") + ("p" if predicted else "n")
        setattr(self, name, getattr(self, name) + 1)

    def __iadd__(self, other: "Confusion") -> "Confusion":
        for name in ("tp", "fp", "fn", "tn"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


@dataclass
class Score:
    """One trace (or the sum of several) scored against its labels."""

    scenario: str
    traces: int = 1
    samples: int = 0
    hours: float = 0.0
    nic: Confusion = field(default_factory=Confusion)
    host: Confusion = field(default_factory=Confusion)
    nic_latency: list[int | None] = field(default_factory=list)  # per onset; None = missed
    host_latency: list[int | None] = field(default_factory=list)
    nic_flaps: int = 0
    host_flaps: int = 0
    heavy_verdicts: int = 0  # samples in which the host or some NIC was reported heavy
    evidence: set[str] = field(default_factory=set)  # every NIC evidence seen, heavy or not
    reasons: set[str] = field(default_factory=set)  # NIC reasons while heavy
    host_reasons: set[str] = field(default_factory=set)
    highest: dict[str, float] = field(default_factory=dict)  # NIC rate name -> highest value seen
    lowest: dict[str, float] = field(default_factory=dict)
    collector_failures: int = 0

    def __iadd__(self, other: "Score") -> "Score":
        self.traces += other.traces
        self.samples += other.samples
        self.hours += other.hours
        self.nic += other.nic
        self.host += other.host
        self.nic_latency += other.nic_latency
        self.host_latency += other.host_latency
        self.nic_flaps += other.nic_flaps
        self.host_flaps += other.host_flaps
        self.heavy_verdicts += other.heavy_verdicts
        self.evidence |= other.evidence
        self.reasons |= other.reasons
        self.host_reasons |= other.host_reasons
        for name, value in other.highest.items():
            self.extremes(name, value)
        for name, value in other.lowest.items():
            self.extremes(name, value)
        self.collector_failures += other.collector_failures
        return self

    def extremes(self, name: str, value: float) -> None:
        self.highest[name] = max(self.highest.get(name, value), value)
        self.lowest[name] = min(self.lowest.get(name, value), value)

    def flaps_per_hour(self, which: str = "host") -> float:
        return getattr(self, f"{which}_flaps") / self.hours if self.hours else 0.0


@dataclass(frozen=True)
class Grace:
    """Samples not scored after each ground-truth onset and offset."""

    onset: int
    offset: int

    @classmethod
    def of(cls, t: Thresholds) -> "Grace":
        return cls(t.enter_samples + 1, t.leave_samples + 1)


def grace(truth: list[bool], g: Grace) -> list[bool]:
    """True for the samples not scored: g.onset from each onset, g.offset from each offset."""
    out = [False] * len(truth)
    for i in range(1, len(truth)):
        if truth[i] != truth[i - 1]:
            width = g.onset if truth[i] else g.offset
            for j in range(i, min(len(truth), i + width)):
                out[j] = True
    return out


def latencies(truth: list[bool], predicted: list[bool]) -> list[int | None]:
    """Per onset, samples from the onset (counted as 1) to the first heavy verdict within the episode."""
    out = []
    for i in range(len(truth)):
        if truth[i] and (i == 0 or not truth[i - 1]):
            j = i
            while j < len(truth) and truth[j] and not predicted[j]:
                j += 1
            out.append(j - i + 1 if j < len(truth) and truth[j] else None)
    return out


def flaps(predicted: list[bool]) -> int:
    return sum(a != b for a, b in zip(predicted, predicted[1:]))


def score_series(truth: list[bool], predicted: list[bool], g: Grace) -> tuple[Confusion, list, int]:
    c = Confusion()
    for skip, a, b in zip(grace(truth, g), truth, predicted):
        if not skip:
            c.add(a, b)
    return c, latencies(truth, predicted), flaps(predicted)


NO_LABEL = {"nics": [], "host": False}


def series(path: str, thresholds: Thresholds, score: Score) -> tuple[dict[str, list[bool]], dict[str, list[bool]]]:
    """Truth and verdict per sample, from the second record on (the first has no rates), for "host" and each
    NIC; fills in the score's observations on the way."""
    truth: dict[str, list[bool]] = {"host": []}
    predicted: dict[str, list[bool]] = {"host": []}
    first = None
    for step in steps(path, thresholds):
        if first is None:
            first = step.record.t
            continue
        _observe(score, step)
        label, nics = step.record.label or NO_LABEL, step.verdict.nics
        truth["host"].append(label["host"])
        predicted["host"].append(step.verdict.host.heavy)
        for nic in set(truth) - {"host"} | set(label["nics"]) | set(nics):
            before = [False] * (len(truth["host"]) - 1)  # a NIC seen late was not heavy before
            truth.setdefault(nic, before[:]).append(nic in label["nics"])
            predicted.setdefault(nic, before[:]).append(nic in nics and nics[nic].mode.heavy)
        score.samples += 1
        score.hours = (step.record.t - first) / 3600
    return truth, predicted


def evaluate(path: str, thresholds: Thresholds = Thresholds(), g: Grace | None = None) -> Score:
    """Scores one trace."""
    head = next(trace.read(path))
    score = Score(head.get("scenario") or os.path.basename(path).split("-")[0])
    truth, predicted = series(path, thresholds, score)
    for name in truth:
        confusion, onsets, changes = score_series(truth[name], predicted[name], g or Grace.of(thresholds))
        if name == "host":
            score.host, score.host_latency, score.host_flaps = confusion, onsets, changes
        else:
            score.nic += confusion
            score.nic_latency += onsets
            score.nic_flaps += changes
    return score


def _observe(score: Score, step: Step) -> None:
    v = step.verdict
    score.collector_failures += sum(not r.success for r in step.snapshot.collectors.values())
    if v.host.heavy:
        score.host_reasons.add(v.host.reason)
    score.heavy_verdicts += v.host.heavy or any(n.mode.heavy for n in v.nics.values())
    for n in v.nics.values():
        score.evidence.add(n.evidence)
        if n.mode.heavy:
            score.reasons.add(n.mode.reason)
        r = n.rates
        for name in ("packets", "irqs", "net_rx", "squeezes"):
            score.extremes(name, getattr(r, name))
        if r.packets_per_irq is not None and r.packets >= 1000:
            score.extremes("packets_per_irq", r.packets_per_irq)


def evaluate_all(paths: list[str], thresholds: Thresholds = Thresholds(), g: Grace | None = None,
                 workers: int | None = None) -> list[Score]:
    """Scores of every trace, in the order given, on all CPUs."""
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        return [evaluate(p, thresholds, g) for p in paths]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(evaluate, paths, [thresholds] * len(paths), [g] * len(paths)))


def corpus(directory: str) -> list[str]:
    """Every trace under a directory, subdirectories included, sorted."""
    return sorted(glob.glob(os.path.join(directory, "**", "*.trace.gz"), recursive=True))


def by_scenario(scores: list[Score]) -> dict[str, Score]:
    out: dict[str, Score] = {}
    for s in scores:
        total = out.setdefault(s.scenario, Score(s.scenario, 0))
        total += s
    return out


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _latency(values: list[int | None]) -> tuple[str, str, str]:
    found = [v for v in values if v is not None]
    missed = len(values) - len(found)
    mean = _fmt(sum(found) / len(found), 1) if found else "-"
    return str(len(values)) + (f" ({missed} missed)" if missed else ""), mean, str(max(found)) if found else "-"


def table(scores: list[Score]) -> str:
    rows = list(by_scenario(scores).values())
    total = Score("**all**", 0)
    for s in rows:
        total += s
    lines = ["| scenario | traces | samples | NIC precision | NIC recall | host precision | host recall | onsets "
             "(NIC + host) | latency mean | latency max | mode changes/h host | mode changes/h NICs | heavy verdicts |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in [*rows, total]:
        onsets, mean, worst = _latency(s.nic_latency + s.host_latency)
        lines.append(f"| {s.scenario} | {s.traces} | {s.samples} | {_fmt(s.nic.precision)} | {_fmt(s.nic.recall)} | "
                     f"{_fmt(s.host.precision)} | {_fmt(s.host.recall)} | {onsets} | {mean} | {worst} | "
                     f"{s.flaps_per_hour('host'):.1f} | {s.flaps_per_hour('nic'):.1f} | {s.heavy_verdicts} |")
    return "\n".join(lines)


def thresholds_from(args: argparse.Namespace) -> Thresholds:
    return Thresholds(**{name: getattr(args, name) for _, name, _ in DETECT_FLAGS})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", help="directory of *.trace.gz (or one trace)")
    defaults = Thresholds()
    for flag, name, kind in DETECT_FLAGS:
        p.add_argument(flag, dest=name, type=kind, default=getattr(defaults, name), metavar="N")
    args = p.parse_args(argv)
    paths = corpus(args.corpus) if os.path.isdir(args.corpus) else [args.corpus]
    if not paths:
        p.error(f"no *.trace.gz in {args.corpus}")
    t = thresholds_from(args)
    logging.getLogger("lxcwatch.sampler").setLevel(logging.ERROR)  # mode changes are what the table counts
    print(table(evaluate_all(paths, t)))
    print(f"\n{len(paths)} traces; enter_samples={t.enter_samples}, leave_samples={t.leave_samples}; grace "
          f"{t.enter_samples + 1} samples after an onset, {t.leave_samples + 1} after an offset.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
