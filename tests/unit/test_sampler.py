"""The sampler keeps every other collector going when one source fails, and logs each failure once."""

import dataclasses
import logging
import threading
import time

import pytest

from lxcwatch import collectors
from lxcwatch import sampler
from lxcwatch.errors import ParseError


@pytest.fixture
def fake_collectors(monkeypatch):
    state = {"links": PermissionError(13, "Permission denied")}

    def links(_):
        if state["links"]:
            raise state["links"]
        return {}

    def netdev(_):
        return {}

    def softnet(_):
        raise ParseError("net/softnet_stat", "expected at least 9 columns, found 4", 3)

    fakes = {name: dataclasses.replace(collectors.ALL[name], read=read)
             for name, read in (("links", links), ("netdev", netdev), ("softnet", softnet))}
    monkeypatch.setattr(sampler, "COLLECTORS", fakes)
    return state


def test_failures_are_isolated_and_logged_once_per_change(fake_collectors, caplog):
    s = sampler.Sampler(sources=None, collectors=["links", "netdev", "softnet"], interval=1.0)
    with caplog.at_level(logging.INFO, logger="lxcwatch.sampler"):
        for _ in range(3):
            snap = s.sample()
        assert [snap.ok(n) for n in ("links", "netdev", "softnet")] == [False, True, False]
        assert snap.collectors["links"].error == "PermissionError: [Errno 13] Permission denied"
        assert snap.collectors["softnet"].error == "net/softnet_stat:3: expected at least 9 columns, found 4"
        fake_collectors["links"] = OSError(105, "No buffer space available")  # the error changes: log again
        s.sample()
        fake_collectors["links"] = None
        s.sample()
        s.sample()
    events = [(r.getMessage(), r.collector) for r in caplog.records]
    assert events == [
        ("collector failed", "links"),
        ("collector failed", "softnet"),
        ("collector failed", "links"),
        ("collector recovered", "links"),
    ]
    assert s.latest.seq == 6


@pytest.fixture
def timed_collectors(monkeypatch):
    """links records when it reads and whether netdev ran meanwhile; netdev blocks while `release` is clear."""
    state = {"links": [], "netdev": [], "overlap": [], "netdev_ran": threading.Event(), "release": threading.Event()}
    state["release"].set()

    def links(_):
        state["links"].append(time.monotonic())
        state["overlap"].append(state["netdev_ran"].wait(0.1))  # set only if netdev read while links did
        return {}

    def netdev(_):
        state["netdev"].append(time.monotonic())
        state["netdev_ran"].set()
        state["release"].wait()
        return {}

    fakes = {name: dataclasses.replace(collectors.ALL[name], read=read)
             for name, read in (("links", links), ("netdev", netdev), ("softnet", lambda _: {}))}
    monkeypatch.setattr(sampler, "COLLECTORS", fakes)
    yield state
    state["release"].set()


def test_collectors_read_in_turn(timed_collectors):
    s = sampler.Sampler(sources=None, collectors=["links", "netdev", "softnet"], interval=1.0, deadline=5.0)
    s.sample()
    assert timed_collectors["overlap"] == [False]  # links had returned before netdev started
    assert len(timed_collectors["netdev"]) == 1


def test_a_stuck_read_makes_the_others_read_again_and_restamps_the_sample(timed_collectors):
    """Readings taken before a read stuck for the deadline are that much older than the rest: rates over one stamp
    would jump, so the collectors not stuck read again and the sample is stamped after the wait."""
    deadline = 0.2
    s = sampler.Sampler(sources=None, collectors=["links", "netdev", "softnet"], interval=1.0, deadline=deadline)
    timed_collectors["release"].clear()
    snap = s.sample()
    stuck_at = timed_collectors["netdev"][0]
    assert len(timed_collectors["links"]) == 2 and timed_collectors["links"][1] >= stuck_at + deadline
    assert snap.monotonic >= stuck_at + deadline
    assert snap.collectors["netdev"].error == "stuck: no answer within 0.2s"
    assert [snap.ok(n) for n in ("links", "softnet")] == [True, True]
    snap = s.sample()  # still stuck: skipped at once, no second read of netdev, links read once
    assert len(timed_collectors["links"]) == 3 and len(timed_collectors["netdev"]) == 1
    assert not snap.ok("netdev")


@pytest.fixture
def thread_of_reads(monkeypatch):
    """Each collector records the thread it read in; netdev blocks while `release` is clear."""
    state = {"threads": [], "release": threading.Event()}
    state["release"].set()

    def reader(name):
        def read(_):
            state["threads"].append((name, threading.get_native_id()))
            if name == "netdev":
                state["release"].wait()
            return {}
        return read

    fakes = {name: dataclasses.replace(collectors.ALL[name], read=reader(name)) for name in ("links", "netdev", "softnet")}
    monkeypatch.setattr(sampler, "COLLECTORS", fakes)
    yield state
    state["release"].set()


def comm(native_id: int) -> str:
    with open(f"/proc/self/task/{native_id}/comm") as f:
        return f.read().strip()


def test_a_sample_hands_its_reads_to_one_reader_thread_reused_sample_after_sample(thread_of_reads):
    """One hand-over per sample, not one per collector: a hand-over costs ~60 us of CPU on a VM."""
    s = sampler.Sampler(sources=None, collectors=["links", "netdev", "softnet"], interval=1.0, deadline=5.0)
    for _ in range(5):
        s.sample()
    threads = {tid for _, tid in thread_of_reads["threads"]}
    assert len(thread_of_reads["threads"]) == 15 and len(threads) == 1
    assert threads != {threading.get_native_id()}
    assert comm(threads.pop()) == "reader"
    s.stop()


def test_a_stuck_reader_is_named_for_its_collector_and_rejoins_the_pool_when_it_returns(thread_of_reads, monkeypatch):
    batches = []
    monkeypatch.setattr(sampler, "_Batch", lambda *a, real=sampler._Batch: batches.append(real(*a)) or batches[-1])
    s = sampler.Sampler(sources=None, collectors=["links", "netdev", "softnet"], interval=1.0, deadline=0.2)
    s.sample()
    thread_of_reads["release"].clear()
    snap = s.sample()
    netdev = [tid for name, tid in thread_of_reads["threads"] if name == "netdev"]
    assert not snap.ok("netdev") and len(netdev) == 2  # the others read again at once: netdev was not read again
    stuck = ("netdev", netdev[-1])
    assert comm(stuck[1]) == "read-netdev"
    running = threading.active_count()
    for _ in range(3):
        assert not s.sample().ok("netdev")  # no second read behind the stuck one, and no new thread
    assert threading.active_count() == running
    thread_of_reads["release"].set()
    stuck_batch = next(b for b in batches if b.abandoned and "netdev" in [r.name for r in b.reads])
    assert stuck_batch.finished.wait(5)  # the read returned, its reader is back in the pool
    assert s.sample().ok("netdev")
    assert comm(stuck[1]) == "reader" and threading.active_count() == running
    s.stop()
