"""How lxcwatch's cost grows with CPUs, links and containers: CPU per sample and per scrape on synthetic trees of a
few sizes (bench/synthetic_host.py), measured in this process the way the agent does the work.

Per size: one sample of every collector (in this thread, no worker threads), then one gzip OpenMetrics scrape of the
new snapshot through the agent's HTTP app (render, compress), each timed with time.process_time; the median of
--samples rounds after three warm-up rounds, the counters moved before each (synthetic_host.advance, untimed). The HTTP server and the sampler's threads are not in these figures:
bench/bench.py measures the agent process as a whole."""

import argparse
import logging
import datetime
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
import synthetic_host  # noqa: E402
from bench import SCRAPE_HEADERS, load_average, machine, write_docs  # noqa: E402

from lxcwatch.collectors import ALL as COLLECTORS  # noqa: E402
from lxcwatch.export import metrics  # noqa: E402
from lxcwatch.export import web as http  # noqa: E402
from lxcwatch.export.http_server import Request  # noqa: E402
from lxcwatch.sampler import Sampler  # noqa: E402
from lxcwatch.sources.host import Sources  # noqa: E402

RESULT = REPO / "bench" / "out" / "scaling.md"
MARKERS = ("<!-- bench:scaling:start -->", "<!-- bench:scaling:end -->")
# (what grows, CPUs, NICs, queues per NIC, veths, containers)
SIZES = (
    ("typical host", 32, 2, 8, 100, 100),
    ("CPUs", 64, 2, 8, 100, 100),
    ("CPUs", 128, 2, 8, 100, 100),
    ("CPUs", 256, 2, 8, 100, 100),
    ("links", 32, 2, 8, 500, 100),
    ("links", 32, 2, 8, 1000, 100),
    ("links", 32, 2, 8, 2000, 100),
    ("containers", 32, 2, 8, 500, 250),
    ("containers", 32, 2, 8, 500, 500),
    ("bench tree (make bench)", 128, 8, 32, 1000, 0),
)


def measure(root: str, host: synthetic_host.Host, rounds: int) -> dict:
    sources = Sources.open(os.path.join(root, "proc"), os.path.join(root, "sys"), (os.path.join(root, "var", "lib", "lxc"),))
    try:
        sampler = Sampler(sources, list(COLLECTORS), 1.0)
        app = http.make_app(http.Exposition(sampler, metrics.Agent("bench", "", "a")), "/metrics")
        request = Request("GET", "/metrics", {k.lower(): v for k, v in SCRAPE_HEADERS.items()})
        samples, scrapes = [], []
        for i in range(rounds + 3):
            synthetic_host.advance(root, host, i + 1)  # the counters move between samples, as in bench.py
            t0 = time.process_time()
            sampler.sample()
            t1 = time.process_time()
            response = app(request)
            t2 = time.process_time()
            if i >= 3:
                samples.append(t1 - t0)
                scrapes.append(t2 - t1)
        failed = sorted(name for name, r in sampler.latest.collectors.items() if not r.success)
        plain = b"".join(app(Request("GET", "/metrics", {})).body).decode()
        return {"sample": statistics.median(samples), "scrape": statistics.median(scrapes), "failed": failed,
                "series": sum(1 for line in plain.splitlines() if line and not line.startswith("#")),
                "gzip": sum(map(len, response.body))}
    finally:
        sources.close()


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("lxcwatch.sampler").setLevel(logging.ERROR)  # the moving counters change NICs' modes: no news here
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20, help="measured rounds per size (default 20)")
    parser.add_argument("--tmpdir", help="where to build the trees (default: the system temp dir)")
    parser.add_argument("--write-docs", action="store_true", help="also rewrite the scaling table in docs/performance.md")
    args = parser.parse_args(argv)
    started, load_start = datetime.datetime.now(datetime.timezone.utc), load_average()
    rows = ["| grows | CPUs | NICs x queues | links | containers | series | gzip body | CPU per sample | "
            "CPU per scrape (render + gzip) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for what, cpus, nics, queues, veths, containers in SIZES:
        workdir = tempfile.mkdtemp(prefix="lxcwatch-scaling-", dir=args.tmpdir)
        try:
            host = synthetic_host.build(workdir, cpus, nics, queues, veths, containers)
            r = measure(workdir, host, args.samples)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if r["failed"]:
            print(f"scaling: collectors failed on {what} {cpus}/{veths}/{containers}: {r['failed']}", file=sys.stderr)
            return 1
        rows.append(f"| {what} | {cpus} | {nics} x {queues} | {len(host.links)} | {containers} | {r['series']} | "
                    f"{r['gzip'] // 1024} KiB | {r['sample'] * 1000:.1f} ms | {r['scrape'] * 1000:.1f} ms |")
        print(rows[-1], file=sys.stderr, flush=True)
    markdown = "\n".join([
        f"- Run of {started:%Y-%m-%d %H:%M} UTC on {machine()}; `make bench-scaling` (bench/scaling.py), "
        f"median of {args.samples} rounds per size.",
        f"- Load average at the start / end: {load_start} / {load_average()} (the two vCPUs are shared).",
        "", *rows, ""])
    print(markdown)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(markdown)
    if args.write_docs:
        write_docs(markdown, MARKERS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
