"""Faults under the real agent process: files, processes and interfaces vanishing mid-run (on the live
host, and lost netlink events: tests/live/test_faults_live.py). Each time the agent keeps serving and
lxcwatch_scrape_collector_success tells the story."""

import shutil
from pathlib import Path

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
