"""The kernel threads that run deferred receive work, told by their comm: ksoftirqd/N and threaded NAPI's napi/DEV-ID."""

import re
from dataclasses import dataclass

COMM = "comm"  # a thread's name, relative to /proc/PID
_KSOFTIRQD = re.compile(r"ksoftirqd/(\d+)")
_NAPI = re.compile(r"napi/(.+)-(\d+)")


@dataclass(frozen=True, slots=True)
class KernelThread:
    pid: int
    name: str  # comm, e.g. "ksoftirqd/3" or "napi/eth0-8193"
    cpu: int | None  # the CPU a ksoftirqd thread is bound to
    device: str | None  # the interface a napi thread polls for


def identify(pid: int, comm: str) -> KernelThread | None:
    if m := _KSOFTIRQD.fullmatch(comm):
        return KernelThread(pid, comm, int(m.group(1)), None)
    if m := _NAPI.fullmatch(comm):
        return KernelThread(pid, comm, None, m.group(1))
    return None
