"""lxcwatch record on the live host: a recording that replays into a tree the agent reads, and --max-size."""

import os
import time

import pytest

from tests.support.agent import Agent
from lxcwatch.traces import trace
from tests.e2e.test_record_replay import lxcwatch, path_args


def record_live(tmp_path, attempts: int = 3) -> list[str]:
    """Records the live host for ~0.5 s; returns its interfaces, retrying while they change under the recording
    (other tests on this host create and delete bridges and veths)."""
    for _ in range(attempts):
        before = sorted(os.listdir("/sys/class/net"))
        out = lxcwatch("record", "--out", str(tmp_path / "live.trace.gz"), "--duration", "500ms",
                       "--sample.interval", "100ms")
        assert out.returncode == 0, out.stderr
        if sorted(os.listdir("/sys/class/net")) == before:
            return before
    pytest.skip("the host's interfaces kept changing during the recording")


def test_a_live_recording_replays_into_a_tree_the_agent_reads(tmp_path):
    interfaces = record_live(tmp_path)
    header, *records = trace.read(str(tmp_path / "live.trace.gz"))
    assert header["interval"] == 0.1 and header["kernel"] == os.uname().release
    assert 1 <= len(records) <= 5 and records[0].t == 0.0  # a loaded host may skip a slot
    out = lxcwatch("replay", str(tmp_path / "live.trace.gz"), "--out-root", str(tmp_path / "root"), "--speed", "0")
    assert out.returncode == 0, out.stderr

    root = tmp_path / "root"
    agent = Agent([*path_args(root), "--sample.interval=50ms"])
    try:
        seen = agent.wait_for(lambda e: e.value("lxcwatch_samples_total") >= 2, "two samples")
    finally:
        agent.stop()
    assert {s.labels["device"] for s in seen.find("lxcwatch_link_info")} == set(interfaces)
    success = {s.labels["collector"]: s.value for s in seen.find("lxcwatch_scrape_collector_success")}
    assert success and all(value == 1 for value in success.values()), success


def test_max_size_stops_the_recording_early_with_a_notice(tmp_path):
    one = tmp_path / "one.trace.gz"
    out = lxcwatch("record", "--out", str(one), "--duration", "50ms", "--sample.interval", "50ms")
    assert out.returncode == 0, out.stderr
    limit = 3 * os.path.getsize(one)  # room for the first sample and a few changes of the live /proc files

    path = tmp_path / "t.trace.gz"
    started = time.monotonic()
    out = lxcwatch("record", "--out", str(path), "--duration", "60s", "--sample.interval", "10ms",
                   "--max-size", str(limit))
    assert time.monotonic() - started < 30
    assert out.returncode == 0, out.stderr
    *notices, last = out.stderr.splitlines()  # a host without the tracepoint says so once, before
    assert last.startswith(f"lxcwatch: --max-size {limit} reached: stopped after "), out.stderr
    assert all(n.startswith("lxcwatch: no NAPI poll counts in the trace: ") for n in notices) and len(notices) <= 1
    assert os.path.getsize(path) <= limit
    header, *records = trace.read(str(path))
    assert len(records) >= 1


def test_max_size_smaller_than_the_first_sample_records_nothing(tmp_path):
    out = lxcwatch("record", "--out", str(tmp_path / "t.trace.gz"), "--duration", "1s", "--max-size", "100B")
    assert out.returncode == 1
    assert out.stderr == "lxcwatch: error: --max-size 100B is too small for the first sample; nothing recorded\n"
    assert not (tmp_path / "t.trace.gz").exists()
