"""The sampling loop: runs the collectors on a fixed schedule and publishes each new snapshot."""

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
from lxcwatch.threads import name_thread

log = logging.getLogger("lxcwatch.sampler")


def describe(error: BaseException) -> str:
    if isinstance(error, ParseError):
        return str(error)
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    return f"{type(error).__name__}: {error}"


class _Read:
    """One collector's read. `thread` is set when a reader begins it, `done` when it returned or raised."""

    def __init__(self, name: str):
        self.name = name
        self.started = time.monotonic()  # when the reader began it (until then, when it was handed over)
        self.thread: int | None = None  # the reader's thread id, for the file it last opened
        self.native_id = 0
        self.done = False
        self.value: object = None
        self.error: BaseException | None = None
        self.duration = 0.0

    def run(self, sources: Sources) -> None:
        start = time.perf_counter()
        try:
            self.value = COLLECTORS[self.name].read(sources)
        except BaseException as e:  # noqa: BLE001 (the sampler reports it, whatever it is)
            # Without its traceback: the frames would hold this read (a cycle, freed only by the cyclic collector)
            # and all they held, such as the 32 MiB read of an oversized /proc/interrupts, sample after sample.
            self.error = e.with_traceback(None)
        self.duration = time.perf_counter() - start
        self.done = True


class _Batch:
    """Reads one reader runs one after another; `finished` when it ran them all, or stopped after the one the
    sampler gave up on (`abandoned`)."""

    def __init__(self, reads: list[_Read], sources: Sources):
        self.reads, self.sources = reads, sources
        self.lock = threading.Lock()  # the reader begins no read once the sampler has abandoned the batch
        self.abandoned = False
        self.finished = threading.Event()

    def current(self) -> _Read | None:
        """The read under way, if any (call with the lock held)."""
        return next((r for r in self.reads if r.thread is not None and not r.done), None)


class _Reader:
    """A thread that runs the batches handed to it and then waits in the sampler's pool of idle readers. A
    sample's collectors read in one batch, one after another in one thread: a hand-over to another thread costs
    ~60 us of CPU on a VM, and one per collector was 1.2 ms of a 9.4 ms sample on the bench tree."""

    def __init__(self, idle: queue.SimpleQueue):
        self.idle = idle
        self.batches: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="reader", daemon=True).start()

    def _loop(self) -> None:
        name_thread("reader")
        while (batch := self.batches.get()) is not None:
            for read in batch.reads:
                with batch.lock:
                    if batch.abandoned:
                        break
                    read.started, read.thread = time.monotonic(), threading.get_ident()
                    read.native_id = threading.get_native_id()
                read.run(batch.sources)
            if batch.abandoned:
                name_thread("reader")  # back from a stuck read that the sampler named
            self.idle.put(self)  # in the pool before `finished`: the next sample finds it there
            batch.finished.set()


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
    With a `deadline`, the collectors read in a reader thread and a sample waits for each at most that long (a
    collector stuck in a read is reported failed, the others are not held up); without one (replay, tests of pure
    logic) every collector reads in the calling thread."""

    def __init__(self, sources: Sources, collectors: list[str], interval: float,
                 thresholds: classifier.Thresholds = classifier.Thresholds(), deadline: float | None = None):
        self.sources = sources
        self.collectors = collectors
        self.interval = interval
        self.thresholds = thresholds
        self.deadline = deadline
        self._idle: queue.SimpleQueue[_Reader] = queue.SimpleQueue()
        self._stuck_reads: dict[str, _Read] = {}  # collector -> its read past the deadline, until it returns
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
            read = _Read(name)
            read.run(self.sources)
            out[name] = _outcome(read)
        return out

    def _new_sample(self) -> None:
        if self.sources is not None:  # None: tests whose collectors read nothing
            self.sources.nics.new_sample()

    def _batch(self, reads: list[_Read]) -> _Batch:
        """`reads` handed to an idle reader (a new one when none is idle)."""
        try:
            reader = self._idle.get_nowait()
        except queue.Empty:
            reader = _Reader(self._idle)
        batch = _Batch(reads, self.sources)
        reader.batches.put(batch)
        return batch

    def _to_read(self, out: dict) -> list[_Read]:
        """A new read of each collector, but for those whose last read is still stuck: reported in `out`, and no
        second read piles up behind theirs."""
        reads = []
        for name in self.collectors:
            stuck = self._stuck_reads.get(name)
            if stuck is not None and not stuck.done:
                out[name] = self._stuck(stuck)
            else:
                self._stuck_reads.pop(name, None)
                reads.append(_Read(name))
        return reads

    def _give_up(self, batch: _Batch) -> bool:
        """Abandon `batch` if its read under way is past the deadline."""
        with batch.lock:
            late = batch.current()
        return late is not None and time.monotonic() - late.started >= self.deadline and self._abandon(batch, late)

    def _abandon(self, batch: _Batch, read: _Read) -> bool:
        """Give up on `batch` at `read`, unless it returned meanwhile. A read begun is stuck: no new read of its
        collector until it returns, and its reader is named for it; one not begun never will be."""
        with batch.lock:
            if read.done:
                return False
            batch.abandoned = True
            begun = read.thread is not None
        if begun:
            self._stuck_reads[read.name] = read
            name_thread(f"read-{read.name}", read.native_id)
        return True

    def _stuck(self, read: _Read) -> tuple[None, CollectorResult]:
        return None, CollectorResult(False, time.monotonic() - read.started, stuck_error(read, self.deadline))

    def _read_in_turn(self) -> dict[str, tuple[object, CollectorResult]] | None:
        """Every collector in one reader, one after another: reads at once only contend for the GIL (every file
        read hands it over), ~10 % of a sample's CPU on the bench tree. None when one read passed the deadline."""
        out: dict = {}
        batch = self._batch(self._to_read(out))
        while not batch.finished.wait(self._left(batch)):
            if self._give_up(batch):
                return None
        out.update((read.name, _outcome(read)) for read in batch.reads)
        return {name: out[name] for name in self.collectors}

    def _left(self, batch: _Batch) -> float:
        """How long the read under way has before the deadline."""
        with batch.lock:
            current = batch.current()
        return self.deadline if current is None else max(0.0, current.started + self.deadline - time.monotonic())

    def _read_at_once(self) -> dict[str, tuple[object, CollectorResult]]:
        """Every collector at once, each in a reader of its own; waits until all returned or the deadline passed."""
        out: dict = {}
        batches = [self._batch([read]) for read in self._to_read(out)]
        end = time.monotonic() + self.deadline
        for batch in batches:
            read = batch.reads[0]
            if batch.finished.wait(max(0.0, end - time.monotonic())) or not self._abandon(batch, read):
                batch.finished.wait()  # returned meanwhile: its reader is about to say so
                out[read.name] = _outcome(read)
            else:
                out[read.name] = self._stuck(read)
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
        while True:  # idle readers end; a stuck one is a daemon thread and ends with the process
            try:
                self._idle.get_nowait().batches.put(None)
            except queue.Empty:
                return

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
