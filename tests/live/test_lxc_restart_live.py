"""A real busybox container restarted under the real agent: with LXC's random veth names (vethXXXXXX), its series
are the same after the restart, but for the host name in lxcwatch_container_veth_info (docs/metrics.md#cardinality)."""

import pytest

from tests.support import lxcenv
from tests.support.agent import Agent

pytestmark = [pytest.mark.live, pytest.mark.slow]

VETHS_OFF = ["--collector.netdev.device-exclude=^veth", "--collector.links.device-exclude=^veth"]


@pytest.fixture
def env():
    with lxcenv.lab_with_lxc() as lxc:
        yield lxc


def container_series(e, name: str) -> set:
    """The container's series (name and labels; values change), the veth's host name left out of veth_info."""
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items()
                                  if not (s.name == "lxcwatch_container_veth_info" and k == "device"))))
            for s in e.samples if s.labels.get("container") == name}


def running_with_veth(agent, ct):
    device = ct.link()  # the host end as lxc-info reports it
    e = agent.wait_for(lambda e: e.value("lxcwatch_container_running", container=ct.name) == 1
                       and e.find("lxcwatch_container_veth_info", container=ct.name, interface="eth0", device=device)
                       and e.find("lxcwatch_container_receive_packets_total", container=ct.name, interface="eth0")
                       and e.find("lxcwatch_container_memory_bytes", container=ct.name),
                       f"{ct.name} running with its veth {device}", timeout=20, show=ct.name)
    return device, e


def test_a_restart_keeps_the_containers_series(env):
    path = env.lxc_path()
    ct = env.create("rs", path)
    agent = Agent([f"--path.lxc={path}", "--sample.interval=200ms", "--no-recorder", "--no-kernel.events", *VETHS_OFF])
    try:
        ct.start()
        first, before = running_with_veth(agent, ct)
        assert first.startswith("veth")  # LXC's generated name: a restart makes a new one
        ct.lxc("lxc-stop", "-k")
        agent.wait_for(lambda e: e.value("lxcwatch_container_running", container=ct.name) == 0, "stopped",
                       show=ct.name)
        ct.start()
        second, after = running_with_veth(agent, ct)
    finally:
        agent.stop()
    assert second != first, "LXC reused the veth name; the restart proves nothing"
    assert len(container_series(before, ct.name)) >= 26  # 27 with the cgroup's memory limit, absent here
    assert container_series(after, ct.name) == container_series(before, ct.name)
    for e, device in ((before, first), (after, second)):
        assert device not in e.devices() - {s.labels["device"] for s in e.find("lxcwatch_container_veth_info")}
