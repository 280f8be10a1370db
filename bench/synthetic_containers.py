"""Deterministic generator of an LXC host tree with N running containers: DIR/proc, DIR/sys, DIR/var/lib/lxc.

The layout is the one the lxc collector reads on a Debian 12 hybrid-cgroup host (docs/containers.md):
v1 hierarchies plus cgroup2 at /sys/fs/cgroup/unified, a monitor ([lxc monitor] ...) and an init per
container, lxc.monitor.NAME and lxc.payload.NAME in every hierarchy, the container's own /proc/INIT/net/dev
and sysfs, and its host veth on one of four bridges. Usable on its own: python bench/synthetic_containers.py DIR N"""

import argparse
import os
import sys

V1 = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd")
BRIDGES = 4
NET_DEV_HEADER = ("Inter-|   Receive                                                |  Transmit\n"
                  " face |bytes    packets errs drop fifo frame compressed multicast"
                  "|bytes    packets errs drop fifo colls carrier compressed\n")


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _net_dev(rows: dict[str, tuple[int, int, int, int]]) -> str:
    """rows: name -> (rx bytes, rx packets, tx bytes, tx packets)."""
    out = [NET_DEV_HEADER]
    for name, (rb, rp, tb, tp) in rows.items():
        out.append(f"{name:>6}: {rb:8d} {rp:7d}    0    0    0     0          0         0 "
                   f"{tb:8d} {tp:7d}    0    0    0     0       0          0\n")
    return "".join(out)


def _stat(pid: int, comm: str, ppid: int, starttime: int) -> str:
    return (f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1210 0 0 0 3 5 0 0 20 0 1 0 {starttime} 4419584 230 "
            "18446744073709551615 1 1 0 0 0 0 0 4 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n")


def _mountinfo() -> str:
    lines = ["22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw",
             "31 22 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755"]
    for i, h in enumerate(V1):
        option = "xattr,name=systemd" if h == "systemd" else h
        lines.append(f"{32 + i} 31 0:{29 + i} / /sys/fs/cgroup/{h} rw,relatime shared:{10 + i} - cgroup cgroup rw,{option}")
    lines.append("41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:19 - cgroup2 cgroup2 rw,nsdelegate")
    return "\n".join(lines) + "\n"


def build(root: str, containers: int) -> None:
    proc, sysfs = os.path.join(root, "proc"), os.path.join(root, "sys")
    write_base(root)
    _write(f"{proc}/stat", "cpu  1 2 3 4 5 6 7 0 0 0\nbtime 1700000000\n")
    host_rows = {}
    for b in range(BRIDGES):
        bridge = f"{sysfs}/devices/virtual/net/lxcbr{b}"
        _write(f"{bridge}/ifindex", f"{3 + b}\n")
        _write(f"{bridge}/operstate", "up\n")
        os.makedirs(f"{bridge}/bridge", exist_ok=True)
        os.makedirs(f"{sysfs}/class/net", exist_ok=True)
        os.symlink(f"../../devices/virtual/net/lxcbr{b}", f"{sysfs}/class/net/lxcbr{b}")
    for k in range(containers):
        bridge, veth, host_index = f"lxcbr{k % BRIDGES}", f"veth{k:06x}", 100 + k
        write_container(root, k, bridge, host_index)
        link = f"{sysfs}/devices/virtual/net/{veth}"
        _write(f"{link}/ifindex", f"{host_index}\n")
        _write(f"{link}/iflink", "2\n")
        _write(f"{link}/operstate", "up\n")
        os.symlink(f"../lxcbr{k % BRIDGES}", f"{link}/master")
        os.symlink(f"../../devices/virtual/net/{veth}", f"{sysfs}/class/net/{veth}")
        host_rows[veth] = (900 * k, 9 * k, 1000 * k, 10 * k)
    _write(f"{proc}/net/dev", _net_dev(host_rows))


def write_base(root: str) -> None:
    """The host's side of the cgroup layout: mountinfo, PID 1's cgroups, the hierarchies' roots."""
    proc, cg = os.path.join(root, "proc"), os.path.join(root, "sys", "fs", "cgroup")
    _write(f"{proc}/self/mountinfo", _mountinfo())
    _write(f"{proc}/1/cgroup", "".join(f"{9 - i}:{'name=systemd' if h == 'systemd' else h}:/\n"
                                       for i, h in enumerate(reversed(V1))) + "0::/init.scope\n")
    for h in V1 + ("unified",):
        _write(f"{cg}/{h}/cgroup.procs", "1\n")


def write_container(root: str, k: int, bridge: str, host_index: int, inside_index: int = 2) -> None:
    """Running container number k: config, monitor, init, cgroups, its own net/dev and sysfs (eth0, ifindex
    `inside_index`); its host veth (index `host_index`, iflink `inside_index`, a port of `bridge`) is the caller's."""
    proc, cg, lxc = (os.path.join(root, d) for d in ("proc", os.path.join("sys", "fs", "cgroup"),
                                                     os.path.join("var", "lib", "lxc")))
    name, monitor, init = f"ct{k:04d}", 10_000 + 4 * k, 10_001 + 4 * k
    _write(f"{lxc}/{name}/config", f"lxc.net.0.type = veth\nlxc.net.0.link = {bridge}\nlxc.net.0.flags = up\n"
                                   f"lxc.rootfs.path = dir:/var/lib/lxc/{name}/rootfs\nlxc.uts.name = {name}\n"
                                   f"lxc.start.auto = {k % 2}\n")
    _write(f"{proc}/{monitor}/cmdline", f"[lxc monitor] /var/lib/lxc {name}\0")
    _write(f"{proc}/{monitor}/stat", _stat(monitor, "lxc-start", 1, 50_000 + k))
    _write(f"{proc}/{monitor}/task/{monitor}/children", f"{init} ")
    _write(f"{proc}/{init}/stat", _stat(init, "init", monitor, 50_001 + k))
    _write(f"{proc}/{init}/status", f"Name:\tinit\nPid:\t{init}\nPPid:\t{monitor}\nNSpid:\t{init}\t1\n")
    payload = f"/lxc.payload.{name}"
    _write(f"{proc}/{init}/cgroup", "".join(f"{9 - i}:{'name=systemd' if h == 'systemd' else h}:{payload}\n"
                                            for i, h in enumerate(reversed(V1))) + f"0::{payload}\n")
    _write(f"{proc}/{init}/net/dev", _net_dev({"lo": (0, 0, 0, 0), "eth0": (1000 * k, 10 * k, 900 * k, 9 * k)}))
    _write(f"{proc}/{init}/root/sys/class/net/eth0/ifindex", f"{inside_index}\n")
    _write(f"{proc}/{init}/root/sys/class/net/eth0/iflink", f"{host_index}\n")
    for h in V1 + ("unified",):
        _write(f"{cg}/{h}/lxc.monitor.{name}/cgroup.procs", f"{monitor}\n")
        _write(f"{cg}/{h}{payload}/cgroup.procs", f"{init}\n")
    _write(f"{cg}/freezer{payload}/freezer.state", "THAWED\n")
    _write(f"{cg}/cpuacct{payload}/cpuacct.usage", f"{123_456_789 * (k + 1)}\n")
    _write(f"{cg}/memory{payload}/memory.usage_in_bytes", f"{(k + 1) * 1_048_576}\n")
    _write(f"{cg}/memory{payload}/memory.limit_in_bytes", "536870912\n")
    _write(f"{cg}/memory{payload}/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    _write(f"{cg}/pids{payload}/pids.current", f"{k % 20 + 1}\n")
    _write(f"{cg}/unified{payload}/cgroup.events", "populated 1\nfrozen 0\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", help="output directory (must not exist)")
    parser.add_argument("containers", type=int, nargs="?", default=500)
    args = parser.parse_args(argv)
    if os.path.exists(args.dir):
        parser.error(f"{args.dir} exists")
    build(args.dir, args.containers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
