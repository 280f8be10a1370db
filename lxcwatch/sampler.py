"""The sampling loop: runs the collectors on a fixed schedule and publishes each new snapshot."""

import logging
import threading
import time
from collections.abc import Callable

from lxcwatch import classifier
from lxcwatch.collectors import COLLECTORS, Sources
from lxcwatch.errors import ParseError
from lxcwatch.snapshot import CollectorResult, Snapshot, build

log = logging.getLogger("lxcwatch.sampler")


def mode_name(heavy: bool) -> str:
    """The one name of each mode, in logs and in `lxcwatch status`."""
    return "napi_heavy" if heavy else "interrupt"


def describe(error: BaseException) -> str:
    if isinstance(error, ParseError):
        return str(error)
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    return f"{type(error).__name__}: {error}"


class Sampler:
    """Owns the sources and the latest snapshot. `sample()` is synchronous; `run()` loops on a schedule."""

    def __init__(self, sources: Sources, collectors: list[str], interval: float,
                 thresholds: classifier.Thresholds = classifier.Thresholds()):
        self.sources = sources
        self.collectors = collectors
        self.interval = interval
        self.thresholds = thresholds
        self.current: tuple[Snapshot, classifier.Verdict] | None = None
        self.overruns = 0
        self._stop = threading.Event()
        self.on_sample: list[Callable[[Snapshot, classifier.Verdict], None]] = []
        self._pending: tuple | None = None

    def reconfigure(self, collectors: list[str], thresholds: classifier.Thresholds, lxc=None) -> None:
        """New collectors, thresholds and (if given) LXC host for the next sample, swapped in by the sampling
        thread itself; the snapshot and the modes carry over, so a reload neither resets rates nor clears a page."""
        self._pending = (collectors, thresholds, lxc)

    def _apply_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        self.collectors, self.thresholds, lxc = pending
        if lxc is not None:
            old, self.sources.lxc = self.sources.lxc, lxc
            if old is not None:
                old.close()

    def sample(self, at: tuple[float, float] | None = None) -> Snapshot:
        """One sample. `at` = (wall, monotonic) time to stamp it with: a replayed trace's clock, not ours."""
        self._apply_pending()
        wall, mono = at or (time.time(), time.monotonic())
        readings, results = {}, {}
        for name in self.collectors:
            start = time.perf_counter()
            try:
                readings[name] = COLLECTORS[name](self.sources)
                results[name] = CollectorResult(True, time.perf_counter() - start)
            except Exception as e:  # one failing source never stops the others
                results[name] = CollectorResult(False, time.perf_counter() - start, describe(e))
        prev = self.latest
        snap = build(prev, (prev.seq if prev else 0) + 1, wall, mono, readings, results)
        verdict = classifier.step(self.verdict, prev, snap, self.thresholds) if prev else classifier.Verdict()
        self._log_changes(prev, snap)
        self._log_modes(self.verdict, verdict)
        self.current = (snap, verdict)  # one reference swap: a scrape sees the old pair or the new one
        for callback in self.on_sample:
            callback(snap, verdict)
        return snap

    @property
    def latest(self) -> Snapshot | None:
        return self.current[0] if self.current else None

    @property
    def verdict(self) -> classifier.Verdict:
        return self.current[1] if self.current else classifier.Verdict()

    def run(self) -> None:
        """Sample every interval on a fixed grid; a late sample skips the missed slots instead of bunching up."""
        next_at = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            try:
                self.sample()
            except Exception:  # a bug must not stop sampling: the scrape would serve a frozen snapshot
                log.exception("sample failed")
            next_at += self.interval
            now = time.monotonic()
            if now > next_at:
                missed = int((now - next_at) // self.interval) + 1
                self.overruns += missed
                next_at += missed * self.interval

    def stop(self) -> None:
        self._stop.set()

    @staticmethod
    def _log_modes(before: classifier.Verdict, after: classifier.Verdict) -> None:
        for device, v in after.nics.items():
            old = before.nics.get(device)
            if v.mode.heavy != (old.mode.heavy if old else False):
                log.warning("nic mode changed", extra={"device": device, "mode": mode_name(v.mode.heavy), "reason": v.mode.reason})
        if after.host.heavy != before.host.heavy:
            log.warning("host mode changed", extra={"mode": mode_name(after.host.heavy), "reason": after.host.reason})

    @staticmethod
    def _log_changes(prev: Snapshot | None, snap: Snapshot) -> None:
        """Log a collector's failure once when it starts (or its error changes), and its recovery."""
        for name, result in snap.collectors.items():
            before = prev.collectors.get(name) if prev else None
            if not result.success and (before is None or before.error != result.error):
                log.error("collector failed", extra={"collector": name, "err": result.error})
            elif result.success and before is not None and not before.success:
                log.info("collector recovered", extra={"collector": name})
