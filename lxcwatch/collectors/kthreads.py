"""kthreads: CPU time of ksoftirqd/N (softirq work that overran) and of threaded NAPI's napi/DEV-ID threads."""

from lxcwatch.collectors import Collector
from lxcwatch.core.family import counter
from lxcwatch.kernel import pid_stat
from lxcwatch.kernel.kthread import COMM, identify
from lxcwatch.kernel.proc_stat import USER_HZ


def read(s):
    return s.kthreads.read()


def capture(c) -> None:
    """comm and stat of the threads lxcwatch/sources/kthreads.py finds by walking the PIDs; stat re-read every
    sample while the thread lives."""
    for pid in c.proc.listdir("."):
        if not pid.isdigit():
            continue
        comm = c.proc.root.attr(pid, COMM)
        if comm is None:
            continue
        if identify(int(pid), comm) and c.proc.file(f"{pid}/{pid_stat.SOURCE}", volatile=True, owner=f"{pid}/{COMM}"):
            c.proc.file(f"{pid}/{COMM}")


def merge(prev, reading) -> dict:
    """kthreads: KernelThread -> CPU ticks."""
    return {"kthreads": reading or {}}


def render(s, view):
    ksoftirqd = counter("ksoftirqd_cpu_seconds", "CPU time of ksoftirqd/N, where softirq work goes when it overruns.", ["cpu"])
    napi = counter("napi_thread_cpu_seconds", "CPU time of a threaded-NAPI poller napi/DEV-ID.", ["device", "thread"])
    for thread, ticks in sorted(s.kthreads.items(), key=lambda kv: kv[0].pid):
        if thread.cpu is not None:
            ksoftirqd.add([str(thread.cpu)], ticks / USER_HZ)
        else:
            napi.add([thread.device, thread.name], ticks / USER_HZ)
    yield from (ksoftirqd, napi)


COLLECTOR = Collector("kthreads", 70, read, merge, render, capture=capture)
