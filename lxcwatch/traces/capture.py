"""Reads the procfs and sysfs files the agent depends on (docs/contract.md) into a trace Tree."""

import os

from lxcwatch import collectors
from lxcwatch.kernel import ethtool_coalesce, napi_poll
from lxcwatch.kernel.kthread import identify
from lxcwatch.sources.host import live_coalesce, napi_poll_devices
from lxcwatch.sources.kthreads import RESCAN_SAMPLES
from lxcwatch.sources.nics import NicDirectory
from lxcwatch.sources.perf_napi_poll import PerfNapiPolls
from lxcwatch.sources.root import ATTR_CAP, PROC_CAP, PROC_CAPS, Root
from lxcwatch.traces.trace import Tree

# What the collectors read from procfs (their `files`): on a tree, files no kernel has (napi_poll.SOURCE,
# ethtool_coalesce.SOURCE) are copied; on the live host LiveCounts writes them.
PROC_FILES = tuple(dict.fromkeys(f for c in collectors.ALL.values() for f in c.files))
# Attributes that change while a host runs: re-read every sample (docs/trace-format.md); `master` is a link.
LINK_VOLATILE = ("flags", "operstate", "carrier", "threaded", "napi_defer_hard_irqs", "gro_flush_timeout")
LINK_ATTRS = ("ifindex", "iflink", "type", "uevent", "brport/state") + LINK_VOLATILE
LINK_DIRS_WITH_ATTRS = ("bridge", "bonding")  # presence marks the kind; a few small attrs keep them in git


class Reader:
    """Copies paths of one Root (procfs or sysfs) into a Tree, under the trace prefix (proc or sys)."""

    def __init__(self, root: str, prefix: str, tree: Tree):
        self.root = Root(root)
        self.prefix = prefix
        self.tree = tree

    def file(self, rel: str) -> bool:
        """One regular file within its cap (lxcwatch/sources/root.py); unreadable, refused or absent ("not supported")
        is left out."""
        limit = PROC_CAPS.get(rel, PROC_CAP) if self.prefix == "proc" else ATTR_CAP
        try:
            data = self.root.read_bytes(rel, limit=limit)
        except OSError:
            return False
        self.tree.files[f"{self.prefix}/{rel}"] = data.decode("utf-8", "surrogateescape")
        return True

    def link(self, rel: str) -> str | None:
        """A relative symlink that stays inside the root; returns its target relative to the root."""
        target = self.root.readlink(rel)
        if target is None:
            return None
        resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
        if os.path.isabs(target) or resolved.startswith(".."):
            return None
        self.tree.links[f"{self.prefix}/{rel}"] = target
        return resolved

    def listdir(self, rel: str) -> list[str]:
        return sorted(self.root.listdir(rel))

    def real(self, rel: str) -> str:
        """The path of rel with every symlink resolved, relative to the root."""
        return os.path.relpath(os.path.realpath(self.root.join(rel)), os.path.realpath(self.root.path))


def capture_proc(proc: Reader) -> None:
    for rel in PROC_FILES:
        proc.file(rel)


def capture_kthreads(proc: Reader) -> None:
    """comm and stat of ksoftirqd/N and napi/* threads (lxcwatch.kthreads), found by walking the PIDs."""
    for pid in proc.listdir("."):
        if not pid.isdigit():
            continue
        comm = proc.root.attr(pid, "comm")
        if comm is None:
            continue
        if identify(int(pid), comm) and proc.file(f"{pid}/stat"):
            proc.file(f"{pid}/comm")


def capture_link(sysfs: Reader, name: str) -> str | None:
    """One interface: its class/net link, attributes, kind markers and relation links; returns its device dir."""
    sysfs.link(f"class/net/{name}")  # a symlink in every kernel; should it be a directory, its files are kept
    base = sysfs.real(f"class/net/{name}")
    for attr in LINK_ATTRS:
        sysfs.file(f"{base}/{attr}")
    for sub in LINK_DIRS_WITH_ATTRS:
        for entry in sysfs.listdir(f"{base}/{sub}"):
            sysfs.file(f"{base}/{sub}/{entry}")
    for entry in sysfs.listdir(base):
        if entry == "master" or entry.startswith("lower_"):
            sysfs.link(f"{base}/{entry}")
    for port in sysfs.listdir(f"{base}/brif"):
        sysfs.link(f"{base}/brif/{port}")
    if sysfs.link(f"{base}/device") is None:
        return None
    return sysfs.real(f"{base}/device")


def capture_device(sysfs: Reader, device: str) -> None:
    """A bus device: driver link (+ the driver's back link and module version), irq, msi_irqs/."""
    sysfs.file(f"{device}/irq")
    for irq in sysfs.listdir(f"{device}/msi_irqs"):
        sysfs.file(f"{device}/msi_irqs/{irq}")
    driver = sysfs.link(f"{device}/driver")
    if driver is None:
        return
    sysfs.link(f"{driver}/{os.path.basename(device)}")
    module = sysfs.link(f"{driver}/module")
    module = module or f"module/{os.path.basename(driver).replace('-', '_')}"
    sysfs.file(f"{module}/version")


def capture_sys(sysfs: Reader) -> None:
    for name in sysfs.listdir("class/net"):
        device = capture_link(sysfs, name)
        if device is None:
            continue
        capture_device(sysfs, device)
        if os.path.basename(device).startswith("virtio"):  # virtio_net: the PCI function is the parent
            capture_device(sysfs, os.path.dirname(device))


def full(procfs: str, sysfs: str) -> Tree:
    """Everything the agent reads: what docs/trace-format.md calls the whole tree."""
    tree = Tree()
    proc = Reader(procfs, "proc", tree)
    capture_proc(proc)
    capture_kthreads(proc)
    capture_sys(Reader(sysfs, "sys", tree))
    return tree


def volatile(procfs: str, sysfs: str, prev: Tree, names: list[str]) -> Tree:
    """prev with only what changes re-read: procfs files, the state of the interfaces `names`, thread CPU time.
    Cheap: no walks, no symlinks resolved."""
    tree = Tree(dict(prev.files), dict(prev.links))
    proc, sys_ = Reader(procfs, "proc", tree), Reader(sysfs, "sys", tree)
    for rel in PROC_FILES:
        _refresh(proc, rel)
    for name in names:
        target = prev.links.get(f"sys/class/net/{name}")
        base = os.path.normpath(os.path.join("class/net", target)) if target else f"class/net/{name}"
        for attr in LINK_VOLATILE:
            _refresh(sys_, f"{base}/{attr}")
        _refresh(sys_, f"{base}/master", link=True)
    for path in prev.files:
        pid, _, name = path.removeprefix("proc/").partition("/")
        if name == "comm" and pid.isdigit() and not _refresh(proc, f"{pid}/stat"):
            del tree.files[path]  # the thread is gone: so is its directory
    return tree


def _refresh(reader: Reader, rel: str, link: bool = False) -> bool:
    """Re-read one path; an absent one leaves the tree."""
    if reader.link(rel) if link else reader.file(rel):
        return True
    entries = reader.tree.links if link else reader.tree.files
    entries.pop(f"{reader.prefix}/{rel}", None)
    return False


class LiveCounts:
    """On the live host, the two files no kernel has (docs/contract.md): the tracepoint's poll counts of the
    devices the napi_poll collector counts, and the NICs' interrupt coalescing."""

    def __init__(self, sysfs: str, include=None):
        self.nics = NicDirectory(Root(sysfs))
        self.include = include
        self.polls = PerfNapiPolls(warn=False)
        self.unavailable = ""  # why the trace carries no poll counts ("" while it does)

    def add(self, tree: Tree) -> None:
        reading = self.polls.read(napi_poll_devices(self.nics, self.include))
        self.unavailable = reading.unavailable
        polls_path, coalesce_path = f"proc/{napi_poll.SOURCE}", f"proc/{ethtool_coalesce.SOURCE}"
        if reading.unavailable:
            tree.files.pop(polls_path, None)
        else:
            tree.files[polls_path] = napi_poll.format_counts(reading.counts)
        tree.files[coalesce_path] = ethtool_coalesce.format_values(live_coalesce(self.nics.current()))

    def close(self) -> None:
        self.polls.close()


class Capturer:
    """Successive captures: a full one when the set of interfaces changes (and every RESCAN_SAMPLES samples,
    to find new kernel threads and changed IRQs), a volatile one otherwise. `live` adds the live host's files."""

    def __init__(self, procfs: str, sysfs: str, live: LiveCounts | None = None):
        self.procfs = procfs
        self.sysfs = sysfs
        self.live = live
        self.tree: Tree | None = None
        self._names: list[str] = []
        self._age = 0

    def sample(self) -> Tree:
        names = Reader(self.sysfs, "sys", Tree()).listdir("class/net")
        self._age += 1
        if self.tree is None or names != self._names or self._age >= RESCAN_SAMPLES:
            self.tree, self._names, self._age = full(self.procfs, self.sysfs), names, 0
        else:
            self.tree = volatile(self.procfs, self.sysfs, self.tree, names)
        if self.live is not None:
            self.live.add(self.tree)
        return self.tree
