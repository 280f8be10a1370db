"""The kernel's count of NAPI polls per device: perf_event_open counting events on napi:napi_poll (no BPF)."""

import contextlib
import ctypes
import errno
import fcntl
import logging
import operator
import os
import platform
import resource
import struct

from lxcwatch.kernel import cpu_list
from lxcwatch.kernel.napi_poll import NapiPollReading, NapiPolls

log = logging.getLogger("lxcwatch.napi_poll")

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")  # where systemd mounts it; the pre-4.1 place
TRACEPOINT = os.path.join("events", "napi", "napi_poll", "id")
# The kernel complains ("netif_napi_add_weight() called with weight N") above NAPI_POLL_WEIGHT, so every
# in-tree NAPI polls with a budget of 1..64: its weight, BUSY_POLL_BUDGET (8) when busy-polled, or the
# epoll busy-poll budget (<= 64 unless CAP_NET_ADMIN raised it). netpoll's TX-only polls pass 0 (never full).
MAX_WEIGHT = 64
# NAPI_POLL_WEIGHT's branch first, and the other budgets behind one `budget != 64`: a poll of the usual
# weight that is not full costs three comparisons, not 65. BUSY_POLL_BUDGET (8) heads the others.
_OTHER_BUDGETS = (8,) + tuple(w for w in range(MAX_WEIGHT - 1, 0, -1) if w != 8)
KINDS = ("polls", "full", "large_budget")  # the counting events of one device, in NapiPolls' field order

_PERF_TYPE_TRACEPOINT = 2
_PERF_FORMAT_GROUP = 1 << 3
_PERF_FLAG_FD_CLOEXEC = 1 << 3
_ATTR_DISABLED = 1 << 0
_IOC_ENABLE, _IOC_FLAG_GROUP = 0x2400, 1
_IOC_SET_FILTER = 0x40000000 | (ctypes.sizeof(ctypes.c_void_p) << 16) | (0x24 << 8) | 6  # _IOW('$', 6, char *)
# perf_event_attr up to config1 (PERF_ATTR_SIZE_VER0, 64 bytes): type, size, config, sample_period,
# sample_type, read_format, flag bits, wakeup_events, bp_type, config1.
_ATTR = struct.Struct("=IIQQQQQIIQ")
_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "riscv64": 241, "loongarch64": 241, "ppc64le": 319,
                       "s390x": 331, "armv7l": 364, "i686": 336}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class Unavailable(Exception):
    """This host cannot count polls: the message says why and what to do, in the user's words."""


def filters(device: str) -> tuple[str, str, str] | None:
    """The ftrace filters of the device's three counting events (KINDS), or None when its name cannot be put
    in a filter (an ftrace string has no escapes, and `*?[` would make it a glob).

    ftrace compares a field with a constant, never two fields. The kernel guarantees work <= budget (it warns
    "NAPI poll function ... returned N, exceeding its budget of M" otherwise), so `budget == W && work >= W`
    is exactly work == budget for one budget W, and their OR over 1..64 is exactly "a full poll" for every
    budget the kernel accepts without complaint. Budgets above 64 are counted apart, so coverage shows."""
    quote = next((q for q in '"\'' if q not in device), None)
    if quote is None or any(c in device for c in "*?[") or not device:
        return None
    polls = f"dev_name == {quote}{device}{quote}"
    others = " || ".join(f"(budget == {w} && work >= {w})" for w in _OTHER_BUDGETS)
    full = f"(budget == {MAX_WEIGHT} && work >= {MAX_WEIGHT}) || (budget != {MAX_WEIGHT} && ({others}))"
    # The string comparison last: it costs three times an integer one (docs/performance.md), and most polls
    # are neither full nor of a large budget, so the integers alone reject them.
    return polls, f"({full}) && {polls}", f"budget > {MAX_WEIGHT} && {polls}"


def tracepoint_id(tracefs: tuple[str, ...] = TRACEFS) -> int:
    for root in tracefs:
        if os.path.isdir(os.path.join(root, "events")):
            path = os.path.join(root, TRACEPOINT)
            try:
                with open(path) as f:
                    return int(f.read())
            except FileNotFoundError:
                raise Unavailable(f"no tracepoint napi:napi_poll in this kernel ({path} absent)") from None
            except PermissionError:
                raise Unavailable(f"{path}: permission denied: run as root, or with CAP_DAC_READ_SEARCH") from None
        if os.path.isdir(root) and not os.access(root, os.R_OK | os.X_OK):
            raise Unavailable(f"{root}: permission denied: run as root, or with CAP_DAC_READ_SEARCH")
    raise Unavailable(f"tracefs not mounted: mount it at {tracefs[0]} (systemd's sys-kernel-tracing.mount, or "
                      f"`mount -t tracefs nodev {tracefs[0]}`)")


def _open_event(config: int, cpu: int, group_fd: int, read_format: int) -> int:
    nr = _NR_PERF_EVENT_OPEN.get(platform.machine())
    if nr is None:
        raise Unavailable(f"perf_event_open: no syscall number known for {platform.machine()}")
    attr = ctypes.create_string_buffer(_ATTR.pack(_PERF_TYPE_TRACEPOINT, _ATTR.size, config, 0, 0, read_format,
                                                  _ATTR_DISABLED if group_fd == -1 else 0, 0, 0, 0))
    fd = _libc.syscall(nr, attr, -1, cpu, group_fd, _PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        raise _open_error(ctypes.get_errno(), cpu)
    return fd


def _open_error(code: int, cpu: int) -> Exception:
    if code in (errno.EACCES, errno.EPERM):
        return Unavailable("perf_event_open: permission denied: run as root or with CAP_PERFMON "
                           f"(kernel.perf_event_paranoid is {_paranoid()})")
    if code in (errno.EMFILE, errno.ENFILE):
        return Unavailable(f"perf_event_open: too many open files ({os.strerror(code)}): one descriptor per CPU, "
                           f"device and event ({len(KINDS)} per device): raise LimitNOFILE / ulimit -n")
    if code == errno.ENOSYS:
        return Unavailable("perf_event_open: this kernel has no perf events (CONFIG_PERF_EVENTS)")
    if code == errno.ENODEV:  # the CPU went offline between reading the list and opening: try again next sample
        return OSError(code, f"perf_event_open on CPU {cpu}: {os.strerror(code)}")
    return Unavailable(f"perf_event_open: {os.strerror(code)}")


def _paranoid() -> str:
    try:
        with open("/proc/sys/kernel/perf_event_paranoid") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def _allow_descriptors(needed: int) -> None:
    """Raise the soft RLIMIT_NOFILE towards the hard one when the events need it (as Go programs do at start)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = len(os.listdir("/proc/self/fd")) + needed + 64
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard))


def _set_filter(fd: int, text: str) -> None:
    if _libc.ioctl(fd, ctypes.c_ulong(_IOC_SET_FILTER), ctypes.c_char_p(text.encode())) < 0:  # > fcntl's 1 KiB
        code = ctypes.get_errno()
        raise Unavailable(f"PERF_EVENT_IOC_SET_FILTER: {os.strerror(code)}: this kernel rejects the filter {text[:60]!r}")


class PerfNapiPolls:
    """Per online CPU one event group (the leader's PERF_FORMAT_GROUP read returns all of that CPU's counts in
    one syscall) holding len(KINDS) filtered counting events per device: CPUs x devices x 3 descriptors.

    The groups are re-opened when the devices or the online CPUs change; a device's totals carry over, so its
    counters only miss the polls between the last read and the re-open. Until counting works, each sample tries
    again and the reason is logged once."""

    def __init__(self, tracefs: tuple[str, ...] = TRACEFS, cpus_path: str = f"/sys/{cpu_list.ONLINE}",
                 warn: bool = True):
        self.tracefs = tracefs
        self.warn = warn  # log when counting stops or resumes (the agent); `record` says it its own way
        self.cpus_path = cpus_path
        self.devices: tuple[str, ...] = ()  # the devices being counted, in event order
        self.groups: list[list[int]] = []  # per CPU: [leader fd, sibling fds...]
        self.cpus: tuple[int, ...] = ()
        self.base: dict[str, NapiPolls] = {}  # totals of the counting closed by the last re-open
        self.last: dict[str, NapiPolls] = {}
        self.reason = ""

    def read(self, devices: list[str]) -> NapiPollReading:
        wanted = tuple(d for d in sorted(set(devices)) if filters(d) is not None)
        with open(self.cpus_path) as f:
            cpus = cpu_list.parse(f.read())
        if (wanted, cpus) != (self.devices, self.cpus) or not self.groups:
            try:
                self._reopen(wanted, cpus)
            except Unavailable as e:
                self._unavailable(str(e))
                return NapiPollReading(unavailable=str(e))
        try:
            self.last = self._totals()
        except OSError:
            self.close()  # the next sample opens them again; this one is a collector failure
            raise
        if self.reason and self.warn:
            log.info("counting NAPI polls again", extra={"devices": ",".join(self.devices)})
        self.reason = ""
        return NapiPollReading(dict(self.last))

    def _unavailable(self, reason: str) -> None:
        if reason != self.reason and self.warn:
            log.warning("NAPI poll counts unavailable: detection uses the counters only", extra={"reason": reason})
        self.reason = reason

    def _reopen(self, devices: tuple[str, ...], cpus: tuple[int, ...]) -> None:
        if self.groups:
            try:
                self.last = self._totals()
            except OSError:
                pass
        self.close()
        self.base = {d: self.last[d] for d in devices if d in self.last}
        self.devices, self.cpus = devices, cpus
        if not devices:
            self.groups = [[]]  # nothing to count is not "unavailable"
            return
        config = tracepoint_id(self.tracefs)
        texts = [t for d in devices for t in filters(d)]
        _allow_descriptors(len(cpus) * len(texts))
        try:
            for cpu in cpus:
                group: list[int] = []
                self.groups.append(group)
                for text in texts:
                    group.append(_open_event(config, cpu, group[0] if group else -1, _PERF_FORMAT_GROUP))
                    _set_filter(group[-1], text)
                fcntl.ioctl(group[0], _IOC_ENABLE, _IOC_FLAG_GROUP)  # filters set: start counting
        except BaseException:
            self.close()
            raise

    def _totals(self) -> dict[str, NapiPolls]:
        sums = [0] * (len(self.devices) * len(KINDS))
        size = 8 * (1 + len(sums))
        for group in self.groups:
            if not group:
                continue
            data = os.read(group[0], size)
            if len(data) != size:
                raise OSError(errno.EIO, f"perf event group read {len(data)} of {size} bytes")
            sums = list(map(operator.add, sums, struct.unpack_from(f"={len(sums)}Q", data, 8)))  # after `nr`
        totals = {}
        for i, device in enumerate(self.devices):
            base = self.base.get(device, NapiPolls(0, 0))
            polls, full, large = sums[i * len(KINDS):(i + 1) * len(KINDS)]
            # One group read is not atomic: a poll between reading `polls` and the others can count in `full`
            # only. Clamped here, it shows up in the next sample (the totals stay monotonic).
            large = min(large, polls)
            full = min(full, polls - large)
            totals[device] = NapiPolls(base.polls + polls, base.full + full, base.large_budget + large)
        return totals

    def descriptors(self) -> int:
        return sum(len(g) for g in self.groups)

    def close(self) -> None:
        for group in self.groups:
            for fd in reversed(group):
                with contextlib.suppress(OSError):  # already closed behind our back: what made the read fail
                    os.close(fd)
        self.groups = []
