"""The sampler keeps every other collector going when one source fails, and logs each failure once."""

import dataclasses
import logging

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
