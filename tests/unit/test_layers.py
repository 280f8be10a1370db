"""The layers hold (import-linter's contracts in pyproject.toml), and a collector is one module: a new module in
lxcwatch/collectors reaches the flags, the snapshot, the exposition and `lxcwatch record` with nothing else edited."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from lxcwatch.traces import capture, trace
from tests.support.agent import Agent
from tests.support.paths import REPO as ROOT

TREE = ROOT / "tests" / "fixtures" / "hosts" / "tg3-pair"

DEMO = '''"""demo: how many CPUs /proc/stat lists, and each interface's MTU (sysfs)."""

from lxcwatch.collectors import Collector
from lxcwatch.core.family import gauge
from lxcwatch.kernel import proc_stat
from lxcwatch.kernel.link import CLASS_NET


def read(s):
    mtus = {name: s.sysfs.int_attr(CLASS_NET, name, "mtu") for name in s.sysfs.listdir(CLASS_NET)}
    return s.procfs.read(proc_stat.SOURCE), {name: mtu for name, mtu in mtus.items() if mtu is not None}


def capture(c):
    for _, base in c.interfaces():
        c.sys.file(f"{base}/mtu", volatile=True)


def merge(prev, reading):
    if reading is None:
        return {"demo_cpus": None, "demo_mtus": {}}
    text, mtus = reading
    cpus = sum(line[:3] == "cpu" and line[3:4].isdigit() for line in text.splitlines())
    return {"demo_cpus": cpus, "demo_mtus": mtus}


def render(s, view):
    family = gauge("demo_cpus", "CPUs /proc/stat lists.")
    family.add([], s.demo_cpus)
    mtu = gauge("demo_mtu_bytes", "MTU of each interface.", ["device"])
    for device, value in sorted(s.demo_mtus.items()):
        mtu.add([device], value)
    yield from (family, mtu)


COLLECTOR = Collector("demo", 100, read, merge, render, files=(proc_stat.SOURCE,), capture=capture)
'''
# The agent as installed, with one more directory on the collectors package's path: where a new module would go.
WITH_DEMO = ("import os, sys; import lxcwatch.collectors as c; c.__path__.append(os.environ['DEMO_DIR']); "
             "c.ALL.clear(); c.ALL.update(c._discover()); from lxcwatch.cli import main; sys.exit(main(sys.argv[1:]))")


def test_the_layer_contracts_are_kept():
    done = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_a_new_collector_is_one_module(tmp_path):
    host, demo = tmp_path / "host", tmp_path / "demo"
    shutil.copytree(TREE, host, symlinks=True)
    names = sorted(os.listdir(host / "sys" / "class" / "net"))
    for name in names:  # through the class/net link: into the interface's device directory
        (host / "sys" / "class" / "net" / name / "mtu").write_text("1500\n")
    demo.mkdir()
    (demo / "demo.py").write_text(DEMO)
    roots = [f"--path.procfs={host / 'proc'}", f"--path.sysfs={host / 'sys'}"]
    tree = [*roots, f"--path.lxc={tmp_path / 'lxc'}", "--no-recorder"]
    cpus = sum(1 for line in (TREE / "proc" / "stat").read_text().splitlines() if line[:3] == "cpu" and line[3:4].isdigit())
    agent = Agent(tree, command=[sys.executable, "-c", WITH_DEMO], env={"DEMO_DIR": str(demo)})
    try:
        exposition = agent.wait_for(lambda e: e.find("lxcwatch_demo_cpus"), "the demo collector's family")
        assert exposition.value("lxcwatch_demo_cpus") == cpus == 16
        assert exposition.value("lxcwatch_demo_mtu_bytes", device="eth0") == 1500
        assert exposition.value("lxcwatch_scrape_collector_success", collector="demo") == 1
    finally:
        agent.stop()
    agent = Agent([*tree, "--no-collector.demo"], command=[sys.executable, "-c", WITH_DEMO], env={"DEMO_DIR": str(demo)})
    try:
        exposition = agent.scrape()
        assert not exposition.find("lxcwatch_demo_cpus")
        assert not exposition.find("lxcwatch_scrape_collector_success", collector="demo")
    finally:
        agent.stop()
    out = tmp_path / "demo.trace.gz"
    done = subprocess.run([sys.executable, "-c", WITH_DEMO, "record", f"--out={out}", "--duration=1s", *roots],
                          env={**os.environ, "DEMO_DIR": str(demo)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    first = next(r for r in trace.read(str(out)) if isinstance(r, trace.Record))
    devices = {os.path.relpath(os.path.realpath(host / "sys" / "class" / "net" / n), host / "sys") for n in names}
    assert {p for p in first.files if p.endswith("/mtu")} == {f"sys/{d}/mtu" for d in devices}
    assert not [p for p in capture.full(str(host / "proc"), str(host / "sys")).files if p.endswith("/mtu")]  # no demo here
