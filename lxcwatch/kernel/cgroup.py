"""Cgroup hierarchies (v1, v2 and hybrid hosts) and the controller files of a container's cgroup.

Mount points come from /proc/self/mountinfo (a tree without one: from the directories below
SYSFS/fs/cgroup); a process's place in each hierarchy from /proc/PID/cgroup. A v1 controller, where it is
mounted, wins over cgroup2: on a hybrid host (v1 controllers + cgroup2 at /sys/fs/cgroup/unified) LXC
freezes through v1 freezer.state, and lxc-info's CPU and memory figures are v1's."""

from dataclasses import dataclass

from lxcwatch.errors import ParseError

MOUNTINFO = "self/mountinfo"  # this process's mounts, relative to --path.procfs
V1_CONTROLLERS = frozenset({"cpuset", "cpu", "cpuacct", "blkio", "io", "memory", "devices", "freezer", "net_cls",
                            "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc"})
V2 = ""  # the key of the cgroup2 hierarchy in /proc/PID/cgroup ("0::/path")
# v1 memory.limit_in_bytes without a limit is PAGE_COUNTER_MAX pages: 0x7FFFFFFFFFFFF000 with 4 KiB pages.
V1_NO_LIMIT = 1 << 62
# Where to list lxc.monitor.* on a host without cgroup2: hierarchies LXC always joins, in this order.
V1_LISTING = ("freezer", "pids", "name=systemd", "memory", "cpuacct", "cpu")


@dataclass(frozen=True, slots=True)
class Mount:
    """One mounted cgroup hierarchy."""

    path: str  # mount point, as the host sees it (/sys/fs/cgroup/memory)
    root: str  # the hierarchy's path at the mount point ("/" unless mounted from inside a cgroup namespace)
    version: int  # 1 or 2
    controllers: frozenset[str]  # v1: memory, cpu, ..., name=systemd; v2: empty


def _unescape(field: str) -> str:
    """mountinfo octal escapes: \\040 (space), \\011, \\012, \\134."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        digits = field[i + 1:i + 4]
        if field[i] == "\\" and len(digits) == 3 and all(c in "01234567" for c in digits):  # not isdigit(): "\\999"
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> tuple[Mount, ...]:
    """The cgroup and cgroup2 mounts of a /proc/PID/mountinfo."""
    mounts = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            dash = fields.index("-", 6)
            fstype, options = fields[dash + 1], fields[dash + 3]
            root, point = fields[3], fields[4]
        except (ValueError, IndexError):
            raise ParseError(MOUNTINFO, "expected ID PARENT DEV ROOT POINT OPTIONS ... - TYPE SOURCE OPTIONS",
                             number) from None
        if fstype not in ("cgroup", "cgroup2"):
            continue
        point, root = _unescape(point), _unescape(root)
        if "\0" in point or "\0" in root:  # no path holds one: the file is not the kernel's
            raise ParseError(MOUNTINFO, "NUL byte in a mount path", number)
        if fstype == "cgroup2":
            mounts.append(Mount(point, root, 2, frozenset()))
        else:
            names = {o for o in options.split(",") if o in V1_CONTROLLERS or o.startswith("name=")}
            mounts.append(Mount(point, root, 1, frozenset(names)))
    return tuple(mounts)


def parse_proc_cgroup(text: str, source: str = "PID/cgroup") -> dict[str, str]:
    """/proc/PID/cgroup -> {controller or "name=X": path, and V2 (""): path on cgroup2}."""
    paths = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line:
            continue
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/") or "\0" in parts[2]:
            raise ParseError(source, f"expected ID:CONTROLLERS:/PATH, found {line[:60]!r}", number)
        _, controllers, path = parts
        if parts[0] == "0" and not controllers:
            paths[V2] = path
        for name in controllers.split(","):
            if name:
                paths[name] = path
    return paths


@dataclass(frozen=True)
class Layout:
    """Which hierarchy serves each controller lxcwatch reads."""

    v1: dict[str, Mount]  # controller (or name=X) -> its v1 mount
    v2: Mount | None

    @classmethod
    def of(cls, mounts: tuple[Mount, ...]) -> "Layout":
        """The first mount of each hierarchy wins; the ones under /sys/fs/cgroup come first."""
        ordered = sorted(mounts, key=lambda m: not m.path.startswith("/sys/fs/cgroup"))
        v1: dict[str, Mount] = {}
        v2 = None
        for m in ordered:
            if m.version == 2:
                v2 = v2 or m
            for name in m.controllers:
                v1.setdefault(name, m)
        return cls(v1, v2)

    @property
    def kind(self) -> str:
        if not self.v1:
            return "v2" if self.v2 else "none"
        return "hybrid" if self.v2 else "v1"

    def listing(self) -> tuple[str, Mount] | None:
        """(key, mount) of the hierarchy where lxc.monitor.* and lxc.payload.* are listed."""
        if self.v2:
            return V2, self.v2
        for name in V1_LISTING:
            if name in self.v1:
                return name, self.v1[name]
        return None

    def mount_of(self, controller: str) -> tuple[str, Mount] | None:
        """(key into /proc/PID/cgroup, mount) serving `controller`: v1 if mounted there, else cgroup2."""
        if controller in self.v1:
            return controller, self.v1[controller]
        return (V2, self.v2) if self.v2 else None


def relative(mount: Mount, path: str) -> str | None:
    """A hierarchy path as a path below the mount point; None when the mount cannot reach it."""
    root = mount.root.rstrip("/")
    if not root:
        rest = path
    elif path == root:
        rest = ""
    elif path.startswith(root + "/"):
        rest = path[len(root):]
    else:
        return None
    return rest.lstrip("/")


def prune_init_scope(path: str) -> str:
    """PID 1's cgroup without systemd's init.scope leaf: where LXC puts its containers (lxc.cgroup.relative=0)."""
    return path[: -len("/init.scope")] or "/" if path.endswith("/init.scope") else path


# ---------------------------------------------------------------- controller files (pure)


def parse_freezer_state(text: str) -> str:
    state = text.strip()
    if state not in ("THAWED", "FREEZING", "FROZEN"):
        raise ParseError("freezer.state", f"expected THAWED, FREEZING or FROZEN, found {state[:40]!r}")
    return state


@dataclass(frozen=True, slots=True)
class CgroupUsage:
    """What a container's cgroups say; None where this host's layout has no such file."""

    freezer: str = ""  # THAWED, FREEZING, FROZEN; "" when no freezer is available
    cpu_seconds: float | None = None
    memory_bytes: int | None = None
    memory_limit_bytes: int | None = None  # None: no limit
    oom_kills: int | None = None
    processes: int | None = None  # pids.current: tasks, as the pids controller counts them


def _key(name: str):
    """The value of one key of a flat keyed file (memory.events, memory.oom_control, cpu.stat, cgroup.events),
    None when the kernel does not print it (oom_kill before 4.13, frozen before 5.2). Reads every sample, so it
    looks for its line instead of parsing all of them; a malformed value raises ValueError."""
    prefix = name + " "

    def value(text: str) -> int | None:
        for line in text.split("\n"):
            if line.startswith(prefix):
                return u64(line[len(prefix):])
        return None

    return value


_oom_kill, _usage_usec, _frozen_flag = _key("oom_kill"), _key("usage_usec"), _key("frozen")


def u64(text: str) -> int:
    """A cgroup counter is a u64: anything else (a sign, 10**400) is a malformed file, not a number to divide."""
    value = int(text)
    if not 0 <= value < 2**64:
        raise ValueError(f"not a 64-bit counter: {text[:30]!r}")
    return value


def _v1_limit(text: str) -> int | None:
    limit = u64(text)
    return limit if limit < V1_NO_LIMIT else None


def _v2_max(text: str) -> int | None:
    return None if text == "max" else u64(text)


def _cpu_stat(text: str) -> float | None:
    usage = _usage_usec(text)
    return usage / 1e6 if usage is not None else None


def _frozen(text: str) -> str:
    return "FROZEN" if _frozen_flag(text) else "THAWED"


# (controller, version) -> the files read every sample: (file, CgroupUsage field, parser). A parser gets the
# stripped text and raises ValueError (a ParseError, or int()'s) on a malformed file.
CONTROLLER_FILES = {
    ("freezer", 1): (("freezer.state", "freezer", parse_freezer_state),),
    ("freezer", 2): (("cgroup.events", "freezer", _frozen),),  # "frozen" since 5.2
    ("cpuacct", 1): (("cpuacct.usage", "cpu_seconds", lambda t: u64(t) / 1e9),),
    ("cpuacct", 2): (("cpu.stat", "cpu_seconds", _cpu_stat),),
    ("memory", 1): (("memory.usage_in_bytes", "memory_bytes", u64),
                    ("memory.limit_in_bytes", "memory_limit_bytes", _v1_limit),
                    ("memory.oom_control", "oom_kills", _oom_kill)),  # oom_kill: 4.13+
    ("memory", 2): (("memory.current", "memory_bytes", u64),
                    ("memory.max", "memory_limit_bytes", _v2_max),
                    ("memory.events", "oom_kills", _oom_kill)),
    ("pids", 1): (("pids.current", "processes", u64),),
    ("pids", 2): (("pids.current", "processes", u64),),
}


@dataclass(frozen=True, slots=True)
class ContainerCgroups:
    """One container's cgroup directories (per controller lxcwatch reads) and the files read every sample."""

    dirs: dict[str, str]  # controller -> directory (freezer, cpuacct, memory, pids; absent when unavailable)
    files: tuple[tuple[str, str, object], ...]  # (path, CgroupUsage field, parser)
