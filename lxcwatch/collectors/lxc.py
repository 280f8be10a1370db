"""lxc: the LXC containers of the LXC paths (state, cgroup usage, own interfaces, host veths) and their probes."""

from lxcwatch.collectors import Collector
from lxcwatch.core import containers
from lxcwatch.core.family import counter, gauge

USAGE = (  # (CgroupUsage field, metric, counter?, help)
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
NET = (  # (NetDevCounters field, help): the container's own interfaces, /proc/INIT/net/dev
    ("receive_packets", "Packets the container received on this interface."),
    ("receive_bytes", "Bytes the container received on this interface."),
    ("receive_dropped", "Packets received on this interface and dropped inside the container."),
    ("transmit_packets", "Packets the container sent on this interface."),
    ("transmit_bytes", "Bytes the container sent on this interface."),
    ("transmit_dropped", "Packets the container sent on this interface that were dropped."),
)


def read(s):
    return s.lxc.read()


def merge(prev, reading) -> dict:
    """containers: name -> Container, state changes counted against the last sample the collector succeeded in;
    container_probes: the ProbeResult of each declared probe that ran."""
    before = prev.containers if prev else {}
    if reading is None:
        return {"containers": before, "container_probes": ()}
    return {"containers": containers.advance(before, reading), "container_probes": reading.probes}


def render(s):
    one = ["container"]
    info = gauge("container_info", "An LXC container and the LXC path it is in; value is always 1.", ["container", "lxc_path"])
    state = gauge("container_state", "1 for the container's LXC state, 0 for the other states.", ["container", "state"])
    running = gauge("container_running", "1 unless the container is STOPPED (LXC's is_running(), lxc-ls --running).", one)
    changes = counter("container_state_changes", "State changes seen since lxcwatch first saw the container.", one)
    autostart = gauge("container_autostart", "1 if the container starts with the host (lxc.start.auto = 1).", one)
    read_ok = gauge("container_read_success", "1 if the container's config, cgroups and /proc files were all read in the last sample.", one)
    pid = gauge("container_init_pid", "Host PID of the container's init; only while it runs.", one)
    started = gauge("container_start_time_seconds", "When the container's init started, seconds since the epoch; only while it runs.", one)
    usage = [(f, (counter if is_counter else gauge)(m, doc, one)) for f, m, is_counter, doc in USAGE]
    net = [(f, counter(f"container_{f}", doc, ["container", "interface"])) for f, doc in NET]
    veth_info = gauge("container_veth_info", "A host-side veth of the container: its peer inside, the bridge the config names, "
                      "the bridge it is a port of now; value is always 1.", ["container", "device", "interface", "bridge", "master"])
    attached = gauge("container_veth_attached", "1 if the host veth is a port of the bridge the config names (lxc.net.N.link).",
                     ["container", "device", "bridge"])
    veth_up = gauge("container_veth_up", "1 if the host veth's operational state is up.", ["container", "device"])
    for name in sorted(s.containers):
        c = s.containers[name]
        r = c.reading
        info.add([name, r.lxc_path], 1)
        for value in containers.STATES:
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
    success = gauge("container_probe_success", "1 if the probe's last attempt succeeded (tcp: connected within its timeout).",
                    ["container", "probe"])
    took = gauge("container_probe_duration_seconds", "How long the probe's last attempt took.", ["container", "probe"])
    for p in s.container_probes:
        success.add([p.container, p.name], int(p.success))
        took.add([p.container, p.name], p.duration_seconds)
    families = [info, state, running, changes, autostart, read_ok, pid, started, *(f for _, f in usage),
                *(f for _, f in net), veth_info, attached, veth_up, success, took]
    yield from (f for f in families if f.samples)  # a host without containers gets no empty families


COLLECTOR = Collector("lxc", 90, read, merge, render)
