"""Where a sample's and a scrape's CPU time goes on the bench tree (128 CPUs, 8 NICs x 32 queues, 1013 links):
each collector, the classifier and snapshot, the metric families, their text and its gzip, timed one by one in this
process (time.process_time, mean of --rounds), the counters moving before each round as in bench.py; with --cprofile, cProfile's top functions of sample + scrape too.

Usage: .venv/bin/python bench/breakdown.py [--cprofile] [--cpus N --nics N --queues N --veths N --containers N]"""

import argparse
import logging
import cProfile
import itertools
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
import synthetic_host  # noqa: E402
from bench import SCRAPE_HEADERS  # noqa: E402

from lxcwatch.collectors import ALL as COLLECTORS  # noqa: E402
from lxcwatch.core import classifier  # noqa: E402
from lxcwatch.export import exposition, metrics  # noqa: E402
from lxcwatch.export import web as http  # noqa: E402
from lxcwatch.export.http_server import Request  # noqa: E402
from lxcwatch.sampler import Sampler  # noqa: E402
from lxcwatch.sources.host import Sources  # noqa: E402


def mean_ms(action, rounds: int, before=lambda: None) -> float:
    """Mean CPU time of `action`; `before` runs ahead of each round, untimed."""
    total = 0.0
    for _ in range(rounds):
        before()
        t0 = time.process_time()
        action()
        total += time.process_time() - t0
    return total / rounds * 1000


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("lxcwatch.sampler").setLevel(logging.ERROR)  # the moving counters change NICs' modes: no news here
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cprofile", action="store_true", help="also print cProfile's top 30 functions (tottime)")
    parser.add_argument("--cpus", type=int, default=128)
    parser.add_argument("--nics", type=int, default=8)
    parser.add_argument("--queues", type=int, default=32)
    parser.add_argument("--veths", type=int, default=1000)
    parser.add_argument("--containers", type=int, default=0)
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="lxcwatch-profile-")
    try:
        host = synthetic_host.build(root, args.cpus, args.nics, args.queues, args.veths, args.containers)
        ticks = itertools.count(1)
        args.move = lambda: synthetic_host.advance(root, host, next(ticks))  # as bench.py's counters move
        sources = Sources.open(os.path.join(root, "proc"), os.path.join(root, "sys"), (os.path.join(root, "var", "lib", "lxc"),))
        try:
            report(sources, args)
        finally:
            sources.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def report(sources: Sources, args: argparse.Namespace) -> None:
    n = args.rounds
    sampler = Sampler(sources, list(COLLECTORS), 1.0)
    for _ in range(3):
        sampler.sample()
    agent = metrics.Agent("bench", "", "a")
    app = http.make_app(http.Exposition(sampler, agent), "/metrics")
    request = Request("GET", "/metrics", {k.lower(): v for k, v in SCRAPE_HEADERS.items()})
    move = args.move
    rows = [("sample (every collector, classifier, snapshot)", mean_ms(sampler.sample, n, move))]
    rows += [(f"  collector {name}", mean_ms(lambda: COLLECTORS[name].read(sources), n, move)) for name in sampler.collectors]
    prev = sampler.latest
    sampler.sample()
    snap = sampler.latest
    rows.append(("  classifier.step (rates of 128 CPUs and the NICs)",
                 mean_ms(lambda: classifier.step(sampler.verdict, prev, snap, sampler.thresholds), n)))
    rows.append(("scrape after a new sample (render + gzip)", mean_ms(lambda: (sampler.sample(), app(request)), n, move) - rows[0][1]))
    snap, verdict = sampler.current
    families = metrics.families(snap, agent, 0, verdict)
    writer = exposition.Writer()
    writer.render(families, True)
    body = writer.render(families, True)
    rows.append(("  metrics.families", mean_ms(lambda: metrics.families(snap, agent, 0, verdict), n)))
    latest = []

    def new_families():
        move()
        sampler.sample()
        latest[:] = metrics.families(*sampler.current[:1], agent, 0, sampler.current[1])

    rows.append(("  exposition text (Writer, after a new sample)", mean_ms(lambda: writer.render(latest, True), n, new_families)))
    rows.append(("  exposition text (Writer, the same families again)", mean_ms(lambda: writer.render(families, True), n)))
    app(request)  # the last of those samples, served once
    rows.append(("  exposition text (first time: every label escaped)", mean_ms(lambda: exposition.render(families, True), n)))
    rows.append(("  gzip of the text (ISA-L level 1, as the agent)", mean_ms(lambda: http.Rendered((), 0.0, body).compress(), n)))
    rows.append(("scrape of a snapshot already served", mean_ms(lambda: app(request), n)))
    print(f"{len(body) // 1024} KiB exposition; mean of {n} rounds, CPU ms (time.process_time):")
    for name, value in rows:
        print(f"{value:8.2f}  {name}")
    if args.cprofile:
        profile = cProfile.Profile()
        for _ in range(n):
            move()
            profile.enable()
            sampler.sample()
            app(request)
            profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    raise SystemExit(main())
