"""The agent as `nobody` on this machine's /proc and /sys: every collector works without root or capabilities."""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
from tests.support.agent import Agent
from tests.support.paths import REPO as ROOT

SYSTEM_PYTHON = "/usr/bin/python3"
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--init-groups"]


def system_python_matches() -> bool:
    """The venv's interpreter lives under /root (0700), out of nobody's reach; Debian's python3 of the same minor
    version runs the checkout with the venv's site-packages instead, copying nothing."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    out = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True, check=False)
    return out.stdout.strip() == str(tuple(sys.version_info[:2]))


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv"),
    pytest.mark.skipif(not system_python_matches(), reason=f"needs {SYSTEM_PYTHON} of Python {sys.version_info[:2]}"),
]


def test_everything_works_as_nobody_on_the_live_host():
    site = sysconfig.get_paths()["purelib"]
    lxc = tempfile.mkdtemp(prefix="lxcwatch-nobody-")  # not under tmp_path: pytest makes that 0700 root
    os.chmod(lxc, 0o755)
    env = {"PYTHONPATH": f"{ROOT}:{site}", "PYTHONDONTWRITEBYTECODE": "1"}
    agent = Agent([f"--path.lxc={lxc}", "--sample.interval=200ms"], env=env, cwd="/",
                  command=[*AS_NOBODY, SYSTEM_PYTHON, "-m", "lxcwatch"])
    try:
        status = Path(f"/proc/{agent.proc.pid}/status").read_text()
        uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
        caps = next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:"))
        assert set(uids) == {"65534"} and int(caps, 16) == 0, status
        seen = agent.wait_for(lambda e: e.value("lxcwatch_samples_total") >= 3, "three samples")
    finally:
        agent.stop()
        os.rmdir(lxc)
    success = {s.labels["collector"]: s.value for s in seen.find("lxcwatch_scrape_collector_success")}
    assert len(success) >= 8 and set(success.values()) == {1.0}, success
    assert seen.find("lxcwatch_softnet_processed_total"), "no softnet data"
    assert seen.find("lxcwatch_softirqs_total", vector="NET_RX"), "no NET_RX softirq counts"
    assert seen.find("lxcwatch_ksoftirqd_cpu_seconds_total"), "no ksoftirqd times"
    devices = {s.labels["device"] for s in seen.find("lxcwatch_link_receive_packets_total")}
    assert "lo" in devices and len(devices) >= 2, devices  # lo and at least one real interface
    assert seen.find("lxcwatch_link_info"), "no link metadata from netlink"


def test_a_container_directory_nobody_may_enter_is_a_read_failure_not_nothing():
    """LXC makes container directories 0770 root: without CAP_DAC_READ_SEARCH the agent must say it cannot
    look inside, not report an empty LXC path."""
    site = sysconfig.get_paths()["purelib"]
    lxc = tempfile.mkdtemp(prefix="lxcwatch-nobody-")
    try:
        os.chmod(lxc, 0o755)
        for name, mode in (("open", 0o755), ("closed", 0o770)):
            os.mkdir(os.path.join(lxc, name), mode)
            os.chmod(os.path.join(lxc, name), mode)  # mkdir's mode is masked by the umask
            Path(lxc, name, "config").write_text(f"lxc.uts.name = {name}\n")
        os.chmod(os.path.join(lxc, "open", "config"), 0o644)
        env = {"PYTHONPATH": f"{ROOT}:{site}", "PYTHONDONTWRITEBYTECODE": "1"}
        agent = Agent([f"--path.lxc={lxc}", "--sample.interval=200ms", "--no-recorder"], env=env, cwd="/",
                      command=[*AS_NOBODY, SYSTEM_PYTHON, "-m", "lxcwatch"])
        try:
            seen = agent.wait_for(lambda e: e.find("lxcwatch_container_read_success", container="closed"),
                                  "the closed container listed")
        finally:
            agent.stop()
    finally:
        shutil.rmtree(lxc)
    assert seen.value("lxcwatch_container_read_success", container="closed") == 0
    assert seen.value("lxcwatch_container_read_success", container="open") == 1
    assert f"{lxc}/closed/config: Permission denied (needs root or CAP_DAC_READ_SEARCH)" in agent.output()
