"""The sampling loop: runs the collectors on a fixed schedule and publishes each new snapshot."""

import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable

from lxcwatch.collectors import ALL as COLLECTORS
from lxcwatch.collectors import build
from lxcwatch.core import classifier
from lxcwatch.core.classifier import mode_name
from lxcwatch.core.snapshot import CollectorResult, Snapshot
from lxcwatch.errors import ParseError, Partial
from lxcwatch.sources import root
from lxcwatch.sources.host import Sources

log = logging.getLogger("lxcwatch.sampler")


def describe(error: BaseException) -> str:
    if isinstance(error, ParseError):
        return str(error)
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    return f"{type(error).__name__}: {error}"


def name_thread(name: str) -> None:
    """The calling thread's name in the kernel (`top -H`, /proc/PID/task/TID/comm): a stuck reader is seen by name."""
    ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME; a failure only leaves the old name


class _Read:
    """One collector read handed to its worker; `done` is set when it returned or raised."""

    def __init__(self, name: str, sources: Sources):
        self.name, self.sources = name, sources
        self.started = time.monotonic()
        self.done = threading.Event()
        self.value: object = None
        self.error: BaseException | None = None
        self.duration = 0.0
        self.thread: int | None = None  # the worker's thread id, for the file it last opened


class _Worker:
    """One collector's own thread, reused for every read. A read stuck in the kernel stays stuck in this thread
    alone, and the sampler hands it no other read until that one returns: one thread per collector, at most."""

    def __init__(self, name: str):
        self.name = name
        self.reads: queue.SimpleQueue[_Read | None] = queue.SimpleQueue()
        self.current: _Read | None = None
        threading.Thread(target=self._loop, name=f"collector-{name}", daemon=True).start()

    def busy(self) -> bool:
        return self.current is not None and not self.current.done.is_set()

    def submit(self, read: _Read) -> None:
        self.current = read
        self.reads.put(read)

    def _loop(self) -> None:
        name_thread(f"read-{self.name}")
        while (read := self.reads.get()) is not None:
            read.thread = threading.get_ident()
            start = time.perf_counter()
            try:
                value = COLLECTORS[read.name].read(read.sources)
            except BaseException as e:  # noqa: BLE001 (the sampler reports it, whatever it is)
                read.error = e
            else:
                read.value = value
            read.duration = time.perf_counter() - start
            read.done.set()


def stuck_error(read: _Read, deadline: float) -> str:
    """The reason a stuck collector reports: the same string as long as the same read is stuck (logged once)."""
    where = root.LAST_OPENED.get(read.thread) if read.thread is not None else None
    return f"stuck: no answer within {deadline:g}s" + (f", last file opened {where}" if where else "")


def _outcome(read: _Read) -> tuple[object, CollectorResult]:
    """(reading or None, result) of a read that returned: a Partial reading counts, but as a failure."""
    if read.error is not None:
        if not isinstance(read.error, Exception):
            raise read.error  # KeyboardInterrupt, SystemExit: not a collector's failure
        return None, CollectorResult(False, read.duration, describe(read.error))
    if isinstance(read.value, Partial):
        return read.value.reading, CollectorResult(False, read.duration, read.value.error, partial=True)
    return read.value, CollectorResult(True, read.duration)


class Sampler:
    """Owns the sources and the latest snapshot. `sample()` is synchronous; `run()` loops on a schedule.
    With a `deadline`, each collector reads in its own worker thread and a sample waits for it at most that
    long (a collector stuck in a read is reported failed, the others are not held up); without one (replay,
    tests of pure logic) every collector reads in the calling thread."""

    def __init__(self, sources: Sources, collectors: list[str], interval: float,
                 thresholds: classifier.Thresholds = classifier.Thresholds(), deadline: float | None = None):
        self.sources = sources
        self.collectors = collectors
        self.interval = interval
        self.thresholds = thresholds
        self.deadline = deadline
        self._workers: dict[str, _Worker] = {}
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
        self._new_sample()
        if self.deadline is None:
            reads = self._read_inline()
        elif (reads := self._read_in_turn()) is None:
            # A read passed the deadline: the readings taken before it are that much older than the ones after it
            # would be, and rates over one stamp would jump. Every collector not stuck reads again, at once.
            wall, mono = at or (time.time(), time.monotonic())
            self._new_sample()
            reads = self._read_at_once()
        readings, results = {}, {}
        for name, (value, result) in reads.items():
            results[name] = result
            if value is not None:
                readings[name] = value
        prev = self.latest
        snap = build(prev, (prev.seq if prev else 0) + 1, wall, mono, readings, results)
        verdict = classifier.step(self.verdict, prev, snap, self.thresholds) if prev else classifier.Verdict()
        self._log_changes(prev, snap)
        self._log_modes(self.verdict, verdict)
        self.current = (snap, verdict)  # one reference swap: a scrape sees the old pair or the new one
        for callback in self.on_sample:
            callback(snap, verdict)
        return snap

    def _read_inline(self) -> dict[str, tuple[object, CollectorResult]]:
        out = {}
        for name in self.collectors:
            read = _Read(name, self.sources)
            start = time.perf_counter()
            try:
                read.value = COLLECTORS[name].read(self.sources)
            except Exception as e:  # one failing source never stops the others
                read.error = e
            read.duration = time.perf_counter() - start
            out[name] = _outcome(read)
        return out

    def _new_sample(self) -> None:
        if self.sources is not None:  # None: tests whose collectors read nothing
            self.sources.nics.new_sample()

    def _worker(self, name: str) -> _Worker:
        return self._workers.get(name) or self._workers.setdefault(name, _Worker(name))

    def _stuck(self, read: _Read) -> tuple[None, CollectorResult]:
        return None, CollectorResult(False, time.monotonic() - read.started, stuck_error(read, self.deadline))

    def _submit(self, name: str, out: dict) -> _Read | None:
        """A new read in the collector's worker; None, and the collector reported in `out`, while its last read is
        still stuck: no second read piles up behind it."""
        worker = self._worker(name)
        if worker.busy():
            out[name] = self._stuck(worker.current)
            return None
        read = _Read(name, self.sources)
        worker.submit(read)
        return read

    def _read_in_turn(self) -> dict[str, tuple[object, CollectorResult]] | None:
        """Each collector in its worker, one after another: reads at once only contend for the GIL (every file read
        hands it over), ~10 % of a sample's CPU on the bench tree. None when one read passed the deadline."""
        out = {}
        for name in self.collectors:
            if (read := self._submit(name, out)) is None:
                continue
            if not read.done.wait(self.deadline):
                return None
            out[name] = _outcome(read)
        return out

    def _read_at_once(self) -> dict[str, tuple[object, CollectorResult]]:
        """Every collector at once, each in its worker; waits until all returned or the deadline passed."""
        out = {}
        waiting = [read for name in self.collectors if (read := self._submit(name, out)) is not None]
        end = time.monotonic() + self.deadline
        for read in waiting:
            done = read.done.wait(max(0.0, end - time.monotonic()))
            out[read.name] = _outcome(read) if done else self._stuck(read)
        return {name: out[name] for name in self.collectors}

    @property
    def latest(self) -> Snapshot | None:
        return self.current[0] if self.current else None

    @property
    def verdict(self) -> classifier.Verdict:
        return self.current[1] if self.current else classifier.Verdict()

    def run(self) -> None:
        """Sample every interval on a fixed grid; a late sample skips the missed slots instead of bunching up."""
        name_thread("sampler")
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
        for worker in self._workers.values():
            worker.reads.put(None)  # idle workers end; a stuck one is a daemon thread and ends with the process

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
