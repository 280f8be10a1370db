"""A throwaway bridge, network namespaces and veth pairs, all named lxw*, for live tests."""

import json
import os
import secrets
import shutil
import subprocess

PREFIX = "lxw"
IFF_PROMISC = 0x100


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out


def ip_batch(lines: list[str]) -> None:
    """`ip -force -batch`: thousands of link commands in one process; fails with the end of ip's complaints."""
    out = subprocess.run(["ip", "-force", "-batch", "-"], input="\n".join(lines) + "\n", capture_output=True,
                         text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"ip -batch: {out.stderr[-2000:]}")


def unavailable() -> str | None:
    """Why namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "live tests need root (network namespaces, bridges, veth)"
    if shutil.which("ip") is None:
        return "iproute2 `ip` is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"`ip netns` is unavailable: {probe.stderr.strip()}"
    return None


def kernel_link(name: str) -> dict:
    """What the kernel says about a host-namespace link (`ip -d -j link show`)."""
    return json.loads(ip("-d", "-j", "link", "show", "dev", name).stdout)[0]


def kernel_ports(bridge: str) -> set[str]:
    return {link["ifname"] for link in json.loads(ip("-j", "link", "show", "master", bridge).stdout or "[]")}


def effective_promiscuous(name: str) -> bool:
    """The device's own flags (sysfs): IFF_PROMISC set by a user, a bridge or a sniffer alike."""
    with open(f"/sys/class/net/{name}/flags") as f:
        return bool(int(f.read(), 16) & IFF_PROMISC)


def leftovers(suffix: str = "") -> list[str]:
    """Every lxw* link in the host namespace and every lxw* namespace (ending in `suffix`, if given)."""
    links = [link["ifname"] for link in json.loads(ip("-j", "link", "show").stdout)]
    namespaces = [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]
    return [n for n in links + namespaces if n.startswith(PREFIX) and n.endswith(suffix)]


def _no_ipv6(name: str, netns: str | None = None) -> None:
    """Keep IPv6 autoconfiguration (RS, MLD, DAD) off the lab so it carries only the test's traffic."""
    if not os.path.exists("/proc/sys/net/ipv6"):
        return
    cmd = ["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"]
    subprocess.run(["ip", "netns", "exec", netns, *cmd] if netns else cmd, check=True, timeout=30)


class Lab:
    """Creates links and namespaces with one random suffix and removes them all in `cleanup()`."""

    def __init__(self):
        self.suffix = secrets.token_hex(2)
        self.subnet = f"10.213.{secrets.randbelow(254) + 1}"
        self._links: list[str] = []
        self._namespaces: list[str] = []

    def name(self, role: str) -> str:
        name = f"{PREFIX}{role}{self.suffix}"
        assert len(name) <= 15, name
        return name

    def bridge(self, role: str = "br") -> str:
        name = self.name(role)
        self._links.append(name)
        ip("link", "add", name, "type", "bridge")
        _no_ipv6(name)
        ip("link", "set", name, "up")
        return name

    def netns(self, role: str) -> str:
        name = self.name(role)
        self._namespaces.append(name)
        ip("netns", "add", name)
        return name

    def veth(self, host: str, peer: str, bridge: str | None = None, netns: str | None = None,
             address: str | None = None, up: bool = True) -> tuple[str, str]:
        """A veth pair whose host end is a port of `bridge` and whose peer is moved into `netns`."""
        host, peer = self.name(host), self.name(peer)
        self._links.append(host)
        ip("link", "add", host, "type", "veth", "peer", "name", peer)
        _no_ipv6(host)
        if bridge:
            ip("link", "set", host, "master", bridge)
        if netns:
            ip("link", "set", peer, "netns", netns)
        _no_ipv6(peer, netns)
        inside = ["-n", netns] if netns else []
        if address:
            ip(*inside, "addr", "add", address, "dev", peer)
        if up:
            ip(*inside, "link", "set", peer, "up")
            ip("link", "set", host, "up")
        return host, peer

    def cleanup(self) -> None:
        """Best effort, every step: deleting a veth's host end or its namespace removes the pair."""
        for name in reversed(self._links):
            if os.path.exists(f"/sys/class/net/{name}"):
                ip("link", "del", name, check=False)
        for name in reversed(self._namespaces):
            ip("netns", "del", name, check=False)
