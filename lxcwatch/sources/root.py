"""Root-relative reads of procfs and sysfs, so the agent runs unchanged against fixture trees.

Every file the agent reads goes through `read_bytes`: opened O_NONBLOCK (a FIFO then cannot hold the open),
refused unless it is a regular file (every procfs, sysfs, cgroupfs and config file is one; a FIFO or
/dev/zero in its place is not), and read up to a cap in bytes: procfs files report st_size 0, so only what was
read can be counted. A read that blocks inside the kernel (a sysfs net attribute waiting for rtnl_lock while a
driver resets) cannot be bounded here: the sampler's per-collector deadline is for that (lxcwatch/sampler.py)."""

import errno
import os
import stat
import threading
from dataclasses import dataclass

from lxcwatch.kernel import interrupts, net_dev
from lxcwatch.kernel.cgroup import MOUNTINFO

KiB, MiB = 1 << 10, 1 << 20
# Caps, from the size of each file on the largest hosts Linux runs on (docs/design.md, "Bounded reads").
# /proc/interrupts: one row per IRQ, 11 bytes per CPU ("%10u "): 5.6 KiB per row at 512 CPUs, so 32 MiB holds
# ~5,800 rows there (4 NICs x 128 queues + 8 NVMe x 128 queues is ~1,600).
# /proc/net/dev: ~200 bytes per interface: 16 MiB is ~80,000 interfaces (a veth pair per container).
# /proc/self/mountinfo: ~150 bytes per mount: 16 MiB is ~100,000 mounts.
# Every other procfs file read here (stat, softirqs, softnet_stat: at most ~120 bytes per CPU and row) stays
# under 1 MiB at NR_CPUS=8192, the kernel's maximum: 4 MiB.
PROC_CAPS = {interrupts.SOURCE: 32 * MiB, net_dev.SOURCE: 16 * MiB, MOUNTINFO: 16 * MiB}
PROC_CAP = 4 * MiB
ATTR_CAP = 4 * KiB  # a sysfs attribute is at most one page (sysfs_emit); a cgroup file here is one line
CONFIG_CAP = 1 * MiB  # LXC configs, --probes.file, --config.file, --web.config.file: a few KiB in practice
CERT_CAP = 4 * MiB  # a PEM bundle: Debian's whole ca-certificates.crt is ~220 KiB
LAST_OPENED: dict[int, str] = {}  # thread id -> the file it opened last: what a stuck collector is named by


class Refused(OSError):
    """A file the agent will not read: not a regular file, or larger than its cap. str() names both."""

    def __init__(self, path: str, reason: str):
        super().__init__(errno.EINVAL, reason, path)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str) -> int:
    """A descriptor of `path`, which must be a regular file; the open itself never waits (O_NONBLOCK)."""
    LAST_OPENED[threading.get_ident()] = path
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise Refused(path, f"{_kind(mode)}, not a regular file: refused")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_fd(fd: int, path: str, limit: int) -> bytes:
    """The rest of an open file, at most `limit` bytes; Refused when there is more."""
    chunks, size = [], 0
    while True:
        chunk = os.read(fd, min(max(64 * KiB, size), limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise Refused(path, f"larger than {limit} bytes: refused (cap in lxcwatch/sources/root.py)")


def read_bytes(path: str, limit: int) -> bytes:
    """The whole file, bounded: OSError (Refused for a FIFO, a device, or a file over `limit`) otherwise."""
    fd = open_regular(path)
    try:
        return read_fd(fd, path, limit)
    finally:
        os.close(fd)


def read_text(path: str, limit: int) -> str:
    """read_bytes decoded the one way the agent decodes kernel bytes: UTF-8, other bytes kept (surrogateescape),
    as os.listdir() names them; an interface name is then spelled alike in /proc/net/dev, sysfs and netlink."""
    return read_bytes(path, limit).decode("utf-8", "surrogateescape")


def read_attr(path: str) -> str | None:
    """A sysfs attribute by full path, in one read (os.open costs a third of open(), and a big host reads
    thousands per sample); None when absent, unreadable or refused."""
    try:
        fd = open_regular(path)
    except OSError:
        return None
    try:
        data = os.read(fd, ATTR_CAP + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data.decode("utf-8", "surrogateescape").strip() if len(data) <= ATTR_CAP else None


def read_link_name(path: str) -> str | None:
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


@dataclass(frozen=True)
class Root:
    """A procfs or sysfs root such as /proc, /sys or tests/fixtures/hosts/tg3-pair/sys."""

    path: str

    def join(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def read(self, *parts: str) -> str:
        """The whole file, within its cap (PROC_CAPS); OSError propagates (the collector reports it)."""
        return read_text(self.join(*parts), PROC_CAPS.get("/".join(parts), PROC_CAP))

    def attr(self, *parts: str) -> str | None:
        """A single sysfs attribute, stripped; None when absent or unreadable ("not supported")."""
        return read_attr(self.join(*parts))

    def int_attr(self, *parts: str, base: int = 10) -> int | None:
        value = self.attr(*parts)
        try:
            return int(value, base) if value is not None else None
        except ValueError:
            return None

    def read_bytes(self, *parts: str, limit: int) -> bytes:
        return read_bytes(self.join(*parts), limit)

    def readlink(self, *parts: str) -> str | None:
        """A symlink's target as written; None when absent or not a link."""
        try:
            return os.readlink(self.join(*parts))
        except OSError:
            return None

    def link_name(self, *parts: str) -> str | None:
        """Basename of a symlink's target (`master` -> "br0", `driver` -> "tg3"); None when absent."""
        return read_link_name(self.join(*parts))

    def listdir(self, *parts: str) -> list[str]:
        try:
            return os.listdir(self.join(*parts))
        except OSError:
            return []

    def realpath(self, *parts: str) -> str | None:
        path = self.join(*parts)
        return os.path.realpath(path) if os.path.lexists(path) else None


def is_live(sysfs: str) -> bool:
    """Whether the agent reads the running kernel rather than a tree: netlink, ethtool ioctls, perf events and
    /dev/kmsg describe only that kernel, so they are used only then."""
    return os.path.realpath(sysfs) == "/sys"
