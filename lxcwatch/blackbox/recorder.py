"""The agent's black box: the flight recorder, the previous boot's end, kernel events; flags and metrics."""

import logging
import os
from collections import Counter
from dataclasses import dataclass

from lxcwatch import config
from lxcwatch.blackbox import flight_recorder, klog
from lxcwatch.errors import UsageError
from lxcwatch.export.exposition import Family

log = logging.getLogger("lxcwatch.blackbox")

DEFAULT_RING = "/var/lib/lxcwatch/flight.ring"


@dataclass(frozen=True)
class Options:
    ring: str | None = None  # None: no recorder
    ring_size: int = flight_recorder.DEFAULT_SIZE
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
    from lxcwatch.traces.record import size  # "64MiB" like record's --max-size

    live = args.procfs == "/proc"
    ring = args.recorder_path or (DEFAULT_RING if live else None)
    ring_size = 0 if args.recorder_size.strip() in ("0", "0B") else size(args.recorder_size)
    if ring_size and ring_size < flight_recorder.MIN_SIZE:
        raise UsageError(f"invalid --recorder.size {args.recorder_size!r}: at least {flight_recorder.MIN_SIZE} bytes")
    if not args.recorder or not ring_size:
        ring = None
    given = args.journal is not None or args.kmsg is not None or args.pstore is not None
    events = args.kernel_events if args.kernel_events is not None else (live or given)
    kmsg = None if args.kmsg == "none" else args.kmsg or ("/dev/kmsg" if live else None)
    pstore = args.pstore or (os.path.join(args.sysfs, "fs", "pstore") if live or args.pstore else None)
    return Options(ring, ring_size, config.duration(args.recorder_sync), bool(events), args.journal,
                   live or args.journal is not None, kmsg, pstore)


class Blackbox:
    """Started once per agent run; its families join every scrape."""

    def __init__(self, o: Options, version: str, interval: float = 1.0):
        self.options = o
        self.boot = flight_recorder.boot_id()
        self.recorder = (flight_recorder.Recorder(o.ring, o.ring_size, o.sync_interval, self.boot, version, interval)
                         if o.ring else None)
        self.previous: Counter = Counter()
        self.watch = None
        if o.kernel_events:
            _, self.previous = klog.scan_previous_boot(self.boot, o.journal, o.use_journal, o.pstore)
            self.watch = klog.Watch(self.boot, o.journal, o.kmsg, o.use_journal)
        if self.recorder and self.recorder.previous_boot_unclean:
            log.warning("the previous boot ended without a clean stop of lxcwatch",
                        extra={"boot_id": self.recorder.previous_boot,
                               "kernel_events": ",".join(f"{s}:{d or '-'}={n}" for (s, d), n in sorted(self.previous.items()))})

    def sampled(self, snap, verdict) -> None:
        if self.recorder:
            self.recorder.sampled(snap, verdict)

    def stop(self) -> None:
        if self.watch:
            self.watch.stop()
        if self.recorder:
            self.recorder.stop()

    def families(self) -> list[Family]:
        r = self.recorder
        out = []

        def gauge(name, doc, value, labels=()):
            f = Family(f"lxcwatch_{name}", "gauge", doc, tuple(labels))
            f.add([], value)
            out.append(f)

        def counter(name, doc, value):
            f = Family(f"lxcwatch_{name}", "counter", doc, ())
            f.add([], value)
            out.append(f)

        gauge("recorder_enabled", "1 if the flight recorder ring is open for writing.", int(bool(r and r.enabled)))
        if r:
            counter("recorder_records", "Records written to the flight recorder ring.", r.records)
            counter("recorder_written_bytes", "Bytes written to the flight recorder ring.", r.bytes)
            counter("recorder_write_errors", "Flight recorder writes or syncs that failed (disk full, EIO, ring unopenable).", r.errors)
            gauge("recorder_size_bytes", "Size of the flight recorder ring.", self.options.ring_size)
            if r.previous_boot_unclean is not None:  # absent when the ring cannot tell (old format, no boot id)
                gauge("previous_boot_unclean", "1 if the agent's last run in the previous boot never stopped cleanly.",
                      int(r.previous_boot_unclean))
        source = Family("lxcwatch_kernel_log_source", "gauge", "1 for where kernel events are read from: journal, kmsg or none.", ("source",))
        current = self.watch.source if self.watch else "none"
        for name in ("journal", "kmsg", "none"):
            source.add([name], int(current == name))
        out.append(source)
        previous = Family("lxcwatch_kernel_events_previous_boot", "gauge",
                          "Kernel log signatures in the previous boot's journal and in pstore.", ("signature", "device"))
        for (signature, device), n in sorted(klog.fold(self.previous).items()):
            previous.add([signature, device], n)
        live = Family("lxcwatch_kernel_events", "counter", "Kernel log signatures in this boot's kernel messages.",
                      ("signature", "device"))
        for (signature, device), n in sorted(klog.fold(Counter(self.watch.counts)).items() if self.watch else ()):
            live.add([signature, device], n)
        out.extend(f for f in (previous, live) if f.samples)
        return out
