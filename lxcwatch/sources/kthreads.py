"""Finds the kernel threads of deferred receive work (lxcwatch/kernel/kthread.py) and reads their CPU time."""

import os

from lxcwatch.kernel import pid_stat
from lxcwatch.kernel.kthread import COMM, KernelThread, identify
from lxcwatch.sources.root import Root, read_attr

RESCAN_SAMPLES = 60  # threads come and go rarely (CPU hotplug, `threaded` toggled): look again every minute


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
                comm = read_attr(self.procfs.join(entry, COMM))
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
            text = read_attr(self.procfs.join(str(thread.pid), pid_stat.SOURCE))
            if text is None:
                self._age = RESCAN_SAMPLES
                continue
            ticks[thread] = pid_stat.parse(text).cpu_ticks
        return ticks
