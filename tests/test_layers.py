"""The layers hold (import-linter's contracts in pyproject.toml), and a collector is one module: a new module in
lxcwatch/collectors reaches the flags, the snapshot and the exposition with nothing else edited."""

import subprocess
import sys
from pathlib import Path

from agent import Agent

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "tests" / "fixtures" / "hosts" / "tg3-pair"

DEMO = '''"""demo: how many CPUs /proc/stat lists."""

from lxcwatch.collectors import Collector
from lxcwatch.core.family import gauge
from lxcwatch.kernel import proc_stat


def read(s):
    return s.procfs.read(proc_stat.SOURCE)


def merge(prev, text):
    cpus = None if text is None else sum(line[:3] == "cpu" and line[3:4].isdigit() for line in text.splitlines())
    return {"demo_cpus": cpus}


def render(s):
    family = gauge("demo_cpus", "CPUs /proc/stat lists.")
    family.add([], s.demo_cpus)
    yield family


COLLECTOR = Collector("demo", 100, read, merge, render, files=(proc_stat.SOURCE,))
'''
# The agent as installed, with one more directory on the collectors package's path: where a new module would go.
WITH_DEMO = ("import os, sys; import lxcwatch.collectors as c; c.__path__.append(os.environ['DEMO_DIR']); "
             "c.ALL.clear(); c.ALL.update(c._discover()); from lxcwatch.cli import main; sys.exit(main(sys.argv[1:]))")


def test_the_layer_contracts_are_kept():
    done = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_a_new_collector_is_one_module(tmp_path):
    (tmp_path / "demo.py").write_text(DEMO)
    tree = [f"--path.procfs={TREE / 'proc'}", f"--path.sysfs={TREE / 'sys'}", f"--path.lxc={tmp_path / 'lxc'}", "--no-recorder"]
    cpus = sum(1 for line in (TREE / "proc" / "stat").read_text().splitlines() if line[:3] == "cpu" and line[3:4].isdigit())
    agent = Agent(tree, command=[sys.executable, "-c", WITH_DEMO], env={"DEMO_DIR": str(tmp_path)})
    try:
        exposition = agent.wait_for(lambda e: e.find("lxcwatch_demo_cpus"), "the demo collector's family")
        assert exposition.value("lxcwatch_demo_cpus") == cpus == 16
        assert exposition.value("lxcwatch_scrape_collector_success", collector="demo") == 1
    finally:
        agent.stop()
    agent = Agent([*tree, "--no-collector.demo"], command=[sys.executable, "-c", WITH_DEMO], env={"DEMO_DIR": str(tmp_path)})
    try:
        exposition = agent.scrape()
        assert not exposition.find("lxcwatch_demo_cpus")
        assert not exposition.find("lxcwatch_scrape_collector_success", collector="demo")
    finally:
        agent.stop()
