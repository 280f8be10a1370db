"""The agent's black box at run time: the flight recorder ring, the previous boot's end, this boot's kernel events."""

import logging
from collections import Counter

from lxcwatch.blackbox import flight_recorder, klog
from lxcwatch.blackbox.metrics import BlackboxState
from lxcwatch.blackbox.options import Options

log = logging.getLogger("lxcwatch.blackbox")

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

    def state(self) -> "BlackboxState":
        r = self.recorder
        return BlackboxState(
            recorder_enabled=bool(r and r.enabled),
            ring_size=self.options.ring_size if r else None,
            records=r.records if r else 0, written_bytes=r.bytes if r else 0, write_errors=r.errors if r else 0,
            previous_boot_unclean=r.previous_boot_unclean if r else None,
            kernel_log_source=self.watch.source if self.watch else "none",
            previous_boot_events=Counter(self.previous), events=Counter(self.watch.counts) if self.watch else Counter())
