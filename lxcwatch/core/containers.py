"""What one sample saw of each LXC container, and its state: a pure function of that and the previous state.

LXC's states (lxc_state2str): STOPPED, STARTING, RUNNING, STOPPING, ABORTING, FREEZING, FROZEN. lxcwatch
reads them from the kernel rather than asking each monitor over its command socket:

- no monitor process (no lxc.monitor.NAME cgroup with an LXC monitor in it): STOPPED;
- a monitor and the container's init: RUNNING, or FROZEN / FREEZING as the cgroup freezer says;
- a monitor without an init: STARTING, or STOPPING when the container was running a sample ago.
ABORTING (a failed start being torn down) cannot be told from STOPPING and is reported as such."""

from dataclasses import dataclass, field

from lxcwatch.core.probe_spec import ProbeResult
from lxcwatch.kernel.cgroup import CgroupUsage
from lxcwatch.kernel.net_dev import NetDevCounters

STATES = ("STOPPED", "STARTING", "RUNNING", "STOPPING", "FREEZING", "FROZEN")
_UP = ("RUNNING", "FROZEN", "FREEZING", "STOPPING")


@dataclass(frozen=True, slots=True)
class Veth:
    """The host end of one of the container's veth pairs."""

    device: str  # host-side name (vethXXXXXX or lxc.net.N.veth.pair)
    interface: str  # its peer inside the container (eth0)
    bridge: str  # the bridge the config attaches it to (lxc.net.N.link); "" when none
    master: str  # the bridge (or bond) it is a port of now; "" when none
    operstate: str

    @property
    def attached(self) -> bool:
        return bool(self.bridge) and self.master == self.bridge


@dataclass(frozen=True, slots=True)
class ContainerReading:
    """One container as one sample saw it. Run-time fields are None / empty while it is not running."""

    name: str
    lxc_path: str
    autostart: bool | None = None  # lxc.start.auto; None when the config could not be read
    monitor: bool = False  # an LXC monitor process serves it
    init_pid: int | None = None  # host PID of its init
    start_time: float | None = None  # when its init started, seconds since the epoch
    cgroup: CgroupUsage | None = None
    interfaces: dict[str, NetDevCounters] = field(default_factory=dict)  # inside the container, lo excluded
    veths: tuple[Veth, ...] = ()
    error: str = ""  # why part of it could not be read ("" when everything was)


@dataclass(frozen=True, slots=True)
class LxcReading:
    """The lxc collector's reading."""

    containers: tuple[ContainerReading, ...]
    probes: tuple[ProbeResult, ...] = ()


@dataclass(frozen=True, slots=True)
class Container:
    reading: ContainerReading
    state: str  # one of STATES
    state_changes: int  # state changes seen since lxcwatch first saw the container


def state_of(reading: ContainerReading, previous: str | None) -> str:
    if reading.init_pid is not None:
        freezer = reading.cgroup.freezer if reading.cgroup else ""
        return freezer if freezer in ("FROZEN", "FREEZING") else "RUNNING"
    if reading.monitor:
        return "STOPPING" if previous in _UP else "STARTING"
    return "STOPPED"


def advance(prev: dict[str, Container], reading: LxcReading) -> dict[str, Container]:
    """This sample's containers with their states; a container not listed any more (destroyed) is dropped,
    one seen for the first time starts with no changes."""
    out = {}
    for r in reading.containers:
        before = prev.get(r.name)
        state = state_of(r, before.state if before else None)
        changes = 0 if before is None else before.state_changes + (state != before.state)
        out[r.name] = Container(r, state, changes)
    return out
