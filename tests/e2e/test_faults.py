"""Faults under the real agent process: files, processes and interfaces vanishing mid-run, and lost netlink
events. Each time the agent keeps serving and lxcwatch_scrape_collector_success tells the story."""

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import netlab
from tests.support.agent import Agent

from tests.support.paths import HOSTS
COLLECTORS = ("softnet", "softirqs", "interrupts", "netdev", "links", "napi", "kthreads", "napi_poll", "lxc")


def copy_tree(name: str, tmp_path: Path) -> Path:
    root = tmp_path / name
    shutil.copytree(HOSTS / name, root, symlinks=True)
    return root


def tree_agent(root: Path) -> Agent:
    return Agent([f"--path.procfs={root / 'proc'}", f"--path.sysfs={root / 'sys'}",
                  f"--path.lxc={root / 'var' / 'lib' / 'lxc'}", "--sample.interval=50ms"])


def success(e, collector: str) -> float | None:
    return e.value("lxcwatch_scrape_collector_success", collector=collector)


def all_ok(e) -> bool:
    return all(success(e, c) == 1 for c in COLLECTORS)


def samples(e) -> float:
    return e.value("lxcwatch_samples_total")


def test_procfs_file_vanishes_and_comes_back(tmp_path):
    root = copy_tree("tg3-pair", tmp_path)
    softnet = root / "proc" / "net" / "softnet_stat"
    agent = tree_agent(root)
    try:
        e = agent.wait_for(all_ok, "every collector to succeed")
        assert e.find("lxcwatch_softnet_processed_total", cpu="2")
        softnet.rename(softnet.with_name("softnet_stat.gone"))
        e = agent.wait_for(lambda e: success(e, "softnet") == 0, "softnet to fail")
        assert [c for c in COLLECTORS if success(e, c) != 1] == ["softnet"]
        assert "eth0" in e.devices()  # the rest keeps serving
        before = samples(e)
        e = agent.wait_for(lambda e: samples(e) >= before + 5, "sampling to go on while softnet fails")
        assert success(e, "softnet") == 0
        softnet.with_name("softnet_stat.gone").rename(softnet)
        e = agent.wait_for(lambda e: success(e, "softnet") == 1, "softnet to recover")
        assert all_ok(e) and e.find("lxcwatch_softnet_processed_total", cpu="2")
    finally:
        agent.stop()
    log = agent.output()
    failed = [line for line in log.splitlines() if "collector failed" in line]
    assert len(failed) == 1 and "collector=softnet" in failed[0] and str(softnet) in failed[0], failed
    assert sum("collector recovered" in line and "collector=softnet" in line for line in log.splitlines()) == 1


def test_container_init_proc_dir_vanishes(tmp_path):
    """web's init (PID 4102) exits: its /proc/4102 goes away while its monitor (4100) still lists it."""
    root = copy_tree("lxc-hybrid", tmp_path)
    agent = tree_agent(root)
    try:
        e = agent.wait_for(lambda e: e.value("lxcwatch_container_state", container="web", state="RUNNING") == 1
                           and all_ok(e), "web RUNNING")
        assert e.value("lxcwatch_container_init_pid", container="web") == 4102
        shutil.rmtree(root / "proc" / "4102")
        # its monitor is still there: STOPPING, as LXC says until the monitor exits (running stays 1, like lxc-ls)
        e = agent.wait_for(lambda e: e.value("lxcwatch_container_state", container="web", state="STOPPING") == 1,
                           "web STOPPING", show="container=\"web\"")
        assert e.value("lxcwatch_container_state_changes_total", container="web") == 1
        assert e.value("lxcwatch_container_init_pid", container="web") is None
        assert all_ok(e), [c for c in COLLECTORS if success(e, c) != 1]
        assert e.value("lxcwatch_container_state", container="cache", state="RUNNING") == 1  # the others unaffected
        assert e.value("lxcwatch_container_state", container="db", state="FROZEN") == 1
    finally:
        agent.stop()


def test_interface_removed_from_tree(tmp_path):
    root = copy_tree("tg3-pair", tmp_path)
    agent = tree_agent(root)
    try:
        e = agent.wait_for(lambda e: "vethB" in e.devices() and all_ok(e), "vethB listed")
        assert e.find("lxcwatch_link_up", device="vethB")
        (root / "sys" / "class" / "net" / "vethB").unlink()
        netdev = root / "proc" / "net" / "dev"
        netdev.write_text("".join(line for line in netdev.read_text().splitlines(True) if "vethB:" not in line))
        e = agent.wait_for(lambda e: "vethB" not in e.devices(), "vethB series to disappear")
        assert all_ok(e), [c for c in COLLECTORS if success(e, c) != 1]
        assert {"eth0", "eth1", "vethA", "vethC"} <= e.devices()
    finally:
        agent.stop()


# ---------------------------------------------------------------- the live host

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


def ip_batch(lines: list[str]) -> None:
    out = subprocess.run(["ip", "-force", "-batch", "-"], input="\n".join(lines) + "\n", capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


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
                ip_batch([f"link add {name}a type veth peer name {name}b" for name in names])
                ip_batch([f"link set {name}a up" for name in names])
                ip_batch([f"link del {name}a" for name in names])
            keep = names[:5]  # these stay: the resynced table must list them
            ip_batch([f"link add {name}a type veth peer name {name}b" for name in keep])
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
