"""CPU time of the kernel threads that run deferred receive work: ksoftirqd/N and threaded NAPI's napi/DEV-ID."""

import os
import re
from dataclasses import dataclass

from lxcwatch.kernel import pid_stat
from lxcwatch.errors import ParseError
from lxcwatch.sources.root import Root, read_attr

_KSOFTIRQD = re.compile(r"ksoftirqd/(\d+)")
_NAPI = re.compile(r"napi/(.+)-(\d+)")
RESCAN_SAMPLES = 60  # threads come and go rarely (CPU hotplug, `threaded` toggled): look again every minute


@dataclass(frozen=True, slots=True)
class KernelThread:
    pid: int
    name: str  # comm, e.g. "ksoftirqd/3" or "napi/eth0-8193"
    cpu: int | None  # the CPU a ksoftirqd thread is bound to
    device: str | None  # the interface a napi thread polls for


def parse_pid_stat(text: str) -> int:
    """utime + stime in USER_HZ ticks from /proc/PID/stat (fields 14 and 15, after the parenthesised comm)."""
    values = pid_stat.fields(text, 15)
    try:
        return int(values[11]) + int(values[12])
    except ValueError:
        raise ParseError("PID/stat", "utime or stime is not a number") from None


def identify(pid: int, comm: str) -> KernelThread | None:
    if m := _KSOFTIRQD.fullmatch(comm):
        return KernelThread(pid, comm, int(m.group(1)), None)
    if m := _NAPI.fullmatch(comm):
        return KernelThread(pid, comm, None, m.group(1))
    return None


class KernelThreads:
    """Finds the threads by walking <procfs> now and then; reads only their stat files every sample."""

    def __init__(self, procfs: Root):
        self.procfs = procfs
        self._threads: list[KernelThread] = []
        self._age = RESCAN_SAMPLES

    def _scan(self) -> list[KernelThread]:
        found = []
        for entry in os.listdir(self.procfs.path):
            if entry.isdigit():
                comm = read_attr(self.procfs.join(entry, "comm"))
                thread = identify(int(entry), comm) if comm else None
                if thread:
                    found.append(thread)
        return sorted(found, key=lambda t: t.pid)

    def read(self) -> dict[KernelThread, int]:
        """{thread: CPU ticks}. A thread gone since the scan triggers a new scan next sample."""
        self._age += 1
        if self._age >= RESCAN_SAMPLES:
            self._threads, self._age = self._scan(), 0
        ticks = {}
        for thread in self._threads:
            text = read_attr(self.procfs.join(str(thread.pid), "stat"))
            if text is None:
                self._age = RESCAN_SAMPLES
                continue
            ticks[thread] = parse_pid_stat(text)
        return ticks
