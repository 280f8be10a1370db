"""Debian bookworm LXC system containers booting systemd, from a cached debootstrap root, deployed to with Ansible."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import lxcenv
import netlab
from agent import Exposition, wait_until

REPO = Path(__file__).resolve().parent.parent
PLAYBOOK = REPO / "deploy" / "ansible" / "lxcwatch.yml"
CACHE = Path("/var/cache/lxcwatch-tests")
SUITE, VARIANT, MIRROR = "bookworm", "minbase", "http://deb.debian.org/debian"
PACKAGES = (
    "systemd", "systemd-sysv", "dbus",  # init, and the bus systemctl and logind use
    "openssh-server",  # Ansible's transport
    "python3", "python3-apt",  # Ansible's modules (ansible.builtin.apt needs python3-apt on the target)
    "python3-venv",  # the agent's virtual environment
    "iproute2", "procps", "ca-certificates",
)
SUBNET = "10.231.77"  # private to these tests: no other test or host network uses it
PORT = 12243
TOOLS = ("debootstrap", "tar", "ssh", "ssh-keygen", "lxc-start", "lxc-stop", "lxc-attach", "lxc-info", "lxc-destroy")
TAR = ("tar", "--numeric-owner", "--xattrs", "--xattrs-include=*")
BOOTED = ("running", "degraded", "maintenance", "stopping")  # is-system-running's verdicts once boot is over
SSH_OPTIONS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null")
LXC_CONFIG = """\
lxc.include = /usr/share/lxc/config/common.conf
lxc.arch = linux64
lxc.uts.name = {name}
lxc.rootfs.path = dir:{rootfs}
# systemd halts on SIGRTMIN+3; LXC's default SIGPWR only starts sigpwr.target, which does nothing here.
lxc.signal.halt = SIGRTMIN+3
# The services' sandboxing (ProtectSystem=, PrivateTmp=, ...) mounts in namespaces of their own, which
# LXC's generated AppArmor profile forbids; a no-op on hosts without AppArmor, like this one.
lxc.apparmor.profile = unconfined
lxc.net.0.type = veth
lxc.net.0.link = {bridge}
lxc.net.0.flags = up
lxc.net.0.name = eth0
lxc.net.0.veth.pair = {veth}
lxc.net.0.ipv4.address = {address}/24
lxc.sysctl.net.ipv6.conf.all.disable_ipv6 = 1
lxc.sysctl.net.ipv6.conf.default.disable_ipv6 = 1
"""


def beside_python(tool: str) -> str | None:
    """A console script of the venv running pytest, else one on PATH."""
    beside = Path(sys.executable).parent / tool
    return str(beside) if beside.exists() else shutil.which(tool)


def unavailable() -> str | None:
    """Why systemd hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "systemd hosts need root (debootstrap, privileged LXC containers, a bridge)"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/debian-packages installs it)"
    if beside_python("ansible-playbook") is None:
        return "ansible-playbook is not installed (ansible-core, in the project's test extra)"
    if netlab.ip("-4", "route", "show", f"{SUBNET}.0/24").stdout.strip():
        return f"{SUBNET}.0/24 is already routed on this host (another run of these tests?)"
    return netlab.unavailable()


def cached_rootfs() -> Path:
    """The cache entry: its name changes with anything that changes what debootstrap would make."""
    recipe = json.dumps([SUITE, VARIANT, MIRROR, sorted(PACKAGES)])
    return CACHE / f"{SUITE}-{VARIANT}-{hashlib.sha256(recipe.encode()).hexdigest()[:16]}.tar"


def rootfs_tarball() -> tuple[Path, float | None]:
    """The root filesystem tarball, built when missing; and the seconds the build took (None: it was cached)."""
    target = cached_rootfs()
    if target.exists():
        return target, None
    CACHE.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # Built beside the cache and renamed into it: an interrupted build leaves no cache entry.
    with tempfile.TemporaryDirectory(prefix=".build-", dir=CACHE) as tmp:
        rootfs = Path(tmp) / "rootfs"
        try:
            lxcenv.run("debootstrap", f"--variant={VARIANT}", "--include=" + ",".join(PACKAGES), SUITE, str(rootfs),
                       MIRROR, timeout=1800)
        finally:
            _unmount_under(rootfs)  # debootstrap killed on timeout leaves its /proc and /sys mounted
        for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        lxcenv.run(*TAR, "-C", str(rootfs), "-cf", f"{tmp}/rootfs.tar", ".", timeout=600)
        os.rename(f"{tmp}/rootfs.tar", target)
    return target, time.monotonic() - started


def _unmount_under(path: Path) -> None:
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in reversed(points):
        if point == str(path) or point.startswith(f"{path}/"):
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=30, check=False)


class SystemHost(lxcenv.Container):
    """A container booting systemd, reached by lxc-attach (checks) and SSH (Ansible); `replica`: its pair name."""

    def __init__(self, name: str, path: str, address: str, replica: str):
        super().__init__(name, path, address)
        self.replica = replica

    def attach(self, *cmd: str, check: bool = True, timeout: float = 60, stdin: str | None = None) -> str:
        # --clear-env: the host's environment (pytest's, the venv's) stays out of the container.
        out = subprocess.run(["lxc-attach", "-P", self.path, "-n", self.name, "--clear-env", "--", *cmd],
                             input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
        if check and out.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(cmd)}: exit {out.returncode}: {out.stderr.strip()}")
        return out.stdout

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """`systemctl show` of the unit: {property: value}."""
        out = self.attach("systemctl", "show", unit, *(f"--property={p}" for p in props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def is_active(self, unit: str) -> str:
        return self.attach("systemctl", "is-active", unit, check=False).strip()

    def journal(self, *args: str) -> str:
        return self.attach("journalctl", "--no-pager", *args)

    def wait_booted(self, timeout: float = 120) -> str:
        """systemd's verdict on the boot, once it is over (before its bus is up, systemctl cannot ask)."""
        def verdict():
            state = self.attach("systemctl", "is-system-running", "--wait", check=False, timeout=timeout).strip()
            return state if state in BOOTED else None
        return wait_until(verdict, f"{self.name}: systemd to finish booting", timeout)

    def metrics(self, timeout: float = 5) -> Exposition:
        """GET http://ADDRESS:12243/metrics from the host; raises unless it answers 200."""
        with DIRECT.open(f"http://{self.address}:{PORT}/metrics", timeout=timeout) as response:
            assert response.status == 200, f"{self.address}: HTTP {response.status}"
            return Exposition(response.read().decode())


DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the containers are never behind a proxy


class Fleet:
    """System containers in a private LXC path on a bridge of their own; `cleanup()` removes all of it."""

    def __init__(self):
        self.lab = netlab.Lab()
        self.workdir = Path(tempfile.mkdtemp(prefix="lxwd-"))
        self.lxc_path = self.workdir / "lxc"
        self.lxc_path.mkdir()
        self.key = self.workdir / "id_ed25519"
        self.hosts: list[SystemHost] = []
        self.verdicts: dict[str, str] = {}  # is-system-running once booted, per host
        try:
            self.bridge = self.lab.bridge("dbr")
            netlab.ip("addr", "add", f"{SUBNET}.1/24", "dev", self.bridge)
            lxcenv.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lxcwatch-deploy-test", "-f", str(self.key))
        except BaseException:
            self.cleanup()
            raise

    def create(self, replica: str, tarball: Path) -> SystemHost:
        address = f"{SUBNET}.{11 + len(self.hosts)}"
        host = SystemHost(self.lab.name(f"d{replica}"), str(self.lxc_path), address, replica)
        self.hosts.append(host)
        rootfs = self.lxc_path / host.name / "rootfs"
        rootfs.mkdir(parents=True)
        # The config first: with it, lxc-destroy removes whatever follows.
        (rootfs.parent / "config").write_text(LXC_CONFIG.format(
            name=host.name, rootfs=rootfs, bridge=self.bridge, veth=self.lab.name(f"dv{replica}"), address=address))
        lxcenv.run(*TAR, "-C", str(rootfs), "-xf", str(tarball), timeout=300)
        self._personalise(rootfs, host.name)
        return host

    def _personalise(self, rootfs: Path, name: str) -> None:
        (rootfs / "etc/hostname").write_text(f"{name}\n")  # debootstrap copied the build host's
        (rootfs / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {name}\n")
        (rootfs / "etc/machine-id").write_text(f"{uuid.uuid4().hex}\n")  # one per host, as journald expects
        ssh = rootfs / "root/.ssh"
        ssh.mkdir(mode=0o700, exist_ok=True)
        (ssh / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        (ssh / "authorized_keys").chmod(0o600)

    def boot(self) -> None:
        """Start every host, wait for systemd to finish booting and for sshd to let us in."""
        for host in self.hosts:
            host.start()
        self.verdicts = {host.name: host.wait_booted() for host in self.hosts}
        for host in self.hosts:
            self._wait_ssh(host)

    def _wait_ssh(self, host: SystemHost) -> None:
        wait_until(lambda: self.ssh(host, "true").returncode == 0, f"sshd of {host.name}", timeout=60)

    def ssh(self, host: SystemHost, *cmd: str) -> subprocess.CompletedProcess:
        options = ("-i", str(self.key), *SSH_OPTIONS, "-o", "BatchMode=yes", "-o", "ConnectTimeout=2")
        return subprocess.run(["ssh", *options, f"root@{host.address}", *cmd], capture_output=True, text=True,
                              timeout=30, check=False)

    def cleanup(self) -> list[str]:
        """Close Ansible's SSH masters, stop and destroy the hosts, remove bridge and temp dir; what was left."""
        problems = []
        for socket in (self.workdir / "ssh").glob("*"):
            subprocess.run(["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "lxwd"], capture_output=True,
                           timeout=30, check=False)
        for host in self.hosts:
            if (self.lxc_path / host.name).exists():
                host.lxc("lxc-stop", "-k", check=False)
                host.lxc("lxc-destroy", "-f", check=False)
                if (self.lxc_path / host.name).exists():
                    problems.append(f"container {host.name} not destroyed")
            problems += [f"cgroup {left} left behind" for left in _cgroups_of(host.name)]
        self.lab.cleanup()
        problems += netlab.leftovers(self.lab.suffix)
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.workdir.exists():
            problems.append(f"{self.workdir} not removed")
        return problems


def _cgroups_of(name: str) -> list[str]:
    """LXC removes a container's cgroups (and the ones systemd made inside) when it stops."""
    return [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/lxc.*.{name}")] + \
        [str(p) for p in Path("/sys/fs/cgroup").glob(f"lxc.*.{name}")]


@dataclass
class PlaybookRun:
    returncode: int
    output: str

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP: {host: {"ok": N, "changed": N, "failed": N, ...}}."""
        recap = self.output.rpartition("PLAY RECAP")[2]
        return {m[1]: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m[2])}
                for m in re.finditer(r"^(\S+)\s+:\s+(.*)$", recap, re.MULTILINE)}

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


class Deployment:
    """The replica pair as an Ansible inventory, and runs of deploy/ansible/lxcwatch.yml against it."""

    GROUP, REPLICA_GROUP = "lxwd_pair", "deploy"

    def __init__(self, fleet: Fleet, wheelhouse: Path):
        self.fleet, self.wheelhouse = fleet, wheelhouse
        self.runs: list[PlaybookRun] = []
        self.inventory = fleet.workdir / "inventory.json"  # JSON is YAML: Ansible's yaml inventory plugin reads it
        self.inventory.write_text(json.dumps(self._inventory(), indent=2))

    def _inventory(self) -> dict:
        hosts = {h.name: {"ansible_host": h.address, "lxcwatch_replica_name": h.replica}
                 for h in self.fleet.hosts}
        pair = {"hosts": hosts, "vars": {
            "lxcwatch_replica_group": self.REPLICA_GROUP,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.fleet.key),
            "ansible_ssh_common_args": " ".join(SSH_OPTIONS),
        }}
        # The playbook deploys to group "lxcwatch": replica groups are its children (inventory.example.yml).
        return {"all": {"children": {"lxcwatch": {"children": {self.GROUP: pair}}}}}

    def run(self, timeout: float = 600) -> PlaybookRun:
        work = self.fleet.workdir
        env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
               # ControlPersist masters outlive the run: keep their sockets where cleanup() closes them.
               "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "ssh")}
        out = subprocess.run([beside_python("ansible-playbook"), "-i", str(self.inventory), str(PLAYBOOK),
                              "-e", f"lxcwatch_wheelhouse={self.wheelhouse}"],
                             capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, check=False)
        self.runs.append(PlaybookRun(out.returncode, out.stdout + out.stderr))
        return self.runs[-1]


def build_dist(dest: Path) -> dict[str, Path]:
    """`make dist` into `dest`: {"wheelhouse": tarball, "role": tarball, "checksums": SHA256SUMS}."""
    # -o: the venv running the tests is taken as it is, never rebuilt by the stamp's rule
    lxcenv.run("make", "-C", str(REPO), "-o", ".venv/.installed", "dist", f"DIST={dest}", timeout=900)
    (wheelhouse,) = dest.glob("lxcwatch-*-wheelhouse-*.tar.gz")
    (role,) = dest.glob("lxcwatch-role-*.tar.gz")
    return {"wheelhouse": wheelhouse, "role": role, "checksums": dest / "SHA256SUMS"}
