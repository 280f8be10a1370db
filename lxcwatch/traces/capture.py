"""Reads into a trace Tree what each collector declares it reads: its procfs `files` and its `capture` hook."""

import os

from lxcwatch import collectors
from lxcwatch.kernel import ethtool_coalesce, napi_poll
from lxcwatch.kernel.link import CLASS_NET
from lxcwatch.sources.host import live_coalesce, napi_poll_devices
from lxcwatch.sources.kthreads import RESCAN_SAMPLES
from lxcwatch.sources.nics import NicDirectory
from lxcwatch.sources.perf_napi_poll import PerfNapiPolls
from lxcwatch.sources.root import ATTR_CAP, PROC_CAP, PROC_CAPS, Root
from lxcwatch.traces.trace import Tree

# What the collectors read from procfs (their `files`): on a tree, files no kernel has (napi_poll.SOURCE,
# ethtool_coalesce.SOURCE) are copied; on the live host LiveCounts writes them.
PROC_FILES = tuple(dict.fromkeys(f for c in collectors.ALL.values() for f in c.files))


class Reader:
    """Copies paths of one Root (procfs or sysfs) into a Tree, under the trace prefix (proc or sys). `volatile`
    holds what a volatile capture re-reads: rel -> (a link?, the file it lives and dies with, or None)."""

    def __init__(self, root: str, prefix: str, tree: Tree):
        self.root = Root(root)
        self.prefix = prefix
        self.tree = tree
        self.volatile: dict[str, tuple[bool, str | None]] = {}

    def file(self, rel: str, volatile: bool = False, owner: str | None = None) -> bool:
        """One regular file within its cap (lxcwatch/sources/root.py); unreadable, refused or absent ("not supported")
        is left out. `volatile`: re-read every sample, while `owner` (if any) is in the tree, which goes with it."""
        if volatile:
            self.volatile[rel] = (False, owner)
        limit = PROC_CAPS.get(rel, PROC_CAP) if self.prefix == "proc" else ATTR_CAP
        try:
            data = self.root.read_bytes(rel, limit=limit)
        except OSError:
            return False
        self.tree.files[f"{self.prefix}/{rel}"] = data.decode("utf-8", "surrogateescape")
        return True

    def link(self, rel: str, volatile: bool = False) -> str | None:
        """A relative symlink that stays inside the root; returns its target relative to the root."""
        if volatile:
            self.volatile[rel] = (True, None)
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


class Capture:
    """One full capture as a collector's `capture` hook sees it: the procfs and sysfs Readers, and the
    interfaces with their directories and bus devices resolved once for every hook."""

    def __init__(self, proc: Reader, sys_: Reader):
        self.proc, self.sys = proc, sys_
        self._interfaces: list[tuple[str, str]] | None = None
        self._devices: dict[str, str | None] = {}

    def interfaces(self) -> list[tuple[str, str]]:
        """(name, its directory relative to sysfs) of every class/net entry, its class/net link recorded."""
        if self._interfaces is None:
            self._interfaces = []
            for name in self.sys.listdir(CLASS_NET):
                self.sys.link(f"{CLASS_NET}/{name}")  # a symlink in every kernel; should it be a directory, its files are kept
                self._interfaces.append((name, self.sys.real(f"{CLASS_NET}/{name}")))
        return self._interfaces

    def device(self, base: str) -> str | None:
        """The bus device of the interface directory `base` (its `device` link recorded); None when virtual."""
        if base not in self._devices:
            self._devices[base] = None if self.sys.link(f"{base}/device") is None else self.sys.real(f"{base}/device")
        return self._devices[base]


def _full(procfs: str, sysfs: str) -> tuple[Tree, Reader, Reader]:
    tree = Tree()
    proc, sys_ = Reader(procfs, "proc", tree), Reader(sysfs, "sys", tree)
    for rel in PROC_FILES:
        proc.file(rel)
    capture = Capture(proc, sys_)
    capture.interfaces()
    for c in collectors.ALL.values():
        if c.capture is not None:
            c.capture(capture)
    return tree, proc, sys_


def full(procfs: str, sysfs: str) -> Tree:
    """Everything the agent reads: what docs/trace-format.md calls the whole tree."""
    return _full(procfs, sysfs)[0]


def volatile(procfs: str, sysfs: str, prev: Tree, plan: tuple[Reader, Reader]) -> Tree:
    """prev with only what changes re-read: procfs files and what the last full capture (`plan`, its Readers)
    marked volatile. Cheap: no walks, no symlinks resolved."""
    tree = Tree(dict(prev.files), dict(prev.links))
    proc, sys_ = Reader(procfs, "proc", tree), Reader(sysfs, "sys", tree)
    for rel in PROC_FILES:
        _refresh(proc, rel)
    for reader, marked in zip((proc, sys_), plan):
        for rel, (link, owner) in marked.volatile.items():
            owned = f"{reader.prefix}/{owner}" if owner else None
            if owned and owned not in tree.files:
                continue
            if not _refresh(reader, rel, link) and owned:
                del tree.files[owned]  # a process gone: so is its directory
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
        self._plan: tuple[Reader, Reader] | None = None
        self._names: list[str] = []
        self._age = 0

    def sample(self) -> Tree:
        names = Reader(self.sysfs, "sys", Tree()).listdir(CLASS_NET)
        self._age += 1
        if self.tree is None or names != self._names or self._age >= RESCAN_SAMPLES:
            self.tree, *plan = _full(self.procfs, self.sysfs)
            self._plan, self._names, self._age = tuple(plan), names, 0
        else:
            self.tree = volatile(self.procfs, self.sysfs, self.tree, self._plan)
        if self.live is not None:
            self.live.add(self.tree)
        return self.tree
