"""Parsers for the /proc files of a running container's two processes: LXC's monitor and the container's init.

`lxc-start` (daemonized) turns into the monitor: it sits in cgroup lxc.monitor.NAME and retitles itself
"[lxc monitor] LXCPATH NAME" (LXC 2.0+). Its child is the container's init, PID 1 of the container's PID
namespace: /proc/INIT/status has `NSpid: <host pid> 1`. `lxc-start -F` (foreground) keeps its own
command line and is the monitor itself."""

from dataclasses import dataclass

from lxcwatch.errors import ParseError

MONITOR_TITLE = "[lxc monitor] "


@dataclass(frozen=True, slots=True)
class MonitorIdentity:
    lxc_path: str | None  # None: not on the command line (lxc-start -F without -P: the default path)
    name: str


def parse_monitor_cmdline(raw: bytes) -> MonitorIdentity | None:
    """The container a monitor serves, from /proc/PID/cmdline; None if this is no LXC monitor."""
    text = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    if text.startswith(MONITOR_TITLE):
        path, _, name = text[len(MONITOR_TITLE):].rpartition(" ")
        return MonitorIdentity(path or None, name) if name else None
    args = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
    if not args or args[0].rsplit("/", 1)[-1] != "lxc-start":
        return None
    name = _option(args, "-n", "--name")
    return MonitorIdentity(_option(args, "-P", "--lxcpath"), name) if name else None


def _option(args: list[str], short: str, long: str) -> str | None:
    for i, arg in enumerate(args):
        if arg in (short, long) and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(long + "="):
            return arg[len(long) + 1:]
        if arg.startswith(short) and len(arg) > len(short) and not arg.startswith("--"):
            return arg[len(short):]
    return None


def parse_nspid(status: str) -> tuple[int, ...] | None:
    """The `NSpid:` line of /proc/PID/status (4.1+): the PID in each nested PID namespace, outermost first."""
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            try:
                return tuple(int(v) for v in line[len("NSpid:"):].split())
            except ValueError:
                raise ParseError("PID/status", f"bad NSpid line {line[:60]!r}") from None
    return None


def is_namespace_init(status: str) -> bool:
    """PID 1 of a PID namespace below ours. Kernels before 4.1 print no NSpid: take the child on trust."""
    nspid = parse_nspid(status)
    return nspid is None or (len(nspid) >= 2 and nspid[-1] == 1)


def parse_children(text: str) -> tuple[int, ...]:
    """/proc/PID/task/TID/children: space-separated PIDs."""
    try:
        return tuple(int(v) for v in text.split())
    except ValueError:
        raise ParseError("PID/task/TID/children", f"not a PID list: {text[:60]!r}") from None


def parse_pids(text: str, source: str = "cgroup.procs") -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split())
    except ValueError:
        raise ParseError(source, f"not a PID list: {text[:60]!r}") from None


def parse_btime(stat: str) -> int:
    """Boot time (seconds since the epoch) from the `btime` line of /proc/stat."""
    for line in stat.splitlines():
        if line.startswith("btime "):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                break
    raise ParseError("stat", "no btime line")
