"""The sampling loop: runs the collectors on a fixed schedule and publishes each new snapshot."""

import logging
import threading
import time
from collections.abc import Callable

from lxcwatch.collectors import COLLECTORS, Sources
from lxcwatch.errors import ParseError
from lxcwatch.snapshot import CollectorResult, Snapshot, build

log = logging.getLogger("lxcwatch.sampler")


def describe(error: BaseException) -> str:
    if isinstance(error, ParseError):
        return str(error)
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    return f"{type(error).__name__}: {error}"


class Sampler:
    """Owns the sources and the latest snapshot. `sample()` is synchronous; `run()` loops on a schedule."""

    def __init__(self, sources: Sources, collectors: list[str], interval: float):
        self.sources = sources
        self.collectors = collectors
        self.interval = interval
        self.latest: Snapshot | None = None
        self.overruns = 0
        self._stop = threading.Event()
        self.on_sample: list[Callable[[Snapshot], None]] = []

    def sample(self) -> Snapshot:
        readings, results = {}, {}
        for name in self.collectors:
            start = time.perf_counter()
            try:
                readings[name] = COLLECTORS[name](self.sources)
                results[name] = CollectorResult(True, time.perf_counter() - start)
            except Exception as e:  # one failing source never stops the others
                results[name] = CollectorResult(False, time.perf_counter() - start, describe(e))
        prev = self.latest
        snap = build(prev, (prev.seq if prev else 0) + 1, time.time(), time.monotonic(), readings, results)
        self._log_changes(prev, snap)
        self.latest = snap  # one reference swap: scrapes see either the old or the new snapshot
        for callback in self.on_sample:
            callback(snap)
        return snap

    def run(self) -> None:
        """Sample every interval on a fixed grid; a late sample skips the missed slots instead of bunching up."""
        next_at = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            self.sample()
            next_at += self.interval
            now = time.monotonic()
            if now > next_at:
                missed = int((now - next_at) // self.interval) + 1
                self.overruns += missed
                next_at += missed * self.interval

    def stop(self) -> None:
        self._stop.set()

    @staticmethod
    def _log_changes(prev: Snapshot | None, snap: Snapshot) -> None:
        """Log a collector's failure once when it starts (or its error changes), and its recovery."""
        for name, result in snap.collectors.items():
            before = prev.collectors.get(name) if prev else None
            if not result.success and (before is None or before.error != result.error):
                log.error("collector failed", extra={"collector": name, "err": result.error})
            elif result.success and before is not None and not before.success:
                log.info("collector recovered", extra={"collector": name})
