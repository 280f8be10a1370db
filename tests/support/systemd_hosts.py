"""Debian bookworm LXC system containers booting systemd, from a cached debootstrap root, deployed to with Ansible
from a controller directory that holds the role `make dist` built, installed by ansible-galaxy, and no checkout."""

import base64
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.support import lxcenv
from tests.support import netlab
from tests.support.agent import Exposition, wait_until
from tests.support.paths import REPO

PLAYBOOKS = REPO / "deploy" / "ansible"  # lxcwatch.yml and monitoring.yml, copied to the controller directory
CACHE = Path("/var/cache/lxcwatch-tests")
SUITE, VARIANT, MIRROR = "bookworm", "minbase", "http://deb.debian.org/debian"
PACKAGES = (
    "systemd", "systemd-sysv", "dbus",  # init, and the bus systemctl and logind use
    "openssh-server",  # Ansible's transport
    "python3", "python3-apt",  # Ansible's modules (ansible.builtin.apt needs python3-apt on the target)
    "python3-venv",  # the agent's virtual environment
    "iproute2", "procps", "ca-certificates",
)
SUBNETS = tuple(f"10.231.{n}" for n in range(77, 87))  # private to these tests; one per run, so runs can overlap
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
    if free_subnet() is None:
        return f"{SUBNETS[0]}.0/24 to {SUBNETS[-1]}.0/24 are all routed on this host (other runs of these tests?)"
    return netlab.unavailable()


def free_subnet() -> str | None:
    """The first of SUBNETS with no route on this host."""
    return next((net for net in SUBNETS if not netlab.ip("-4", "route", "show", f"{net}.0/24").stdout.strip()), None)


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
        self.tls: ssl.SSLContext | None = None  # how the agent is scraped: set by Deployment.run()
        self.auth: tuple[str, str] | None = None

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

    def metrics(self, timeout: float = 5, auth: tuple[str, str] | None | bool = True) -> Exposition:
        """GET /metrics of the agent from the host, over TLS and with credentials when it has them (auth=None:
        none); raises unless it answers 200 (urllib.error.HTTPError, an OSError, for 401)."""
        return Exposition(self.get("/metrics", timeout, self.auth if auth is True else auth).read().decode())

    def get(self, path: str, timeout: float = 5, auth: tuple[str, str] | None = None, tls: bool | None = None):
        """The agent's response to GET `path`, over TLS when it has TLS (or as `tls` says)."""
        secure = self.tls is not None if tls is None else tls
        request = urllib.request.Request(f"{'https' if secure else 'http'}://{self.address}:{PORT}{path}")
        if auth:
            request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),  # the containers are never behind a proxy
                                             urllib.request.HTTPSHandler(context=self.tls))
        return opener.open(request, timeout=timeout)


DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback and the containers: no proxy


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
            self.subnet = free_subnet()
            netlab.ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
            lxcenv.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lxcwatch-deploy-test", "-f", str(self.key))
        except BaseException:
            self.cleanup()
            raise

    def create(self, replica: str, tarball: Path) -> SystemHost:
        address = f"{self.subnet}.{11 + len(self.hosts)}"
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
    """The replica pair as an Ansible inventory, and runs of lxcwatch.yml from a controller directory holding only
    the playbook, the role installed by ansible-galaxy from `make dist`'s tarball, and the inventory; the artifact
    is served to the role by URL from 127.0.0.1."""

    GROUP, REPLICA_GROUP = "lxwd_pair", "deploy"
    USER, PASSWORD = "prometheus", "scrape me 'if' you \\ can"

    def __init__(self, fleet: Fleet, dist: dict[str, Path]):
        self.fleet, self.dist = fleet, dist
        self.runs: list[PlaybookRun] = []
        self.dir = fleet.workdir / "controller"
        self.dir.mkdir()
        (self.dir / "requirements.yml").write_text(json.dumps([{"src": str(dist["role"]), "name": "lxcwatch"}]))
        lxcenv.run(beside_python("ansible-galaxy"), "role", "install", "-p", str(self.dir / "roles"),
                   "-r", str(self.dir / "requirements.yml"), timeout=120)
        for playbook in ("lxcwatch.yml", "monitoring.yml"):
            shutil.copy(PLAYBOOKS / playbook, self.dir / playbook)
        self.inventory = self.dir / "inventory.json"  # JSON is YAML: Ansible's yaml inventory plugin reads it
        self.inventory.write_text(json.dumps(self._inventory(), indent=2))
        self.pki = make_pki(self.dir / "pki", [h.address for h in fleet.hosts])
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(dist["wheelhouse"].parent)))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.artifact = f"http://127.0.0.1:{self.server.server_port}/{dist['wheelhouse'].name}"

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

    def web_vars(self) -> dict:
        """The role's variables for TLS (the test CA's server certificate) and one basic auth user."""
        return {"lxcwatch_web_tls_cert": (self.pki / "server.crt").read_text(),
                "lxcwatch_web_tls_key": (self.pki / "server.key").read_text(),
                "lxcwatch_web_basic_auth_users": {self.USER: self.PASSWORD}}

    def run(self, *args: str, web: bool = True, variables: dict | None = None, playbook: str = "lxcwatch.yml",
            inventory: Path | None = None, timeout: float = 600) -> PlaybookRun:
        """One ansible-playbook run; `web`: with TLS and basic auth (then the hosts are scraped that way)."""
        work = self.fleet.workdir
        values = {"lxcwatch_artifact": self.artifact, "lxcwatch_controller_cache_dir": str(self.dir / "cache"),
                  **(self.web_vars() if web else {}), **(variables or {})}
        extra = self.dir / f"vars-{len(self.runs)}.json"
        extra.write_text(json.dumps(values))
        env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
               "ANSIBLE_ROLES_PATH": str(self.dir / "roles"), "no_proxy": "127.0.0.1,localhost",
               # ControlPersist masters outlive the run: keep their sockets where cleanup() closes them.
               "ANSIBLE_SSH_CONTROL_PATH_DIR": str(work / "ssh")}
        out = subprocess.run([beside_python("ansible-playbook"), "-i", str(inventory or self.inventory),
                              str(self.dir / playbook), "-e", f"@{extra}", *args],
                             capture_output=True, text=True, timeout=timeout, env=env, cwd=self.dir, check=False)
        self.runs.append(PlaybookRun(out.returncode, out.stdout + out.stderr))
        if "--check" not in args and playbook == "lxcwatch.yml":
            context = ssl.create_default_context(cafile=str(self.pki / "ca.crt")) if web else None
            for host in self.fleet.hosts:
                host.tls, host.auth = context, ((self.USER, self.PASSWORD) if web else None)
        return self.runs[-1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def make_pki(directory: Path, addresses: list[str]) -> Path:
    """A CA and a server certificate for `addresses` (and 127.0.0.1) signed by it: ca.crt, server.crt, server.key."""
    directory.mkdir()
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    lxcenv.run("openssl", "req", "-x509", *ec, "-keyout", f"{directory}/ca.key", "-out", f"{directory}/ca.crt",
               "-days", "2", "-subj", "/CN=lxcwatch deploy test CA", timeout=60)
    lxcenv.run("openssl", "req", *ec, "-keyout", f"{directory}/server.key", "-out", f"{directory}/server.csr",
               "-subj", "/CN=lxcwatch", timeout=60)
    (directory / "san.ext").write_text("subjectAltName=" + ",".join(f"IP:{a}" for a in [*addresses, "127.0.0.1"]) + "\n")
    lxcenv.run("openssl", "x509", "-req", "-in", f"{directory}/server.csr", "-CA", f"{directory}/ca.crt",
               "-CAkey", f"{directory}/ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{directory}/san.ext",
               "-out", f"{directory}/server.crt", timeout=60)
    return directory


def build_dist(dest: Path) -> dict[str, Path]:
    """`make dist` into `dest`: {"wheelhouse": tarball, "role": tarball, "checksums": SHA256SUMS}."""
    # -o: the venv running the tests is taken as it is, never rebuilt by the stamp's rule
    lxcenv.run("make", "-C", str(REPO), "-o", ".venv/.installed-run", "dist", f"DIST={dest}", timeout=900)
    (wheelhouse,) = dest.glob("lxcwatch-*-wheelhouse-*.tar.gz")
    (role,) = dest.glob("lxcwatch-role-*.tar.gz")
    return {"wheelhouse": wheelhouse, "role": role, "checksums": dest / "SHA256SUMS"}
