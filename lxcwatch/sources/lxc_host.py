"""The lxc collector's I/O: the containers of the LXC paths, found and read without running any lxc-* command.

Per sample: one listing per LXC path (a directory with a `config` file is a container, as for lxc-ls; each
config is stat'ed every few samples and parsed again when it changed); one listing of the cgroup directory
holding lxc.monitor.NAME; then per running container /proc/INIT/stat (is it still the init we know?), its
cgroup files, /proc/INIT/net/dev (the container's own interfaces), and `operstate` and `master` of its host
veths. What a container start changes (monitor and init PIDs, cgroup directories, which host veths are its
own) is looked up once per run; the files of a run are kept open and read with one pread each
(openfiles.py). See docs/containers.md."""

import logging
import os
import re
from dataclasses import dataclass, field

from lxcwatch.core import lxc_config
from lxcwatch.core.containers import ContainerReading, LxcReading, Veth
from lxcwatch.core.probe_spec import ProbeSpec
from lxcwatch.errors import ParseError
from lxcwatch.kernel import net_dev, pid_stat, proc_stat
from lxcwatch.kernel.cgroup import CgroupUsage, ContainerCgroups, parse_proc_cgroup
from lxcwatch.kernel.link import CLASS_NET
from lxcwatch.kernel.lxc_monitor import (
    MonitorIdentity,
    is_namespace_init,
    parse_btime,
    parse_children,
    parse_monitor_cmdline,
    parse_pids,
)
from lxcwatch.sources import netns
from lxcwatch.sources.cgroup_fs import CgroupFs
from lxcwatch.sources.openfiles import OpenFiles
from lxcwatch.sources.probes import ProbeFile, ProbeRunner
from lxcwatch.sources.root import CONFIG_CAP, Root, open_regular, read_attr, read_text

log = logging.getLogger("lxcwatch.lxc")

DEFAULT_LXC_PATH = "/var/lib/lxc"
MONITOR, PAYLOAD = "lxc.monitor.", "lxc.payload."
NO_LO = ("lo",)  # a container's loopback: its traffic never leaves the container
CONFIG_RECHECK_SAMPLES = 5  # a changed config is read again within this many samples; a new one at once
_SUFFIX = re.compile(r"(.+)-\d+")  # LXC appends -N when lxc.payload.NAME is taken (a stale cgroup)


@dataclass
class _Config:
    lxc_path: str
    stamp: tuple
    config: lxc_config.LxcConfig | None
    error: str = ""


@dataclass
class _Monitor:
    pid: int
    entry: str  # lxc.monitor.NAME[-N] directory name
    identity: MonitorIdentity


@dataclass
class _Run:
    """What one run of a container keeps until its init exits."""

    monitor_pid: int
    init_pid: int
    starttime: int
    start_time: float
    cgroups: ContainerCgroups
    proc: str  # PROCFS/INIT
    interfaces: tuple[str, ...] | None = None  # the interfaces `veths` were resolved for
    veths: tuple[tuple[str, str, str], ...] = ()  # (host device, interface, expected bridge)
    # The fast path once every file is kept open: one pread per file, no lookups (see _sample_fast).
    stat_fd: int | None = None
    net_fd: int | None = None
    plan: tuple[tuple[int, str, object], ...] | None = None  # (fd, CgroupUsage field, parser)
    interface_set: set[str] = field(default_factory=set)
    veth_fds: tuple[tuple[int, int, str, str, str], ...] | None = None  # (operstate fd, dir fd, device, ...)


def _read_bytes(path: str) -> bytes | None:
    """A monitor's /proc/PID/cmdline; its first 64 KiB hold the container's name."""
    try:
        fd = open_regular(path)
    except OSError:
        return None
    try:
        return os.read(fd, 65536)
    except OSError:
        return None
    finally:
        os.close(fd)


class LxcHost:
    def __init__(self, procfs: Root, sysfs: Root, lxc_paths: tuple[str, ...], live: bool,
                 probes_file: str | None = None, probes_interval: float = 10.0):
        self.procfs, self.sysfs, self.live = procfs, sysfs, live
        self.lxc_paths = tuple(lxc_paths)
        self._class_net = sysfs.join(CLASS_NET)
        self._cgroups: CgroupFs | None = None
        self._listing: str | None = None
        self._btime: int | None = None
        self._configs: dict[str, _Config] = {}  # container dir -> parsed config
        self._monitors: dict[str, _Monitor] = {}  # lxc.monitor.* entry -> monitor
        self._runs: dict[str, _Run] = {}  # container name -> its current run
        self._host_names: dict[int, str] = {}  # host ifindex -> link name
        self._errors: dict[str, str] = {}
        self._noted: set[str] = set()  # one-time notices already logged
        self._realpaths: dict[str, str] = {}
        self._samples = 0
        self.files = OpenFiles()  # per-container files read every sample, kept open
        self.probe_file = ProbeFile(probes_file) if probes_file else None
        self.runner = ProbeRunner(probes_interval)

    def close(self) -> None:
        self.runner.stop()
        self.files.close()

    # ------------------------------------------------------------ one sample

    def read(self) -> LxcReading:
        if self._cgroups is None:
            self._cgroups = CgroupFs(self.procfs, self.sysfs, self.live)
            self._listing = self._cgroups.listing_dir()
        configs = self._scan_configs()
        monitors = self._scan_monitors(configs)
        readings = []
        for name in sorted(configs):
            path, cfg = configs[name]
            reading = self._read_container(name, path, cfg, monitors.get(name))
            readings.append(reading)
        self._log_errors(readings)
        for name in set(self._runs) - {r.name for r in readings if r.init_pid is not None}:
            self._end(self._runs.pop(name))
        return LxcReading(tuple(readings), self._probes(configs))

    def _scan_configs(self) -> dict[str, tuple[str, _Config]]:
        """{name: (LXC path, config)}; a name in two LXC paths is taken from the first."""
        found: dict[str, tuple[str, _Config]] = {}
        seen_dirs = set()
        self._samples += 1
        recheck = self._samples % CONFIG_RECHECK_SAMPLES == 0  # edits are rare: stat every config now and then
        for lxc_path in self.lxc_paths:
            try:
                entries = sorted(os.scandir(lxc_path), key=lambda e: e.name)
            except FileNotFoundError:  # no /var/lib/lxc: LXC is not installed (yet)
                self._note(f"nopath:{lxc_path}", "LXC path not found; no containers there until it exists",
                           level=logging.INFO, lxc_path=lxc_path)
                continue
            for entry in entries:
                config_path = entry.path + "/config"
                cached = self._configs.get(entry.path)
                if cached is not None and not recheck:
                    config = cached
                else:
                    try:
                        st = os.stat(config_path)
                        config = self._config(entry.name, lxc_path, config_path, st)
                    except PermissionError as e:  # LXC makes container directories 0770 root: say so, not "none"
                        config = _Config(lxc_path, None, None, f"{config_path}: {e.strerror} "
                                                               "(needs root or CAP_DAC_READ_SEARCH)")
                    except OSError:
                        continue  # no config: not a container (lxc-ls agrees)
                if entry.name in found:
                    self._note(f"dup:{entry.path}", "container name already taken by an earlier LXC path; skipped",
                               container=entry.name, lxc_path=lxc_path, taken_by=found[entry.name][0])
                    continue
                seen_dirs.add(entry.path)
                found[entry.name] = (lxc_path, config)
        for gone in set(self._configs) - seen_dirs:
            del self._configs[gone]
        return found

    def _config(self, name: str, lxc_path: str, path: str, st: os.stat_result) -> _Config:
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._configs.get(os.path.dirname(path))
        if cached is not None and cached.stamp == stamp:
            return cached
        try:
            entry = _Config(lxc_path, stamp, lxc_config.parse(read_text(path, CONFIG_CAP), name, path))
        except ParseError as e:
            entry = _Config(lxc_path, stamp, None, str(e))
        except OSError as e:
            entry = _Config(lxc_path, stamp, None, f"{path}: {e.strerror or e}")
        self._configs[os.path.dirname(path)] = entry
        return entry

    def _scan_monitors(self, configs: dict[str, tuple[str, _Config]]) -> dict[str, _Monitor]:
        """{container name: its monitor} from the lxc.monitor.* cgroups of the listed hierarchy."""
        entries = [e for e in (os.listdir(self._listing) if self._listing and os.path.isdir(self._listing) else ())
                   if e.startswith(MONITOR)]
        for gone in set(self._monitors) - set(entries):
            del self._monitors[gone]
        out: dict[str, _Monitor] = {}
        for entry in sorted(entries):
            monitor = self._monitors.get(entry) or self._identify_monitor(entry, configs)
            if monitor is None:
                continue
            self._monitors[entry] = monitor
            name = self._owner(monitor.identity, configs)
            if name is not None and name not in out:
                out[name] = monitor
        return out

    def _identify_monitor(self, entry: str, configs) -> _Monitor | None:
        text = read_attr(os.path.join(self._listing, entry, "cgroup.procs"))
        pids = parse_pids(text) if text else ()
        for pid in pids:
            identity = parse_monitor_cmdline(_read_bytes(self.procfs.join(str(pid), "cmdline")) or b"")
            if identity is not None:
                return _Monitor(pid, entry, identity)
        if not pids:
            return None  # the monitor has not entered its cgroup yet, or has left it
        name = entry[len(MONITOR):]
        m = _SUFFIX.fullmatch(name)
        if name not in configs and m and m.group(1) in configs:
            name = m.group(1)
        return _Monitor(pids[0], entry, MonitorIdentity(None, name))

    def _owner(self, identity: MonitorIdentity, configs) -> str | None:
        """The configured container a monitor serves: same name, and same LXC path when the monitor names one.
        A tree's monitors name host paths (/var/lib/lxc): there, TREE/var/lib/lxc is the same path."""
        found = configs.get(identity.name)
        if found is None:
            return None
        if identity.lxc_path is None:
            return identity.name
        seen = os.path.normpath(identity.lxc_path)
        mine = self._realpath(found[0])
        if mine == self._realpath(seen) or (not self.live and mine.endswith(seen)):
            return identity.name
        return None

    def _realpath(self, path: str) -> str:
        if path not in self._realpaths:
            self._realpaths[path] = os.path.realpath(path)
        return self._realpaths[path]

    # ------------------------------------------------------------ one container

    def _read_container(self, name: str, lxc_path: str, cfg: _Config, monitor: _Monitor | None) -> ContainerReading:
        autostart = cfg.config.autostart if cfg.config else None
        if monitor is None:
            return ContainerReading(name, lxc_path, autostart, error=cfg.error)
        try:
            run = self._run(name, monitor)
        except (OSError, ParseError) as e:
            return ContainerReading(name, lxc_path, autostart, True, error=_join(cfg.error, _describe(e)))
        if run is None:
            return ContainerReading(name, lxc_path, autostart, True, error=cfg.error)
        fast = self._sample_fast(run)
        if fast is not None:
            usage, interfaces, veths = fast
            return ContainerReading(name, lxc_path, autostart, True, run.init_pid, run.start_time, usage, interfaces,
                                    veths, cfg.error)
        usage, errors = self._cgroups.read(run.cgroups, self.files.read)
        interfaces: dict = {}
        veths: tuple = ()
        try:
            interfaces = self._interfaces(run)
            veths = self._veths(run, interfaces, cfg.config)
        except (OSError, ParseError) as e:
            errors.append(e)
        error = cfg.error
        if errors:
            if not self._alive(run):  # it stopped while we read: no error, just no longer running
                self._end(self._runs.pop(name))
                return ContainerReading(name, lxc_path, autostart, True, error=cfg.error)
            error = _join(cfg.error, *map(_describe, errors))
        else:
            self._prepare_fast(run)
        return ContainerReading(name, lxc_path, autostart, True, run.init_pid, run.start_time, usage, interfaces, veths,
                                error)

    def _sample_fast(self, run: _Run):
        """(usage, interfaces, veths) with one pread per file on descriptors kept since the last clean sample;
        None when any file fails or the interfaces changed: the slow path then names the problem."""
        if run.plan is None:
            return None
        pread = os.pread
        try:
            usage = CgroupUsage(**{field: parse(pread(fd, 65536, 0).decode().strip()) for fd, field, parse in run.plan})
            interfaces = net_dev.parse(pread(run.net_fd, 65536, 0).decode(), NO_LO)
            veths = tuple(Veth(device, interface, bridge, _master(dir_fd), pread(fd, 64, 0).decode().strip())
                          for fd, dir_fd, device, interface, bridge in run.veth_fds)
        except (OSError, ValueError):
            run.plan = None
            return None
        if interfaces.keys() != run.interface_set:  # added or removed: resolve its veths again
            run.plan = None
            return None
        return usage, interfaces, veths

    def _prepare_fast(self, run: _Run) -> None:
        """Take the fast path from the next sample on if every file of this run is kept open."""
        plan = []
        for path, value, parse in run.cgroups.files:
            fd = self.files.fd(path)
            if fd is not None:
                plan.append((fd, value, parse))
            elif os.path.exists(path):
                return  # there, but over the descriptor budget: stay on the slow path
            # else a file this host does not have (pids.current without the pids controller): never read
        net_fd = self.files.fd(os.path.join(run.proc, net_dev.SOURCE))
        stat_fd = self.files.fd(os.path.join(run.proc, pid_stat.SOURCE))
        veth_fds = []
        for device, interface, bridge in run.veths:
            base = f"{self._class_net}/{device}"
            fd, dir_fd = self.files.fd(base + "/operstate"), self.files.directory(base)
            if fd is None or dir_fd is None:
                return
            veth_fds.append((fd, dir_fd, device, interface, bridge))
        if net_fd is None or stat_fd is None or run.interfaces is None:
            return
        run.interface_set = set(run.interfaces)
        run.plan, run.net_fd, run.stat_fd, run.veth_fds = tuple(plan), net_fd, stat_fd, tuple(veth_fds)

    def _alive(self, run: _Run) -> bool:
        """Whether the init is still the process we know, child of the same monitor. While its stat file is kept
        open that is whether the file still answers: the descriptor follows the process, not its PID."""
        if run.plan is not None:
            try:
                os.pread(run.stat_fd, 64, 0)
                # A tree's files are plain files: one removed (a replayed exit) still reads through its descriptor.
                return self.live or os.path.exists(os.path.join(run.proc, pid_stat.SOURCE))
            except OSError:  # ESRCH: it exited
                run.plan = None
                return False
        path = os.path.join(run.proc, pid_stat.SOURCE)
        kept = self.files.kept(path)
        text = self.files.read(path)
        if text is None:
            return False
        if kept:
            return True
        stat = pid_stat.parse(text)
        return stat.ppid == run.monitor_pid and stat.starttime == run.starttime

    def _run(self, name: str, monitor: _Monitor) -> _Run | None:
        run = self._runs.get(name)
        if run is not None and run.monitor_pid == monitor.pid and self._alive(run):
            return run
        if run is not None:
            self._end(self._runs.pop(name))
        found = self._find_init(monitor)
        if found is None:
            self._monitors.pop(monitor.entry, None)  # look at the monitor again next sample
            return None
        pid, stat = found
        text = read_attr(self.procfs.join(str(pid), "cgroup"))
        if text is None:
            return None
        cgroups = self._cgroups.dirs(parse_proc_cgroup(text, f"{pid}/cgroup"))
        if self._btime is None:
            self._btime = parse_btime(self.procfs.read(proc_stat.SOURCE))
        run = _Run(monitor.pid, pid, stat.starttime, self._btime + stat.starttime / proc_stat.USER_HZ, cgroups,
                   self.procfs.join(str(pid)))
        self._runs[name] = run
        return run

    def _end(self, run: _Run) -> None:
        """Close what a run kept open: its init's files, its cgroup files, its veths' operstate."""
        dirs = list(run.cgroups.dirs.values()) + [f"{self._class_net}/{device}" for device, _, _ in run.veths]
        self.files.forget_under(tuple(d + "/" for d in [run.proc, *dirs]))

    def _find_init(self, monitor: _Monitor) -> tuple[int, pid_stat.PidStat] | None:
        """The monitor's child that is PID 1 of its own PID namespace. Children come from
        /proc/PID/task/PID/children (CONFIG_PROC_CHILDREN), else from the lxc.payload cgroup next door."""
        pid = str(monitor.pid)
        text = read_attr(self.procfs.join(pid, "task", pid, "children"))
        if text is not None:
            candidates = parse_children(text)
        else:
            procs = read_attr(os.path.join(self._listing, PAYLOAD + monitor.entry[len(MONITOR):], "cgroup.procs"))
            candidates = parse_pids(procs) if procs else ()
        for child in candidates:
            stat_text = read_attr(self.procfs.join(str(child), "stat"))
            status = read_attr(self.procfs.join(str(child), "status"))
            if stat_text is None or status is None:
                continue
            stat = pid_stat.parse(stat_text)
            if stat.ppid == monitor.pid and is_namespace_init(status):
                return child, stat
        return None

    def _interfaces(self, run: _Run) -> dict[str, net_dev.NetDevCounters]:
        text = self.files.read(os.path.join(run.proc, net_dev.SOURCE))
        if text is None:
            raise FileNotFoundError(2, "No such file or directory", os.path.join(run.proc, net_dev.SOURCE))
        try:
            return net_dev.parse(text, NO_LO)
        except ParseError as e:  # name the container's file, not the host's net/dev
            raise ParseError(f"{run.init_pid}/net/dev", str(e).partition(": ")[2], e.line) from None

    # ------------------------------------------------------------ host veths

    def _veths(self, run: _Run, interfaces: dict, config: lxc_config.LxcConfig | None) -> tuple[Veth, ...]:
        names = tuple(sorted(interfaces))
        if run.interfaces != names:
            run.veths = self._resolve_veths(run.init_pid, names, config)
            run.interfaces = names
        out = []
        for device, interface, bridge in run.veths:
            base = f"{self._class_net}/{device}"
            operstate = self.files.read(base + "/operstate")
            if operstate is None:
                run.interfaces = None  # renamed or deleted: find it again next sample
                continue
            try:
                master = os.readlink(base + "/master").rpartition("/")[2]
            except OSError:
                master = ""
            out.append(Veth(device, interface, bridge, master, operstate))
        return tuple(out)

    def _resolve_veths(self, pid: int, names: tuple[str, ...], config) -> tuple[tuple[str, str, str], ...]:
        """Which host links are the peers of the container's veths: netlink on the live host, else the
        container's own sysfs (/proc/INIT/root/sys/class/net/IF/iflink, mounted by most templates)."""
        peers: dict[str, tuple[int, int]] = {}
        if self.live:
            try:
                peers = netns.veth_peers(self.procfs.join(str(pid), "ns", "net"))
            except OSError as e:
                self._note(f"netns:{pid}", "netlink could not list the container's links; trying its sysfs",
                           err=_describe(e))
        for name in names:
            if name not in peers:
                inside = self.procfs.join(str(pid), "root", "sys", CLASS_NET, name)
                ifindex, iflink = read_attr(inside + "/ifindex"), read_attr(inside + "/iflink")
                if ifindex and iflink and ifindex.isdigit() and iflink.isdigit() and ifindex != iflink:
                    peers[name] = (int(ifindex), int(iflink))
        by_interface = config.veth_names() if config else {}
        by_pair = {n.veth_pair: n for n in (config.networks if config else ()) if n.veth_pair}
        out = []
        for name in names:
            if name not in peers:
                continue
            inside_index, host_index = peers[name]
            device = self._host_name(host_index)
            if device is None or self.sysfs.int_attr(CLASS_NET, device, "iflink") not in (inside_index, None):
                continue  # not a peer of ours after all (a veth whose other end is in a third namespace)
            net = by_pair.get(device) or by_interface.get(name)
            out.append((device, name, net.link if net else ""))
        return tuple(out)

    def _host_name(self, ifindex: int) -> str | None:
        name = self._host_names.get(ifindex)
        if name is not None and self.sysfs.int_attr(CLASS_NET, name, "ifindex") == ifindex:
            return name
        self._host_names = {}
        for link in self.sysfs.listdir(CLASS_NET):
            index = self.sysfs.int_attr(CLASS_NET, link, "ifindex")
            if index is not None:
                self._host_names[index] = link
        return self._host_names.get(ifindex)

    # ------------------------------------------------------------ probes and logs

    def _probes(self, configs: dict[str, tuple[str, _Config]]):
        declared: dict[tuple[str, str], ProbeSpec] = {}
        for _, cfg in configs.values():
            for spec in cfg.config.probes if cfg.config else ():
                declared[spec.key] = spec
        for spec in self.probe_file.specs() if self.probe_file else ():
            if spec.container in configs:
                declared[spec.key] = spec  # the file wins over the container's config
            else:
                self._note(f"probe:{spec.key}", "probe of an unknown container; not run until it exists",
                           container=spec.container, probe=spec.name)
        self.runner.update(tuple(declared[k] for k in sorted(declared)))
        return tuple(r for r in self.runner.results() if r.container in configs)

    def _note(self, key: str, message: str, level: int = logging.WARNING, **fields) -> None:
        if key not in self._noted:
            self._noted.add(key)
            log.log(level, message, extra=fields)

    def _log_errors(self, readings: list[ContainerReading]) -> None:
        now = {r.name: r.error for r in readings if r.error}
        for name, error in now.items():
            if self._errors.get(name) != error:
                log.error("container not fully read", extra={"container": name, "err": error})
        present = {r.name for r in readings}
        for name in (set(self._errors) - set(now)) & present:
            log.info("container read again", extra={"container": name})
        self._errors = now


def _master(dir_fd: int) -> str:
    """The bridge a link is a port of, from its sysfs directory's `master` link; "" when none."""
    try:
        return os.readlink("master", dir_fd=dir_fd).rpartition("/")[2]
    except FileNotFoundError:
        return ""


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    return str(error)


def _join(*messages: str) -> str:
    return "; ".join(m for m in messages if m)
