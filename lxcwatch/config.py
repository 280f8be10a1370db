"""Validation of flag values: each problem becomes one clear message for the command line."""

import argparse
import os
import re
import shlex

from lxcwatch.collectors import ALL, DeviceFilter, View
from lxcwatch.collectors.lxc import DETAIL
from lxcwatch.core.duration import duration
from lxcwatch.errors import RuntimeFailure, UsageError
from lxcwatch.kernel import interrupts, net_dev, proc_stat, softirqs, softnet_stat
from lxcwatch.kernel.link import CLASS_NET
from lxcwatch.sources.root import CONFIG_CAP, read_bytes

PROCFS_MARKERS = (proc_stat.SOURCE, interrupts.SOURCE, softirqs.SOURCE, net_dev.SOURCE, softnet_stat.SOURCE)


_SIZE = re.compile(r"(\d+)(B|KB|MB|GB|KiB|MiB|GiB)?")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def size(text: str) -> int:
    """Bytes from "64MiB", "10MB", "1024"."""
    m = _SIZE.fullmatch(text)
    if not m or int(m.group(1)) == 0:
        raise UsageError(f"invalid size {text!r}: want e.g. 64MiB, 10MB, 1024")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2)]


def check_roots(procfs: str, sysfs: str) -> None:
    """Refuse a root that cannot be read at all; a root missing a single file only fails that collector."""
    for flag, root, markers in (
        ("--path.procfs", procfs, PROCFS_MARKERS),
        ("--path.sysfs", sysfs, (CLASS_NET,)),
    ):
        if not os.path.isdir(root):
            raise RuntimeFailure(f"{flag}={root}: not a directory")
        if not os.access(root, os.R_OK | os.X_OK):
            raise RuntimeFailure(f"{flag}={root}: permission denied")
        if not any(os.path.exists(os.path.join(root, m)) for m in markers):
            raise RuntimeFailure(f"{flag}={root}: none of {', '.join(markers)} found; is this a {flag[7:]} root?")


def add_source_flags(p) -> None:
    """--path.procfs, --path.sysfs and --sample.interval, shared by the agent, status and record."""
    p.add_argument("--path.procfs", dest="procfs", default="/proc", metavar="PATH", help="procfs mountpoint (default /proc)")
    p.add_argument("--path.sysfs", dest="sysfs", default="/sys", metavar="PATH", help="sysfs mountpoint (default /sys)")
    p.add_argument("--sample.interval", dest="interval", default="1s", metavar="DURATION", help="time between samples (default 1s)")


# A slow collector is late (lxcwatch_sample_overruns_total); a stuck one is blocked in the kernel, for seconds
# to minutes (a sysfs read waiting on rtnl_lock through a driver reset). The floor keeps the first sample of a
# big host (a netlink dump costs ~0.4 s per 1000 links, docs/design.md) and a starved CPU from reading as stuck.
DEADLINE_SHARE, DEADLINE_FLOOR = 0.8, 5.0


def add_deadline_flag(p) -> None:
    p.add_argument("--sample.deadline", dest="deadline", default=None, metavar="DURATION",
                   help="how long a sample waits for one collector before reporting it stuck "
                        f"(default {DEADLINE_SHARE:g} x --sample.interval, at least {DEADLINE_FLOOR:g}s)")


def deadline(text: str | None, interval: float) -> float:
    """--sample.deadline in seconds: a collector slower than this is reported stuck (docs/design.md)."""
    return max(DEADLINE_SHARE * interval, DEADLINE_FLOOR) if text is None else duration(text)


def read_args_file(path: str) -> list[str]:
    """The flags in an /etc/default-style file: `# comments` and one `ARGS="--flag=value ..."`, shell-quoted."""
    try:
        lines = read_bytes(path, CONFIG_CAP).decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise RuntimeFailure(f"--config.file={path}: {getattr(e, 'strerror', None) or e}") from None
    args: list[str] | None = None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            words = shlex.split(line, comments=True)
            key, sep, value = words[0].partition("=") if len(words) == 1 else ("", "", "")
            if key != "ARGS" or not sep:
                raise ValueError('want ARGS="--flag=value ..."')
            if args is not None:
                raise ValueError("ARGS is set twice")
            args = shlex.split(value)
        except (ValueError, IndexError) as e:
            raise UsageError(f"{path}:{number}: {e}") from None
    if any(a.startswith("--config.file") for a in args or []):
        raise UsageError(f"{path}: --config.file cannot name another file")
    return args or []


def typed_flags(parser, argv: list[str]) -> dict[str, str]:
    """{dest: option string} of every option of `parser`: the one the user typed in `argv` (the last, as argparse
    keeps the last value; an abbreviation is named in full), else the option's first name."""
    table = parser._option_string_actions  # argparse's own map of option strings to actions
    names = {}
    for option, action in table.items():
        names.setdefault(action.dest, option)
    for word in argv:
        if not word.startswith("--"):
            continue
        typed = word.split("=", 1)[0]
        matches = [typed] if typed in table else [o for o in table if o.startswith(typed)]
        if len(matches) == 1:
            names[table[matches[0]].dest] = matches[0]
    return names


def add_napi_poll_include_flag(p, what: str) -> None:
    p.add_argument("--collector.napi_poll.device-include", dest="napi_poll_include", default=None, metavar="REGEX",
                   help=f"also {what} the NAPI polls of the interfaces whose name matches (e.g. '^veth'); the "
                        "physical NICs' are always counted (default: none)")


def napi_poll_include(args) -> re.Pattern | None:
    try:
        return re.compile(args.napi_poll_include) if args.napi_poll_include else None
    except re.error as e:
        raise UsageError(f"invalid --collector.napi_poll.device-include {args.napi_poll_include!r}: {e}") from None


# The collectors whose device series --collector.NAME.device-include/-exclude choose, and what they export.
DEVICE_FILTERED = {c.name: c.exports_devices for c in ALL.values() if c.exports_devices}


def add_view_flags(p) -> None:
    """What the exposition leaves out (docs/metrics.md#cardinality): rendering only, detection sees everything."""
    for name, what in DEVICE_FILTERED.items():
        for kind, verb, default in (("include", "export only", "every interface"), ("exclude", "leave out", "none")):
            other = "exclude" if kind == "include" else "include"
            p.add_argument(f"--collector.{name}.device-{kind}", dest=f"{name}_device_{kind}", default=None, metavar="REGEX",
                           help=f"{verb} the {what} of the interfaces whose name matches (e.g. '^veth'); mutually "
                                f"exclusive with --collector.{name}.device-{other}; detection still sees every "
                                f"interface (default: {default})")
    for group, what in DETAIL.items():
        p.add_argument(f"--collector.lxc.{group}", dest=f"lxc_{group}", action=argparse.BooleanOptionalAction,
                       default=True, help=f"export {what}; --no-collector.lxc.{group} leaves them out (default: on)")


def view(args) -> View:
    devices = {}
    for name in DEVICE_FILTERED:
        include, exclude = getattr(args, f"{name}_device_include"), getattr(args, f"{name}_device_exclude")
        if include is not None and exclude is not None:
            raise UsageError(f"--collector.{name}.device-include and --collector.{name}.device-exclude are mutually "
                             "exclusive")
        if include is not None or exclude is not None:
            kind, text = ("include", include) if include is not None else ("exclude", exclude)
            try:
                pattern = re.compile(text)
            except re.error as e:
                raise UsageError(f"invalid --collector.{name}.device-{kind} {text!r}: {e}") from None
            devices[name] = DeviceFilter(**{kind: pattern})
    return View(devices, frozenset(g for g in DETAIL if getattr(args, f"lxc_{g}")))
