"""Reads the cgroup hierarchies of a host (lxcwatch/kernel/cgroup.py parses them): found once, read every sample."""

import os

from lxcwatch.errors import ParseError
from lxcwatch.kernel.cgroup import (
    CONTROLLER_FILES,
    MOUNTINFO,
    CgroupUsage,
    ContainerCgroups,
    Layout,
    Mount,
    parse_mountinfo,
    parse_proc_cgroup,
    prune_init_scope,
    relative,
)
from lxcwatch.sources.root import Root, read_attr


class CgroupFs:
    """The cgroup hierarchies of the host at --path.procfs/--path.sysfs, found once at start."""

    def __init__(self, procfs: Root, sysfs: Root, live: bool):
        self.procfs, self.sysfs, self.live = procfs, sysfs, live
        self.layout = Layout.of(self._mounts())

    def _mounts(self) -> tuple[Mount, ...]:
        try:  # the whole file: read_attr stops at 4 KiB, and a host with many mounts has far more
            text = self.procfs.read(MOUNTINFO)
        except OSError:
            text = None
        if text:
            return parse_mountinfo(text)
        return self._mounts_from_tree()

    def _mounts_from_tree(self) -> tuple[Mount, ...]:
        """No mountinfo (a tree): SYSFS/fs/cgroup itself (cgroup2) or one directory per v1 hierarchy."""
        base = self.sysfs.join("fs", "cgroup")
        if os.path.exists(os.path.join(base, "cgroup.controllers")):
            return (Mount("/sys/fs/cgroup", "/", 2, frozenset()),)
        mounts = []
        for entry in sorted(self.sysfs.listdir("fs", "cgroup")):
            path = os.path.join(base, entry)
            if os.path.islink(path) or not os.path.exists(os.path.join(path, "cgroup.procs")):
                continue  # cpu -> cpu,cpuacct style aliases
            if entry == "unified" or os.path.exists(os.path.join(path, "cgroup.controllers")):
                mounts.append(Mount(f"/sys/fs/cgroup/{entry}", "/", 2, frozenset()))
            else:
                names = {"name=systemd" if entry == "systemd" else n for n in entry.split(",")}
                mounts.append(Mount(f"/sys/fs/cgroup/{entry}", "/", 1, frozenset(names)))
        return tuple(mounts)

    def host_path(self, mount: Mount, path: str) -> str | None:
        """Directory of hierarchy path `path` below this host's roots; mount points under /sys are taken
        relative to --path.sysfs, so a tree keeps its cgroups in SYSFS/fs/cgroup."""
        rest = relative(mount, path)
        if rest is None:
            return None
        point = mount.path
        if point == "/sys" or point.startswith("/sys/"):
            point = self.sysfs.path + point[len("/sys"):]
        elif not self.live:
            return None
        return os.path.join(point, rest) if rest else point

    def listing_dir(self) -> str | None:
        """The directory holding lxc.monitor.NAME: PID 1's cgroup (init.scope pruned) in the listed hierarchy."""
        found = self.layout.listing()
        if found is None:
            return None
        key, mount = found
        text = read_attr(self.procfs.join("1", "cgroup"))
        base = "/"
        if text:
            try:
                base = prune_init_scope(parse_proc_cgroup(text, "1/cgroup").get(key, "/"))
            except ParseError:
                base = "/"
        return self.host_path(mount, base)

    def dirs(self, proc_cgroup: dict[str, str]) -> ContainerCgroups:
        """A container's directories and files from its init's /proc/PID/cgroup."""
        dirs, files = {}, []
        for controller in ("freezer", "cpuacct", "memory", "pids"):
            found = self.layout.mount_of(controller)
            if found is None or found[0] not in proc_cgroup:
                continue
            path = self.host_path(found[1], proc_cgroup[found[0]])
            if path:
                dirs[controller] = path
                files += [(f"{path}/{name}", field, parse) for name, field, parse in CONTROLLER_FILES[controller, found[1].version]]
        return ContainerCgroups(dirs, tuple(files))

    @staticmethod
    def read(cg: ContainerCgroups, read=read_attr) -> tuple[CgroupUsage, list[BaseException]]:
        """Every value a container's cgroups have, and why the others are missing: a bad file fails its own
        value only (a broken memory file keeps the freezer state), a vanished cgroup all of its directory's.
        A file the kernel does not have (oom_kill before 4.13) is just absent. `read(path)` reads one file
        (default: open, read, close; lxc_host passes OpenFiles.read)."""
        values: dict[str, object] = {}
        errors: list[BaseException] = []
        for path, field, parse in cg.files:
            text = read(path)
            if text is None:
                directory = path.rpartition("/")[0]
                if not os.path.isdir(directory) and not any(e.filename == directory for e in errors
                                                            if isinstance(e, OSError)):
                    errors.append(FileNotFoundError(2, "cgroup vanished", directory))
                continue
            try:
                values[field] = parse(text)
            except ParseError as e:
                errors.append(e)
            except ValueError:
                errors.append(ParseError(path.rpartition("/")[2], f"expected a number, found {text[:40]!r}"))
        return CgroupUsage(**values), errors
