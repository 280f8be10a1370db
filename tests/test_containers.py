"""LXC containers on fixture trees (tests/fixtures/make_hosts.py): states and their change counter, cgroup v1,
v2 and hybrid layouts, and bad input that fails one container or the lxc collector, never the agent."""

import os
import shutil
from pathlib import Path

import pytest

from agent import Agent

from lxcwatch.core import containers
from lxcwatch.kernel.cgroup import CgroupUsage
from lxcwatch.sources.host import Sources
from lxcwatch.core.containers import ContainerReading, LxcReading, Veth
from lxcwatch.sampler import Sampler
from lxcwatch.collectors import build
from lxcwatch.core.snapshot import CollectorResult

HOSTS = Path(__file__).resolve().parent / "fixtures" / "hosts"

# ---------------------------------------------------------------- states: a pure function of readings


def seen(**kwargs) -> ContainerReading:
    return ContainerReading("web", "/var/lib/lxc", **kwargs)


STOPPED = seen()
MONITOR_ONLY = seen(monitor=True)
RUNNING = seen(monitor=True, init_pid=42, cgroup=CgroupUsage(freezer="THAWED"))
FREEZING = seen(monitor=True, init_pid=42, cgroup=CgroupUsage(freezer="FREEZING"))
FROZEN = seen(monitor=True, init_pid=42, cgroup=CgroupUsage(freezer="FROZEN"))
NO_FREEZER = seen(monitor=True, init_pid=42, cgroup=CgroupUsage())


@pytest.mark.parametrize("readings, states, changes", [
    pytest.param([STOPPED, MONITOR_ONLY, RUNNING], ["STOPPED", "STARTING", "RUNNING"], 2, id="start"),
    pytest.param([RUNNING, MONITOR_ONLY, STOPPED], ["RUNNING", "STOPPING", "STOPPED"], 2, id="stop"),
    pytest.param([MONITOR_ONLY, MONITOR_ONLY], ["STARTING", "STARTING"], 0, id="first-seen-starting"),
    pytest.param([RUNNING, FREEZING, FROZEN, RUNNING], ["RUNNING", "FREEZING", "FROZEN", "RUNNING"], 3, id="freeze-thaw"),
    pytest.param([FROZEN, MONITOR_ONLY, MONITOR_ONLY, STOPPED], ["FROZEN", "STOPPING", "STOPPING", "STOPPED"], 2,
                 id="killed-while-frozen"),
    pytest.param([NO_FREEZER, STOPPED, STOPPED], ["RUNNING", "STOPPED", "STOPPED"], 1, id="no-freezer-and-kill"),
])
def test_states_and_changes(readings, states, changes):
    snapshot = {}
    got = []
    for r in readings:
        snapshot = containers.advance(snapshot, LxcReading((r,)))
        got.append(snapshot["web"].state)
    assert got == states
    assert snapshot["web"].state_changes == changes


def test_destroyed_container_is_dropped_and_a_new_one_starts_at_zero():
    first = containers.advance({}, LxcReading((RUNNING,)))
    second = containers.advance(first, LxcReading((STOPPED,)))
    assert second["web"].state_changes == 1
    assert containers.advance(second, LxcReading(())) == {}
    assert containers.advance({}, LxcReading((STOPPED,)))["web"].state_changes == 0


def test_a_failed_sample_keeps_the_state_and_its_count():
    ok, failed = {"lxc": CollectorResult(True, 0.001)}, {"lxc": CollectorResult(False, 0.001, "boom")}
    first = build(None, 1, 0.0, 0.0, {"lxc": LxcReading((RUNNING,))}, ok)
    second = build(first, 2, 1.0, 1.0, {}, failed)  # the collector failed: nothing read, nothing changed
    third = build(second, 3, 2.0, 2.0, {"lxc": LxcReading((FROZEN,))}, ok)
    assert second.containers == first.containers
    assert (third.containers["web"].state, third.containers["web"].state_changes) == ("FROZEN", 1)


def test_veth_attached_needs_the_configured_bridge():
    assert Veth("vethA", "eth0", "lxcbr0", "lxcbr0", "up").attached
    assert not Veth("vethA", "eth0", "lxcbr0", "", "up").attached
    assert not Veth("vethA", "eth0", "lxcbr0", "lxcbr1", "up").attached
    assert not Veth("vethA", "eth0", "", "", "up").attached


# ---------------------------------------------------------------- the collector's I/O on trees


def copy_tree(name: str, tmp_path: Path) -> Path:
    root = tmp_path / name
    shutil.copytree(HOSTS / name, root, symlinks=True)
    return root


def open_sources(root: Path) -> Sources:
    return Sources.open(str(root / "proc"), str(root / "sys"), (str(root / "var" / "lib" / "lxc"),))


def read(root: Path) -> dict[str, containers.Container]:
    sources = open_sources(root)
    try:
        return containers.advance({}, sources.lxc.read())
    finally:
        sources.close()


def summary(found: dict[str, containers.Container]) -> dict[str, tuple]:
    return {name: (c.state, c.reading.init_pid, bool(c.reading.error)) for name, c in found.items()}


HYBRID_STATES = {  # written by tests/fixtures/make_hosts.py: make_lxc_hybrid
    "booting": ("STARTING", None, False), "broken": ("RUNNING", 4502, True), "cache": ("RUNNING", 4301, False),
    "db": ("FROZEN", 4203, False), "old": ("STOPPED", None, False), "web": ("RUNNING", 4102, False),
}


def test_hybrid_tree():
    found = read(HOSTS / "lxc-hybrid")
    assert summary(found) == HYBRID_STATES
    web, db, cache = found["web"].reading, found["db"].reading, found["cache"].reading
    assert web.cgroup == CgroupUsage("THAWED", 123.456789012, 48_234_496, 536_870_912, 0, 7)  # v1 files
    assert web.start_time == 1_700_000_000 + 812_345 / 100
    assert db.cgroup.memory_limit_bytes is None  # PAGE_COUNTER_MAX: no limit
    # db runs in lxc.payload.db-1 (a stale lxc.monitor.db sits beside it); its pair name is in its config.
    assert db.veths == (Veth("vethdb0", "eth0", "lxcbr0", "lxcbr0", "up"),)
    assert cache.veths == (Veth("vethC4a5E6", "eth0", "lxcbr0", "", "up"), Veth("vethC4m9Q1", "mgmt", "lxcbr1", "lxcbr1", "up"))
    assert "config:9: invalid configuration line" in found["broken"].reading.error
    assert found["broken"].reading.autostart is None and found["old"].reading.autostart is True


def test_v2_tree_without_mountinfo():
    found = read(HOSTS / "lxc-v2")
    assert summary(found) == {"app": ("RUNNING", 702, False), "fg": ("RUNNING", 903, False),
                              "frozen1": ("FROZEN", 801, False), "idle": ("STOPPED", None, False)}
    assert found["app"].reading.cgroup == CgroupUsage("THAWED", 7.0, 104_857_600, 268_435_456, 4, 12)  # cgroup2 files
    assert found["fg"].reading.cgroup.memory_limit_bytes is None  # memory.max "max"


def test_v1_tree(tmp_path):
    """The hybrid tree without its cgroup2 mount: monitors are listed in the freezer hierarchy instead."""
    root = copy_tree("lxc-hybrid", tmp_path)
    mountinfo = root / "proc" / "self" / "mountinfo"
    mountinfo.write_text("".join(line for line in mountinfo.read_text().splitlines(True) if "cgroup2" not in line))
    shutil.rmtree(root / "sys" / "fs" / "cgroup" / "unified")
    sources = open_sources(root)
    try:
        found = containers.advance({}, sources.lxc.read())
        assert sources.lxc._cgroups.layout.kind == "v1"
    finally:
        sources.close()
    assert summary(found) == HYBRID_STATES
    assert found["web"].reading.cgroup.cpu_seconds == 123.456789012


def test_bad_cgroup_files_fail_only_their_container(tmp_path):
    root = copy_tree("lxc-hybrid", tmp_path)
    cg = root / "sys" / "fs" / "cgroup"
    (cg / "memory" / "lxc.payload.web" / "memory.usage_in_bytes").write_text("lots\n")
    shutil.rmtree(cg / "pids" / "lxc.payload.db-1")  # vanished under a living init
    shutil.rmtree(root / "proc" / "4301")  # cache's init exited: its monitor is tearing down
    found = read(root)
    assert found["web"].state == "RUNNING"
    assert found["web"].reading.error == "memory.usage_in_bytes: expected a number, found 'lots'"
    assert found["db"].state == "FROZEN"
    assert found["db"].reading.error.endswith("lxc.payload.db-1: cgroup vanished")
    assert found["cache"].state == "STARTING"  # first seen: a monitor without an init
    assert not found["cache"].reading.error
    for name in ("booting", "old"):
        assert summary(found)[name] == HYBRID_STATES[name]


def test_unreadable_cgroup_layout_fails_the_lxc_collector_only(tmp_path):
    root = copy_tree("lxc-hybrid", tmp_path)
    (root / "proc" / "self" / "mountinfo").write_text("31 23 0:28 / /sys/fs/cgroup rw\n")
    sources = open_sources(root)
    try:
        snap = Sampler(sources, ["netdev", "lxc"], 1.0).sample()
    finally:
        sources.close()
    assert snap.collectors["netdev"].success and "eth0" in snap.netdev
    assert not snap.collectors["lxc"].success
    assert snap.collectors["lxc"].error.startswith("self/mountinfo:1: expected ID PARENT DEV ROOT POINT")


def test_an_lxc_path_that_does_not_exist_has_no_containers(tmp_path):
    sources = Sources.open(str(HOSTS / "lxc-v2" / "proc"), str(HOSTS / "lxc-v2" / "sys"),
                           (str(tmp_path / "nothing"), str(HOSTS / "lxc-v2" / "var" / "lib" / "lxc")))
    try:
        names = [c.name for c in sources.lxc.read().containers]
    finally:
        sources.close()
    assert names == ["app", "fg", "frozen1", "idle"]


def test_a_name_in_two_lxc_paths_is_taken_from_the_first(tmp_path):
    other = tmp_path / "lxc"
    (other / "app").mkdir(parents=True)
    (other / "app" / "config").write_text("lxc.start.auto = 0\n")
    (other / "solo").mkdir()
    (other / "solo" / "config").write_text("lxc.start.auto = 1\n")
    (other / "notacontainer").mkdir()  # no config
    v2 = HOSTS / "lxc-v2"
    sources = Sources.open(str(v2 / "proc"), str(v2 / "sys"), (str(v2 / "var" / "lib" / "lxc"), str(other)))
    try:
        found = {c.name: c for c in sources.lxc.read().containers}
    finally:
        sources.close()
    assert sorted(found) == ["app", "fg", "frozen1", "idle", "solo"]
    assert found["app"].lxc_path == str(v2 / "var" / "lib" / "lxc") and found["app"].autostart is True
    # solo's monitor would have to name `other`; the tree's monitors name /var/lib/lxc, so it is stopped.
    assert found["solo"].lxc_path == str(other) and not found["solo"].monitor


# ---------------------------------------------------------------- the real agent on a changing tree


def test_agent_counts_changes_and_keeps_stopped_containers(tmp_path):
    root = copy_tree("lxc-hybrid", tmp_path)
    agent = Agent([f"--path.procfs={root / 'proc'}", f"--path.sysfs={root / 'sys'}",
                   f"--path.lxc={root / 'var' / 'lib' / 'lxc'}", "--sample.interval=50ms"])
    cg = root / "sys" / "fs" / "cgroup"
    try:
        e = agent.wait_for(lambda e: e.value("lxcwatch_container_state", container="db", state="FROZEN") == 1, "db")
        assert e.value("lxcwatch_container_state_changes_total", container="db") == 0

        (cg / "freezer" / "lxc.payload.db-1" / "freezer.state").write_text("THAWED\n")
        e = agent.wait_for(lambda e: e.value("lxcwatch_container_state", container="db", state="RUNNING") == 1, "thawed")
        assert e.value("lxcwatch_container_state_changes_total", container="db") == 1

        for hierarchy in os.listdir(cg):  # the monitor is gone: LXC removed its cgroups
            shutil.rmtree(cg / hierarchy / "lxc.monitor.db-1", ignore_errors=True)
        e = agent.wait_for(lambda e: e.value("lxcwatch_container_running", container="db") == 0, "db stopped")
        assert e.value("lxcwatch_container_state", container="db", state="STOPPED") == 1
        assert e.value("lxcwatch_container_state_changes_total", container="db") == 2
        assert e.value("lxcwatch_container_init_pid", container="db") is None

        config = root / "var" / "lib" / "lxc" / "web" / "config"
        config.write_text(config.read_text() + "lxc.net.0.link\n")  # an edit gone wrong
        e = agent.wait_for(lambda e: e.value("lxcwatch_container_read_success", container="web") == 0, "web's config error")
        assert e.value("lxcwatch_container_state", container="web", state="RUNNING") == 1  # still watched
        assert e.value("lxcwatch_container_autostart", container="web") is None
        assert e.value("lxcwatch_scrape_collector_success", collector="lxc") == 1
        assert e.value("lxcwatch_container_read_success", container="cache") == 1

        shutil.rmtree(root / "var" / "lib" / "lxc" / "db")  # lxc-destroy
        agent.wait_for(lambda e: not e.find("lxcwatch_container_info", container="db"), "db's series to vanish")
    finally:
        agent.stop()
    log = agent.output()
    assert log.count("container not fully read") == 2  # broken from the start, web after the edit
    assert "container=web" in log and "no '='" in log
