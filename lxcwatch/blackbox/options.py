"""The black box's flags: where the flight recorder ring is, how big, and where kernel events are read from."""

import os
from dataclasses import dataclass

from lxcwatch import config
from lxcwatch.blackbox import ring_format
from lxcwatch.errors import UsageError
from lxcwatch.sources.root import is_live

DEFAULT_RING = "/var/lib/lxcwatch/flight.ring"


@dataclass(frozen=True)
class Options:
    ring: str | None = None  # None: no recorder
    ring_size: int = ring_format.DEFAULT_SIZE
    sync_interval: float = 5.0
    kernel_events: bool = False
    journal: str | None = None  # None: the system journal
    use_journal: bool = True
    kmsg: str | None = None
    pstore: str | None = None


def add_arguments(p) -> None:
    p.add_argument("--recorder.path", dest="recorder_path", default=None, metavar="PATH",
                   help=f"flight recorder ring (default {DEFAULT_RING}; on a --path.procfs tree: off unless given)")
    p.add_argument("--recorder.size", dest="recorder_size", default="8MiB", metavar="SIZE",
                   help="size of the ring, preallocated, e.g. 64MiB; 0 disables the recorder (default 8MiB: the last "
                        "30 minutes of a busy 128-CPU host)")
    p.add_argument("--recorder", dest="recorder", action="store_true", default=True,
                   help="keep the flight recorder (default; --no-recorder disables it)")
    p.add_argument("--no-recorder", dest="recorder", action="store_false", help="no flight recorder")
    p.add_argument("--recorder.sync-interval", dest="recorder_sync", default="5s", metavar="DURATION",
                   help="at most this long between two fdatasync of the ring (default 5s)")
    p.add_argument("--kernel.events", dest="kernel_events", action="store_true", default=None,
                   help="count kernel log signatures (default: on the live host; off on a --path.procfs tree)")
    p.add_argument("--no-kernel.events", dest="kernel_events", action="store_false",
                   help="no kernel log signatures, not even on the live host")
    p.add_argument("--path.journal", dest="journal", default=None, metavar="DIR",
                   help="directory of journal files to read kernel messages from (default: the system journal)")
    p.add_argument("--path.kmsg", dest="kmsg", default=None, metavar="PATH",
                   help="kernel log device when there is no journal (default /dev/kmsg; 'none': no fallback)")
    p.add_argument("--path.pstore", dest="pstore", default=None, metavar="DIR",
                   help="pstore mount holding the last crash's kernel log (default SYSFS/fs/pstore)")


def options(args) -> Options:
    live = is_live(args.sysfs)
    ring = args.recorder_path or (DEFAULT_RING if live else None)
    ring_size = 0 if args.recorder_size.strip() in ("0", "0B") else config.size(args.recorder_size)
    if ring_size and ring_size < ring_format.MIN_SIZE:
        raise UsageError(f"invalid --recorder.size {args.recorder_size!r}: at least {ring_format.MIN_SIZE} bytes")
    if not args.recorder or not ring_size:
        ring = None
    given = args.journal is not None or args.kmsg is not None or args.pstore is not None
    events = args.kernel_events if args.kernel_events is not None else (live or given)
    kmsg = None if args.kmsg == "none" else args.kmsg or ("/dev/kmsg" if live else None)
    pstore = args.pstore or (os.path.join(args.sysfs, "fs", "pstore") if live or args.pstore else None)
    return Options(ring, ring_size, config.duration(args.recorder_sync), bool(events), args.journal,
                   live or args.journal is not None, kmsg, pstore)
