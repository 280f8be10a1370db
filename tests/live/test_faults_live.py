"""Faults on the live host: a veth deleted while the agent runs, and a netlink socket overflowed by link events."""

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import netlab
from tests.support.agent import Agent


@pytest.fixture
def live():
    reason = netlab.unavailable()
    if reason:
        pytest.skip(reason)
    suffix = secrets.token_hex(2)
    made = {"netns": []}
    yield suffix, made
    ours = [n for n in kernel_links() if n.startswith("lxwc") and suffix in n[4:]]
    if ours:  # deleting one end of a veth removes both; -force goes on past the peers already gone
        subprocess.run(["ip", "-force", "-batch", "-"], input="".join(f"link del {n}\n" for n in ours),
                       capture_output=True, text=True, timeout=120)
    for name in made["netns"]:
        netlab.ip("netns", "del", name, check=False)
    left = [n for n in netlab.leftovers() if n.startswith("lxwc") and n.endswith(suffix)]
    assert not left, f"left behind: {left}"


def live_agent(*extra: str) -> Agent:
    lxc = Path("/nonexistent-lxwc-lxc-path")  # no containers: this test is about links
    return Agent([f"--path.lxc={lxc}", "--sample.interval=100ms", *extra])


@pytest.mark.live
def test_live_veth_deleted_while_agent_runs(live):
    suffix, made = live
    ns, host, peer = f"lxwcns{suffix}", f"lxwch{suffix}", f"lxwcp{suffix}"
    made["netns"].append(ns)
    netlab.ip("netns", "add", ns)
    netlab.ip("link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns)
    netlab.ip("link", "set", host, "up")
    agent = live_agent()
    try:
        e = agent.wait_for(lambda e: host in e.devices(), f"{host} listed")
        assert e.value("lxcwatch_scrape_collector_success", collector="links") == 1
        netlab.ip("link", "del", host)
        e = agent.wait_for(lambda e: host not in e.devices(), f"{host} series to disappear")
        assert e.value("lxcwatch_scrape_collector_success", collector="links") == 1
        assert e.value("lxcwatch_scrape_collector_success", collector="netdev") == 1
        assert "lo" in e.devices()
        # the peer in the namespace went with it: the kernel agrees
        assert netlab.ip("-n", ns, "link", "show", peer, check=False).returncode != 0
    finally:
        agent.stop()


def kernel_links() -> set[str]:
    return {line.split(":")[1].strip().split("@")[0] for line in
            netlab.ip("-o", "link", "show").stdout.splitlines()}


@pytest.mark.slow
@pytest.mark.live
def test_live_netlink_overflow_resyncs(live):
    """Thousands of link events while the agent is stopped (SIGSTOP) overflow its netlink socket's receive
    buffer: the next read gets ENOBUFS, the agent dumps again, logs it, and its link set matches the kernel's."""
    suffix, made = live
    n = 1500
    names = [f"lxwc{i:04d}{suffix}" for i in range(n)]
    agent = live_agent()
    try:
        agent.wait_for(lambda e: "lo" in e.devices(), "lo listed")
        os.kill(agent.proc.pid, 19)  # SIGSTOP: events pile up in its socket buffer, unread
        try:
            for _ in range(2):  # each add + delete of a pair sends several RTM_NEWLINK/RTM_DELLINK
                netlab.ip_batch([f"link add {name}a type veth peer name {name}b" for name in names])
                netlab.ip_batch([f"link set {name}a up" for name in names])
                netlab.ip_batch([f"link del {name}a" for name in names])
            keep = names[:5]  # these stay: the resynced table must list them
            netlab.ip_batch([f"link add {name}a type veth peer name {name}b" for name in keep])
        finally:
            os.kill(agent.proc.pid, 18)  # SIGCONT
        deadline = time.monotonic() + 30
        while "ENOBUFS" not in agent.output():
            assert time.monotonic() < deadline, "no resync logged:\n" + agent.output()[-3000:]
            agent._pause()
        e = agent.wait_for(lambda e: {f"{k}a" for k in keep} <= e.devices(), "kept links listed", timeout=15)
        expected = {f"{k}{s}" for k in keep for s in "ab"}
        assert {d for d in kernel_links() if d.startswith("lxwc") and suffix in d[4:]} == expected  # the kernel's view
        exported = {d for d in e.devices() if d.startswith("lxwc") and suffix in d[4:]}
        assert exported == expected  # none of the 1500 deleted pairs is left in the resynced table
        assert e.value("lxcwatch_scrape_collector_success", collector="links") == 1
    finally:
        agent.stop()
    assert "links dumped again" in agent.output()
