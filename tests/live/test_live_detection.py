"""Live proof on the real kernel: a flood between the test's own namespaces, with net.core.netdev_budget
lowered so the kernel squeezes, drives the host verdict to NAPI-heavy within a few samples and back."""

import subprocess
from pathlib import Path

import pytest

from tests.support.agent import Agent

pytestmark = [pytest.mark.live, pytest.mark.slow]

BUDGET = Path("/proc/sys/net/core/netdev_budget")
ENTER, LEAVE = 3, 5  # --detect.enter-samples / --detect.leave-samples for this test
SLACK = 2  # scrape timing: the scrape that shows a change may come a sample or two after it


@pytest.fixture
def small_budget():
    """net.core.netdev_budget = 4 packets per net_rx_action run, restored afterwards whatever happens.
    A ping flood overruns 4; the agent's own scrapes on loopback do not (they would overrun 1)."""
    before = BUDGET.read_text()
    BUDGET.write_text("4\n")
    yield
    BUDGET.write_text(before)
    assert BUDGET.read_text() == before


def flood(ns: str, address: str) -> list[subprocess.Popen]:
    """Two ping floods from ns to `address` (the other lab namespace), bounded by count and deadline."""
    cmd = ["ip", "netns", "exec", ns, "ping", "-f", "-q", "-n", "-c", "2000000", "-w", "60", address]
    return [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]


def squeezes(exposition) -> float:
    return sum(s.value for s in exposition.find("lxcwatch_softnet_times_squeezed_total"))


def test_flood_drives_the_host_verdict_heavy_and_back(lab, small_budget):
    bridge = lab.bridge("br")
    ns1, ns2 = lab.netns("f1"), lab.netns("f2")
    lab.veth("h1", "p1", bridge=bridge, netns=ns1, address=f"{lab.subnet}.1/24")
    lab.veth("h2", "p2", bridge=bridge, netns=ns2, address=f"{lab.subnet}.2/24")
    agent = Agent(["--sample.interval=250ms", f"--detect.enter-samples={ENTER}", f"--detect.leave-samples={LEAVE}"])
    pings = []
    try:
        quiet = agent.wait_for(lambda e: e.value("lxcwatch_samples_total") >= 3, "three quiet samples")
        assert quiet.value("lxcwatch_host_napi_heavy") == 0
        changes = quiet.value("lxcwatch_host_mode_changes_total")

        pings = flood(ns1, f"{lab.subnet}.2")
        # Onset is when the kernel starts squeezing, as the agent itself reports it: on a busy machine the
        # flood may take a while to get going, and that is not detection latency.
        base = squeezes(quiet)
        onset = agent.wait_for(lambda e: squeezes(e) - base >= 100, "the kernel to squeeze", timeout=30)
        started = onset.value("lxcwatch_samples_total") - 1  # the squeezes happened during the previous sample
        heavy = agent.wait_for(lambda e: e.value("lxcwatch_host_napi_heavy") == 1, "the host verdict to turn heavy",
                               timeout=30, show="host_napi")
        latency = heavy.value("lxcwatch_samples_total") - started
        assert latency <= ENTER + SLACK, f"heavy after {latency} samples"
        assert heavy.value("lxcwatch_host_napi_reason", reason="softnet_pressure") == 1
        assert heavy.value("lxcwatch_host_napi_heavy_since_timestamp_seconds") is not None
        assert heavy.value("lxcwatch_host_mode_changes_total") == changes + 1

        for p in pings:
            p.kill()
            p.wait(timeout=10)
        stopped = agent.scrape().value("lxcwatch_samples_total")
        calm = agent.wait_for(lambda e: e.value("lxcwatch_host_napi_heavy") == 0, "the host verdict to clear",
                              timeout=20, show="host_napi")
        assert calm.value("lxcwatch_samples_total") - stopped <= LEAVE + SLACK
        assert calm.value("lxcwatch_host_napi_reason", reason="none") == 1
        assert calm.value("lxcwatch_host_mode_changes_total") == changes + 2
    finally:
        for p in pings:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        agent.stop()
