"""Real LXC busybox containers for live tests: private LXC paths, a test bridge, and removal of all of it."""

import contextlib
import glob
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support import netlab
from tests.support.agent import wait_until

TOOLS = ("lxc-create", "lxc-start", "lxc-stop", "lxc-info", "lxc-freeze", "lxc-unfreeze", "lxc-destroy",
         "lxc-attach", "lxc-cgroup")
TEMPLATE = "/usr/share/lxc/templates/lxc-busybox"


def unavailable() -> str | None:
    """Why real containers cannot be made here, or None."""
    if os.geteuid() != 0:
        return "LXC tests need root (lxc-create, cgroups, network namespaces)"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package lxc; scripts/debian-packages installs it)"
    if not os.path.exists(TEMPLATE):
        return f"{TEMPLATE} is missing (Debian package lxc)"
    if shutil.which("busybox") is None:
        return "busybox is not installed (Debian package busybox-static; scripts/debian-packages installs it)"
    return netlab.unavailable()


def run(*cmd: str, check: bool = True, timeout: float = 60) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {out.returncode}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


class Lxc:
    """Containers named lxw<role><suffix> in private LXC paths, on one bridge of the network lab."""

    def __init__(self, lab: netlab.Lab):
        self.lab = lab
        self.bridge = lab.bridge("lxbr")
        self.gateway = f"{lab.subnet}.1"
        netlab.ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        self.paths: list[str] = []
        self.created: list[tuple[str, str]] = []  # (lxc path, name)
        self._next_address = 10

    def lxc_path(self) -> str:
        path = tempfile.mkdtemp(prefix="lxwpath-")
        self.paths.append(path)
        return path

    def create(self, role: str, path: str, extra: tuple[str, ...] = (), veth_pair: str | None = None) -> "Container":
        name = self.lab.name(role)
        address = f"{self.lab.subnet}.{self._next_address}"
        self._next_address += 1
        lines = ["lxc.net.0.type = veth", f"lxc.net.0.link = {self.bridge}", "lxc.net.0.flags = up",
                 f"lxc.net.0.ipv4.address = {address}/24", *extra]
        if veth_pair:
            lines.append(f"lxc.net.0.veth.pair = {veth_pair}")
        conf = Path(path) / f"{name}.conf"
        conf.write_text("\n".join(lines) + "\n")
        self.created.append((path, name))
        run("lxc-create", "-P", path, "-t", "busybox", "-n", name, "-f", str(conf))
        # The template's rcS runs udhcpc in the foreground: its deconfig flushes the static address, and init
        # never finishes sysinit, so it ignores lxc-stop's halt signal. Without it the container boots at once.
        rcs = Path(path) / name / "rootfs" / "etc" / "init.d" / "rcS"
        rcs.write_text("".join(line for line in rcs.read_text().splitlines(True) if "udhcpc" not in line))
        return Container(name, path, address)

    def cleanup(self) -> list[str]:
        """Stop and destroy every container, remove the LXC paths; returns what could not be removed."""
        problems = []
        for path, name in reversed(self.created):
            if os.path.exists(os.path.join(path, name)):
                run("lxc-stop", "-P", path, "-n", name, "-k", check=False)
                out = subprocess.run(["lxc-destroy", "-P", path, "-n", name, "-f"], capture_output=True, text=True,
                                     timeout=60)
                if out.returncode != 0 and os.path.exists(os.path.join(path, name)):
                    problems.append(f"lxc-destroy {name}: {out.stderr.strip()}")
        for path in self.paths:
            shutil.rmtree(path, ignore_errors=True)
            if os.path.exists(path):
                problems.append(f"{path} not removed")
        for _, name in self.created:  # LXC removes its cgroups when a container stops
            for pattern in (f"/sys/fs/cgroup/lxc.*.{name}*", f"/sys/fs/cgroup/*/lxc.*.{name}*"):
                problems += [f"cgroup {left} left behind" for left in glob.glob(pattern)]
        return problems


class Container:
    def __init__(self, name: str, path: str, address: str):
        self.name, self.path, self.address = name, path, address

    def lxc(self, tool: str, *args: str, check: bool = True) -> str:
        return run(tool, "-P", self.path, "-n", self.name, *args, check=check)

    def state(self) -> str:
        """What LXC says (lxc-info -s): the expected value of every state check."""
        return self.lxc("lxc-info", "-sH").strip()

    def init_pid(self) -> int:
        return int(self.lxc("lxc-info", "-pH").strip())

    def link(self) -> str:
        """The host end of its veth, as lxc-info reports it (`Link:`)."""
        for line in self.lxc("lxc-info").splitlines():
            if line.startswith("Link:"):
                return line.split()[1]
        raise AssertionError(f"lxc-info shows no Link for {self.name}")

    def cgroup(self, key: str) -> str:
        """A cgroup file as LXC reads it (lxc-cgroup): v1 or cgroup2, wherever the controller lives."""
        return self.lxc("lxc-cgroup", key).strip()

    def start(self) -> None:
        self.lxc("lxc-start")
        wait_until(lambda: self.state() == "RUNNING", f"{self.name} RUNNING per lxc-info")


def master_of(device: str) -> str:
    """The kernel's view of a host link's bridge ("" when none)."""
    return json.loads(netlab.ip("-j", "link", "show", "dev", device).stdout)[0].get("master", "")


def operstate_of(device: str) -> str:
    return json.loads(netlab.ip("-j", "link", "show", "dev", device).stdout)[0].get("operstate", "").lower()


def v1_controller(name: str) -> bool:
    """Whether a cgroup v1 hierarchy serves this controller (hybrid or v1 host) rather than cgroup2."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" - ")[1].startswith("cgroup ") and name in line.split()[-1].split(",")
                   for line in f if " - " in line)


def process_start_time(pid: int) -> float:
    """Seconds since the epoch when `pid` started: /proc/PID/stat starttime after /proc/stat btime."""
    with open(f"/proc/{pid}/stat") as f:
        starttime = int(f.read().rpartition(")")[2].split()[19])
    with open("/proc/stat") as f:
        btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    return btime + starttime / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def lab_with_lxc():
    """An Lxc on a network lab of its own, skipped where LXC is unavailable; on exit, asserts everything it made
    is gone (only this lab's leftovers: other tests may run beside it)."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    lab = netlab.Lab()
    lxc = None
    try:
        lxc = Lxc(lab)
        yield lxc
    finally:
        problems = lxc.cleanup() if lxc else []
        lab.cleanup()
        left = netlab.leftovers(lab.suffix)
        assert not problems and not left, f"not removed: {problems + left}"
