"""kthreads: CPU time of ksoftirqd/N (softirq work that overran) and of threaded NAPI's napi/DEV-ID threads."""

from lxcwatch.collectors import Collector
from lxcwatch.core.family import counter
from lxcwatch.kernel.proc_stat import USER_HZ


def read(s):
    return s.kthreads.read()


def merge(prev, reading) -> dict:
    """kthreads: KernelThread -> CPU ticks."""
    return {"kthreads": reading or {}}


def render(s):
    ksoftirqd = counter("ksoftirqd_cpu_seconds", "CPU time of ksoftirqd/N, where softirq work goes when it overruns.", ["cpu"])
    napi = counter("napi_thread_cpu_seconds", "CPU time of a threaded-NAPI poller napi/DEV-ID.", ["device", "thread"])
    for thread, ticks in sorted(s.kthreads.items(), key=lambda kv: kv[0].pid):
        if thread.cpu is not None:
            ksoftirqd.add([str(thread.cpu)], ticks / USER_HZ)
        else:
            napi.add([thread.device, thread.name], ticks / USER_HZ)
    yield from (ksoftirqd, napi)


COLLECTOR = Collector("kthreads", 70, read, merge, render)
