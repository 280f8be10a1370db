"""The text writer (lxcwatch/export/exposition.py) against prometheus_client's on the same families: the bench tree's
exposition (128 CPUs, 8 NICs x 32 queues, 1000 veths), rendered N times by each; CPU time per rendering and the ratio.

    python bench/writer.py
"""

import sys
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

sys.path.insert(0, str(Path(__file__).parent))
import synthetic_host  # noqa: E402

from lxcwatch import collectors  # noqa: E402
from lxcwatch.export import exposition, metrics  # noqa: E402
from lxcwatch.sampler import Sampler  # noqa: E402
from lxcwatch.sources.host import Sources  # noqa: E402

ROUNDS = 20


class Families:
    """A prometheus_client collector yielding the same families the agent renders."""

    def __init__(self, families):
        self.families = families

    def collect(self):
        for f in self.families:
            kind = CounterMetricFamily if f.type == "counter" else GaugeMetricFamily
            family = kind(f.name, f.help, labels=f.labels)
            for values, value in f.samples:
                family.add_metric(values, value)
            yield family


def cpu_ms(render) -> float:
    start = time.process_time()
    for _ in range(ROUNDS):
        render()
    return (time.process_time() - start) / ROUNDS * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as tree:
        synthetic_host.build(tree, 128, 8, 32, 1000)
        (Path(tree) / "lxc").mkdir()
        sampler = Sampler(Sources.open(f"{tree}/proc", f"{tree}/sys", (f"{tree}/lxc",)), list(collectors.ALL), 1.0)
        sampler.sample()
        snap = sampler.sample()
        families = metrics.families(snap, metrics.Agent("bench", "", ""), verdict=sampler.verdict)
    registry = CollectorRegistry()
    registry.register(Families(families))
    samples = sum(len(f.samples) for f in families)
    ours = cpu_ms(lambda: exposition.render(families, openmetrics=False))
    theirs = cpu_ms(lambda: generate_latest(registry))
    print(f"{samples} samples in {len(families)} families; CPU per rendering, mean of {ROUNDS}:")
    print(f"  lxcwatch text writer    {ours:6.1f} ms")
    print(f"  prometheus_client       {theirs:6.1f} ms  ({theirs / ours:.1f} x)")


if __name__ == "__main__":
    main()
