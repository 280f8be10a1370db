"""Renders a snapshot as Prometheus metric families: a pure function, cached per snapshot by the HTTP layer."""

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from lxcwatch import verdict_metrics
from lxcwatch.classifier import Verdict
from lxcwatch.containers import STATES as CONTAINER_STATES
from lxcwatch.exposition import Family
from lxcwatch.exposition import counter as _counter
from lxcwatch.exposition import gauge as _gauge
from lxcwatch.proc_stat import USER_HZ
from lxcwatch.snapshot import Snapshot

log = logging.getLogger("lxcwatch.metrics")


@dataclass(frozen=True)
class Agent:
    version: str
    replica_group: str
    replica: str
    config_loaded: bool = True  # the last (re)load of the flags succeeded
    config_loaded_at: float = 0.0  # time of the last successful (re)load


SOFTNET = (  # (field, metric, help)
    ("processed", "softnet_processed", "Packets processed by net_rx_action on this CPU (bridging and VLANs count again)."),
    ("dropped", "softnet_dropped", "Packets dropped because the backlog queue was full (net.core.netdev_max_backlog)."),
    ("time_squeeze", "softnet_times_squeezed", "net_rx_action runs that ended with work left (budget or time exhausted)."),
    ("cpu_collision", "softnet_cpu_collision", "Transmit lock collisions."),
    ("received_rps", "softnet_received_rps", "Inter-processor interrupts received to steer packets (RPS/RFS)."),
    ("flow_limit_count", "softnet_flow_limit_count", "Packets dropped by the flow limit."),
)


def _softnet(s: Snapshot) -> Iterator[Family]:
    for field, name, doc in SOFTNET:
        family = _counter(name, doc, ["cpu"])
        for cpu in sorted(s.softnet_rows):
            total = s.softnet.total.get((cpu, field))
            if total is not None:
                family.add([str(cpu)], total)
        if family.samples:
            yield family
    backlog = _gauge("softnet_backlog_packets", "Packets waiting in this CPU's backlog (input + process queue).", ["cpu"])
    for cpu, row in sorted(s.softnet_rows.items()):
        if row.backlog_len is not None:
            backlog.add([str(cpu)], row.backlog_len)
    if backlog.samples:
        yield backlog


def _softirqs(s: Snapshot) -> Iterator[Family]:
    family = _counter("softirqs", "Softirqs raised per CPU and vector.", ["cpu", "vector"])
    for (vector, cpu), total in sorted(s.softirqs.total.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        family.add([str(cpu), vector], total)
    yield family
    seconds = _counter("cpu_softirq_seconds", "CPU time spent in softirq context, ksoftirqd included.", ["cpu"])
    for cpu, ticks in sorted(s.softirq_ticks.items()):
        seconds.add([str(cpu)], ticks / USER_HZ)
    yield seconds


def _interrupts(s: Snapshot) -> Iterator[Family]:
    family = _counter("nic_interrupts", "Hard interrupts of a NIC's vector (rx, tx, txrx or control), summed over CPUs.", ["device", "irq", "vector"])
    for i in s.nic_irqs:
        family.add([i.device, i.irq, i.vector], s.irqs.total.get(i.irq, 0))
    yield family


NETDEV = (
    ("receive_packets", "Packets received."),
    ("receive_bytes", "Bytes received."),
    ("receive_dropped", "Received packets dropped (rx_dropped + rx_missed_errors)."),
    ("receive_errors", "Receive errors."),
    ("transmit_packets", "Packets transmitted."),
    ("transmit_bytes", "Bytes transmitted."),
    ("transmit_dropped", "Transmit packets dropped."),
    ("transmit_errors", "Transmit errors."),
)


def _netdev(s: Snapshot) -> Iterator[Family]:
    names = sorted(s.netdev)
    for field, doc in NETDEV:
        family = _counter(f"link_{field}", doc, ["device"])
        for name in names:
            family.add([name], getattr(s.netdev[name], field))
        yield family


def _links(s: Snapshot) -> Iterator[Family]:
    links = [s.links[n] for n in sorted(s.links)]
    promiscuous = _gauge("link_promiscuous", "1 if the link is effectively promiscuous (IFF_PROMISC, also when a bridge or tcpdump set it).", ["device"])
    promiscuity = _gauge("link_promiscuity", "Promiscuity reference count (IFLA_PROMISCUITY): how many users asked for promiscuous mode.", ["device"])
    up = _gauge("link_up", "1 if the link's operational state is up.", ["device"])
    # No operstate here: a volatile value on an info metric makes new series at every flap (lxcwatch_link_up has it).
    info = _gauge("link_info", "Link metadata; value is always 1.",
                  ["device", "kind", "master", "driver", "driver_version", "firmware_version", "bus_info"])
    ports: dict[str, int] = {}
    for link in links:
        if link.flags is not None:  # unreadable: unknown, and the links collector says so
            promiscuous.add([link.name], int(link.promiscuous))
        if link.promiscuity is not None:
            promiscuity.add([link.name], link.promiscuity)
        up.add([link.name], int(link.operstate == "up"))
        d = link.driver
        info.add([link.name, link.kind, link.master, d.driver, d.version, d.firmware, d.bus_info], 1)
        if link.master:
            ports[link.master] = ports.get(link.master, 0) + 1
    bridge_ports = _gauge("bridge_ports", "Links attached to this bridge.", ["bridge"])
    for link in links:
        if link.kind == "bridge":
            bridge_ports.add([link.name], ports.get(link.name, 0))
    yield from (promiscuous, promiscuity, up, info, bridge_ports)


SYSCTLS = (  # (sysctl, metric, scale, help)
    ("netdev_budget", "net_core_netdev_budget_packets", 1, "net.core.netdev_budget: packets one net_rx_action may process."),
    ("netdev_budget_usecs", "net_core_netdev_budget_seconds", 1e-6, "net.core.netdev_budget_usecs: time one net_rx_action may run."),
    ("netdev_max_backlog", "net_core_netdev_max_backlog_packets", 1, "net.core.netdev_max_backlog: per-CPU backlog queue length."),
    ("busy_poll", "net_core_busy_poll_seconds", 1e-6, "net.core.busy_poll: busy polling time for poll/select (0: off)."),
    ("busy_read", "net_core_busy_read_seconds", 1e-6, "net.core.busy_read: busy polling time for socket reads (0: off)."),
)


def _napi(s: Snapshot) -> Iterator[Family]:
    threaded = _gauge("link_napi_threaded", "1 if the NIC polls in napi/<dev> kernel threads.", ["device"])
    defer = _gauge("link_napi_defer_hard_irqs", "Polls that may end empty before hard IRQs are re-enabled.", ["device"])
    gro = _gauge("link_gro_flush_timeout_seconds", "GRO flush timeout; with napi_defer_hard_irqs it defers IRQs.", ["device"])
    rx_delay = _gauge("link_coalesce_rx_delay_seconds", "Interrupt coalescing (ethtool -c rx-usecs): how long the NIC "
                      "may delay an RX interrupt after a packet; 0: no time-based coalescing.", ["device"])
    rx_frames = _gauge("link_coalesce_rx_max_frames", "Interrupt coalescing (ethtool -c rx-frames): packets the NIC "
                       "may gather before an RX interrupt; 0: no count-based coalescing.", ["device"])
    rx_adaptive = _gauge("link_coalesce_rx_adaptive", "1 if the driver moves RX coalescing with the load "
                         "(ethtool -c adaptive-rx: DIM, adaptive ITR).", ["device"])
    for name, t in sorted(s.napi.nics.items()):
        if t.threaded is not None:
            threaded.add([name], int(t.threaded))
        if t.defer_hard_irqs is not None:
            defer.add([name], t.defer_hard_irqs)
        if t.gro_flush_timeout_ns is not None:
            gro.add([name], t.gro_flush_timeout_ns / 1e9)
        if t.coalesce is not None:
            rx_delay.add([name], t.coalesce.rx_usecs / 1e6)
            rx_frames.add([name], t.coalesce.rx_frames)
            rx_adaptive.add([name], int(t.coalesce.adaptive_rx))
    yield from (threaded, defer, gro, rx_delay, rx_frames, rx_adaptive)
    for sysctl, name, scale, doc in SYSCTLS:
        if sysctl in s.napi.sysctls:
            family = _gauge(name, doc)
            family.add([], s.napi.sysctls[sysctl] * scale)
            yield family


def _kthreads(s: Snapshot) -> Iterator[Family]:
    ksoftirqd = _counter("ksoftirqd_cpu_seconds", "CPU time of ksoftirqd/N, where softirq work goes when it overruns.", ["cpu"])
    napi = _counter("napi_thread_cpu_seconds", "CPU time of a threaded-NAPI poller napi/DEV-ID.", ["device", "thread"])
    for thread, ticks in sorted(s.kthreads.items(), key=lambda kv: kv[0].pid):
        if thread.cpu is not None:
            ksoftirqd.add([str(thread.cpu)], ticks / USER_HZ)
        else:
            napi.add([thread.device, thread.name], ticks / USER_HZ)
    yield from (ksoftirqd, napi)


def _napi_poll(s: Snapshot) -> Iterator[Family]:
    reading = s.napi_polls
    available = _gauge("napi_poll_available", "1 if the kernel's napi:napi_poll counts are read; 0: detection uses the counters only.")
    available.add([], int(not reading.unavailable))
    yield available
    if reading.unavailable:
        why = _gauge("napi_poll_unavailable", "Why the napi:napi_poll counts are not read; value is always 1.", ["reason"])
        why.add([reading.unavailable], 1)
        yield why
        return
    polls = _counter("nic_napi_polls", "NAPI polls of the device (tracepoint napi:napi_poll).", ["device"])
    full = _counter("nic_napi_full_polls", "NAPI polls that used their whole budget: polled again with the IRQ masked.", ["device"])
    large = _counter("nic_napi_large_budget_polls", "NAPI polls with a budget above 64 (NAPI_POLL_WEIGHT), "
                     "never counted as full: above 0, the full-poll count misses some.", ["device"])
    for device, c in sorted(reading.counts.items()):
        polls.add([device], c.polls)
        full.add([device], c.full)
        large.add([device], c.large_budget)
    yield from (polls, full, large)


CONTAINER_USAGE = (  # (CgroupUsage field, metric, counter?, help)
    ("cpu_seconds", "container_cpu_seconds", True,
     "CPU time of the container's cgroup (cpuacct.usage; cgroup2: cpu.stat usage_usec)."),
    ("memory_bytes", "container_memory_bytes", False,
     "Memory charged to the container's cgroup (memory.usage_in_bytes; cgroup2: memory.current)."),
    ("memory_limit_bytes", "container_memory_limit_bytes", False,
     "Memory limit of the container's cgroup (memory.limit_in_bytes; cgroup2: memory.max); absent without a limit."),
    ("oom_kills", "container_oom_kills", True,
     "Processes the OOM killer killed in the container's cgroup (oom_kill of memory.oom_control or memory.events)."),
    ("processes", "container_processes", False, "Tasks (processes and threads) in the container's cgroup (pids.current)."),
)
CONTAINER_NET = (  # (NetDevCounters field, help): the container's own interfaces, /proc/INIT/net/dev
    ("receive_packets", "Packets the container received on this interface."),
    ("receive_bytes", "Bytes the container received on this interface."),
    ("receive_dropped", "Packets received on this interface and dropped inside the container."),
    ("transmit_packets", "Packets the container sent on this interface."),
    ("transmit_bytes", "Bytes the container sent on this interface."),
    ("transmit_dropped", "Packets the container sent on this interface that were dropped."),
)


def _lxc(s: Snapshot) -> Iterator[Family]:
    one = ["container"]
    info = _gauge("container_info", "An LXC container and the LXC path it is in; value is always 1.", ["container", "lxc_path"])
    state = _gauge("container_state", "1 for the container's LXC state, 0 for the other states.", ["container", "state"])
    running = _gauge("container_running", "1 unless the container is STOPPED (LXC's is_running(), lxc-ls --running).", one)
    changes = _counter("container_state_changes", "State changes seen since lxcwatch first saw the container.", one)
    autostart = _gauge("container_autostart", "1 if the container starts with the host (lxc.start.auto = 1).", one)
    read_ok = _gauge("container_read_success", "1 if the container's config, cgroups and /proc files were all read in the last sample.", one)
    pid = _gauge("container_init_pid", "Host PID of the container's init; only while it runs.", one)
    started = _gauge("container_start_time_seconds", "When the container's init started, seconds since the epoch; only while it runs.", one)
    usage = [(f, (_counter if counter else _gauge)(m, doc, one)) for f, m, counter, doc in CONTAINER_USAGE]
    net = [(f, _counter(f"container_{f}", doc, ["container", "interface"])) for f, doc in CONTAINER_NET]
    veth_info = _gauge("container_veth_info", "A host-side veth of the container: its peer inside, the bridge the config names, "
                       "the bridge it is a port of now; value is always 1.", ["container", "device", "interface", "bridge", "master"])
    attached = _gauge("container_veth_attached", "1 if the host veth is a port of the bridge the config names (lxc.net.N.link).",
                      ["container", "device", "bridge"])
    veth_up = _gauge("container_veth_up", "1 if the host veth's operational state is up.", ["container", "device"])
    for name in sorted(s.containers):
        c = s.containers[name]
        r = c.reading
        info.add([name, r.lxc_path], 1)
        for value in CONTAINER_STATES:
            state.add([name, value], int(c.state == value))
        running.add([name], int(c.state != "STOPPED"))
        changes.add([name], c.state_changes)
        if r.autostart is not None:
            autostart.add([name], int(r.autostart))
        read_ok.add([name], int(not r.error))
        if r.init_pid is not None:
            pid.add([name], r.init_pid)
        if r.start_time is not None:
            started.add([name], r.start_time)
        for field, family in usage if r.cgroup else ():
            value = getattr(r.cgroup, field)
            if value is not None:
                family.add([name], value)
        for interface in sorted(r.interfaces):
            for field, family in net:
                family.add([name, interface], getattr(r.interfaces[interface], field))
        for v in r.veths:
            veth_info.add([name, v.device, v.interface, v.bridge, v.master], 1)
            if v.bridge:
                attached.add([name, v.device, v.bridge], int(v.attached))
            veth_up.add([name, v.device], int(v.operstate == "up"))
    success = _gauge("container_probe_success", "1 if the probe's last attempt succeeded (tcp: connected within its timeout).",
                     ["container", "probe"])
    took = _gauge("container_probe_duration_seconds", "How long the probe's last attempt took.", ["container", "probe"])
    for p in s.container_probes:
        success.add([p.container, p.name], int(p.success))
        took.add([p.container, p.name], p.duration_seconds)
    families = [info, state, running, changes, autostart, read_ok, pid, started, *(f for _, f in usage),
                *(f for _, f in net), veth_info, attached, veth_up, success, took]
    yield from (f for f in families if f.samples)  # a host without containers gets no empty families


RENDERERS: dict[str, Callable[[Snapshot], Iterator[Family]]] = {
    "softnet": _softnet,
    "softirqs": _softirqs,
    "interrupts": _interrupts,
    "netdev": _netdev,
    "links": _links,
    "napi": _napi,
    "kthreads": _kthreads,
    "napi_poll": _napi_poll,
    "lxc": _lxc,
}


def families(s: Snapshot, agent: Agent, overruns: int = 0, verdict: Verdict | None = None,
             extra: list[Family] = ()) -> list[Family]:
    """All metric families for one snapshot. A renderer that fails marks its collector failed, nothing more."""
    out: list[Family] = []
    success = {name: r.success for name, r in s.collectors.items()}
    for name in s.collectors:
        if not (success[name] or s.collectors[name].partial) or name not in RENDERERS:
            continue
        try:
            out.extend(RENDERERS[name](s))
        except Exception:
            log.exception("rendering failed", extra={"collector": name})
            success[name] = False
    if verdict is not None:
        out.extend(verdict_metrics.render(verdict))
    out.extend(extra)  # families the agent keeps outside the snapshot (the black box)
    out.extend(_self(s, agent, success, overruns))
    return out


def sample_age(s: Snapshot, now_monotonic: float) -> Family:
    """Computed at each scrape, not with the sample: a stalled sampling loop shows here, as an age that grows."""
    age = _gauge("last_sample_age_seconds", "Seconds since the sample being served was taken (monotonic clock), at scrape time.")
    age.add([], max(0.0, now_monotonic - s.monotonic))
    return age


def _self(s: Snapshot, agent: Agent, success: dict[str, bool], overruns: int) -> Iterator[Family]:
    build = _gauge("build_info", "lxcwatch build; value is always 1.", ["version"])
    build.add([agent.version], 1)
    ok = _gauge("scrape_collector_success", "1 if the collector's last sample succeeded.", ["collector"])
    took = _gauge("scrape_collector_duration_seconds", "Time the collector's last sample took.", ["collector"])
    for name in sorted(s.collectors):
        ok.add([name], int(success[name]))
        took.add([name], s.collectors[name].duration_seconds)
    last = _gauge("last_sample_timestamp_seconds", "Wall-clock time of the sample being served.")
    last.add([], s.timestamp)
    samples = _counter("samples", "Samples taken since the agent started.", [])
    samples.add([], s.seq)
    late = _counter("sample_overruns", "Sampling slots skipped because a sample took longer than the interval.", [])
    late.add([], overruns)
    reloaded = _gauge("config_last_reload_successful", "1 if the last reload of the flags (SIGHUP) succeeded.")
    reloaded.add([], int(agent.config_loaded))
    reloaded_at = _gauge("config_last_reload_success_timestamp_seconds", "Time of the last successful start or reload.")
    reloaded_at.add([], agent.config_loaded_at)
    yield build
    if agent.replica_group:  # a host in no group exports no membership: replica_group="" would read as one group
        replica = _gauge("replica_info", "This host's replica group and name; value is always 1.", ["replica_group", "replica"])
        replica.add([agent.replica_group, agent.replica], 1)
        yield replica
    yield from (ok, took, last, samples, late, reloaded, reloaded_at)
