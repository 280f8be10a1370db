"""Live kernel tests: the real agent against a bridge, veths and namespaces this module creates and removes."""

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from tests.support import netlab
from tests.support.agent import Agent, lxcwatch_binary

pytestmark = pytest.mark.live

PINGS = 20
COLLECTORS = {"softnet", "interrupts", "softirqs", "netdev", "links", "napi", "kthreads", "napi_poll", "lxc"}  # docs/contract.md
PACKET_COUNTERS = ("lxcwatch_link_receive_packets_total", "lxcwatch_link_transmit_packets_total")


@dataclass(frozen=True)
class Topology:
    bridge: str
    ns1: str
    ns2: str
    host1: str  # promiscuous on request and as a bridge port
    host2: str  # promiscuous only as a bridge port
    addr2: str  # ns2's address; the only destination of the test's traffic


@pytest.fixture
def topo(lab) -> Topology:
    """bridge <- host1/host2 veths; their peers live in ns1/ns2 with the lab's only addresses."""
    bridge = lab.bridge("br")
    ns1, ns2 = lab.netns("n1"), lab.netns("n2")
    host1, _ = lab.veth("h1", "p1", bridge=bridge, netns=ns1, address=f"{lab.subnet}.1/24")
    host2, _ = lab.veth("h2", "p2", bridge=bridge, netns=ns2, address=f"{lab.subnet}.2/24")
    netlab.ip("link", "set", host1, "promisc", "on")
    return Topology(bridge, ns1, ns2, host1, host2, f"{lab.subnet}.2")


@pytest.fixture
def agent():
    agent = Agent(["--sample.interval=200ms"])
    yield agent
    agent.stop()


def ping(t: Topology) -> None:
    """Traffic strictly between the lab's namespaces: ns1 pings ns2."""
    out = subprocess.run(["ip", "netns", "exec", t.ns1, "ping", "-n", "-q", "-c", str(PINGS), "-i", "0.01", "-W", "2", t.addr2],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def info(e, device: str, **labels: str) -> list:
    return e.find("lxcwatch_link_info", device=device, **labels)


def test_kernel_sees_the_lab_as_built(topo):
    bridge, k1, k2 = (netlab.kernel_link(n) for n in (topo.bridge, topo.host1, topo.host2))
    assert bridge["linkinfo"]["info_kind"] == "bridge"
    assert not json.loads(netlab.ip("-j", "addr", "show", "dev", topo.bridge).stdout)[0].get("addr_info")
    assert [k["linkinfo"]["info_kind"] for k in (k1, k2)] == ["veth", "veth"]
    assert [k.get("master") for k in (k1, k2)] == [topo.bridge, topo.bridge]
    assert ("PROMISC" in k1["flags"], "PROMISC" in k2["flags"]) == (True, False)  # rtnetlink: user-requested only
    assert (k1["promiscuity"], k2["promiscuity"]) == (2, 1)  # request + bridge, bridge only
    assert netlab.effective_promiscuous(topo.host1) and netlab.effective_promiscuous(topo.host2)


@pytest.mark.skipif(shutil.which("ping") is None, reason="ping (Debian iputils-ping) is not installed")
def test_bridge_ports_promiscuity_and_counters(topo, agent):
    e = agent.scrape()
    assert info(e, topo.bridge, kind="bridge")
    for host in (topo.host1, topo.host2):
        k = netlab.kernel_link(host)
        assert info(e, host, kind=k["linkinfo"]["info_kind"], master=k["master"]), host
        assert e.value("lxcwatch_link_promiscuity", device=host) == k["promiscuity"], host
        assert e.value("lxcwatch_link_promiscuous", device=host) == int(netlab.effective_promiscuous(host)) == 1, host
    assert e.value("lxcwatch_link_promiscuity", device=topo.host1) == 2
    assert e.value("lxcwatch_link_promiscuity", device=topo.host2) == 1
    assert e.value("lxcwatch_bridge_ports", bridge=topo.bridge) == len(netlab.kernel_ports(topo.bridge)) == 2

    def moved(now) -> bool:
        return all(now.value(m, device=h) - e.value(m, device=h) >= PINGS
                   for m in PACKET_COUNTERS for h in (topo.host1, topo.host2))

    ping(topo)
    after = agent.wait_for(moved, f"host veth packet counters to move by {PINGS}", show="lxw")
    success = {s.labels["collector"]: s.value for s in after.find("lxcwatch_scrape_collector_success")}
    assert success == dict.fromkeys(COLLECTORS, 1.0)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) is not installed")
def test_promtool_accepts_the_live_exposition(topo, agent):
    text = agent.wait_for(lambda e: info(e, topo.host1), "the lab in the exposition").text
    out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_link_events_reach_the_exposition(topo, lab, agent):
    agent.wait_for(lambda e: info(e, topo.host2, master=topo.bridge), "host2 as a bridge port")
    netlab.ip("link", "set", topo.host2, "nomaster")
    host3, peer3 = lab.veth("h3", "p3", bridge=topo.bridge, up=False)

    k2, ports = netlab.kernel_link(topo.host2), netlab.kernel_ports(topo.bridge)
    assert "master" not in k2 and ports == {topo.host1, host3}

    def settled(e) -> bool:
        return bool(info(e, topo.host2, master="") and info(e, host3, kind="veth", master=topo.bridge)
                    and e.value("lxcwatch_bridge_ports", bridge=topo.bridge) == len(ports)
                    and e.value("lxcwatch_link_promiscuity", device=topo.host2) == k2["promiscuity"]
                    and e.value("lxcwatch_link_promiscuous", device=topo.host2)
                    == int(netlab.effective_promiscuous(topo.host2)))

    agent.wait_for(settled, "host2 detached and host3 attached", show="lxw")

    netlab.ip("link", "del", host3)
    ports = netlab.kernel_ports(topo.bridge)
    assert ports == {topo.host1}

    def gone(e) -> bool:
        return not {host3, peer3} & e.devices() and e.value("lxcwatch_bridge_ports", bridge=topo.bridge) == len(ports)

    agent.wait_for(gone, f"{host3} and {peer3} to disappear", show="lxw")


def proc_stat_cpus() -> list[int]:
    with open("/proc/stat") as f:
        return sorted(int(m.group(1)) for line in f if (m := re.match(r"cpu(\d+) ", line)))


def test_status_json_lists_nics_and_every_online_cpu():
    out = subprocess.run([lxcwatch_binary(), "status", "--json", "--sample.interval=200ms"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert isinstance(doc["nics"], list) and isinstance(doc["cpus"], list)
    assert sorted(c["cpu"] for c in doc["cpus"]) == proc_stat_cpus()
    for nic in doc["nics"]:  # physical NICs only: a bus device behind each
        assert os.path.exists(f"/sys/class/net/{nic['device']}/device"), nic["device"]
    assert doc["failed_collectors"] == {}
