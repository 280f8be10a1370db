"""docs/performance.md's bench commands, run as written: each prints its table and the figures it is about."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "performance.md").read_text()

pytestmark = pytest.mark.slow


def run(command: str, timeout: float) -> subprocess.CompletedProcess:
    assert command in DOCS, f"{command!r} is not in docs/performance.md any more"
    out = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_make_bench_runs_beside_node_exporter():
    """`make bench` (~8 min): both exporters read the whole tree, every target has its verdict."""
    out = run("make bench", 1800)
    assert re.search(r"^\| Devices seen \(link_info / node_network_info\) \| 1013 \| 1013 \|", out.stdout, re.M), out.stdout
    for client in (r"wrk \(C, one thread\)", "50 Python threads"):  # the agent's figure, and test_load.py's load
        assert re.search(rf"^\| 50 scrapers at once, back to back, 20 s, from {client} \| p50 [\d.]+ ms, p99 [\d.]+ ms, "
                         r"max [\d.]+ ms; \d+ scrapes/s \| 0 errors", out.stdout, re.M), out.stdout
    verdicts = re.findall(r"^- (.*): \*\*(met|MISSED)\*\*", out.stdout, re.M)
    assert [v[0].split(" <")[0].split(" x ")[0] for v in verdicts] == [
        "CPU per sample", "CPU per scrape", "average CPU", "50 concurrent scrapers (back to back, wrk (C, one thread)), p99", "RSS"], verdicts


def test_make_bench_scaling_measures_every_size():
    out = run("make bench-scaling", 1800)
    rows = re.findall(r"^\| (typical host|CPUs|links|containers|bench tree \(make bench\)) \| (\d+) \|.*\| ([\d.]+) ms \| "
                      r"([\d.]+) ms \|$", out.stdout, re.M)
    assert [(r[0], int(r[1])) for r in rows] == [("typical host", 32), ("CPUs", 64), ("CPUs", 128), ("CPUs", 256),
                                                 ("links", 32), ("links", 32), ("links", 32), ("containers", 32),
                                                 ("containers", 32), ("bench tree (make bench)", 128)], out.stdout
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows)


def test_the_profile_names_where_the_time_goes():
    out = run(".venv/bin/python bench/breakdown.py --cprofile", 600)
    for step in ("collector links", "collector interrupts", "metrics.families", "gzip of the text",
                 "scrape of a snapshot already served"):
        assert re.search(rf"^\s+[\d.]+\s+{re.escape(step)}", out.stdout, re.M), step
    assert "Ordered by: internal time" in out.stdout  # cProfile's table


def test_the_threads_table_names_each_thread():
    out = run(".venv/bin/python bench/threads.py", 300)
    rows = dict(re.findall(r"^\| (\S+) \| ([\d.]+) \| [\d.]+ \| [\d.]+ \|$", out.stdout, re.M))
    assert {"reader", "sampler", "http", "http-worker-N", "main"} <= set(rows), out.stdout
    assert float(rows["reader"]) > 0, out.stdout  # the collectors read there, counters moving, nobody connected
