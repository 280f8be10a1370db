"""The flight recorder at run time: a fixed-size ring file the agent writes one record per sample into, synced
periodically, read back after a crash (the format: lxcwatch/blackbox/ring_format.py)."""

import errno
import fcntl
import logging
import os
import threading
import time
import uuid

from lxcwatch.blackbox.ring_format import (
    SAMPLE,
    START,
    STOP,
    UNCLEAN,
    UNKNOWN,
    Run,
    Scan,
    encode,
    figures,
    previous_boot,
    scan,
)
from lxcwatch.core.classifier import Verdict
from lxcwatch.core.snapshot import Snapshot
from lxcwatch.sources.root import Root

log = logging.getLogger("lxcwatch.recorder")


def read(path: str) -> Scan:
    with open(path, "rb") as f:
        return scan(f.read())


def boot_id(procfs: str = "/proc") -> str:
    """This boot's id, "" if unreadable or not a UUID (then no run can be told apart from this boot's)."""
    try:
        return str(uuid.UUID(Root(procfs).attr("sys/kernel/random/boot_id") or ""))
    except ValueError:
        return ""


class Ring:
    """A fixed-size file of records written in place one after the other, wrapping to the start."""

    def __init__(self, path: str, size: int):
        self.path, self.size = path, size
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            found = self._open()
        except BaseException:
            os.close(self.fd)
            raise
        self.newest = found.records[-1] if found.records else None
        self.old_format = found.old_format
        self.seq = self.newest.seq + 1 if self.newest else 1
        self.offset = self.newest.offset + self.newest.size if self.newest else 0
        self.dirty = False

    def _open(self) -> Scan:
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # one writer per ring: two agents would interleave
        if os.fstat(self.fd).st_size != self.size:  # a new size keeps the records that still fit
            os.ftruncate(self.fd, self.size)
        try:
            os.posix_fallocate(self.fd, 0, self.size)
        except OSError as e:  # a full disk leaves a sparse file; writes then fail and are counted
            log.warning("could not preallocate the flight recorder", extra={"path": self.path, "err": e.strerror})
        return scan(os.pread(self.fd, self.size, 0), keep=False)

    def append(self, kind: int, t: float, run: Run, errors: int, data: dict) -> int:
        """Writes one record after the previous one; raises ValueError if it can never fit, OSError on I/O."""
        record = encode(self.seq, kind, t, run, self.size, errors, data)
        if len(record) > self.size:
            raise ValueError(f"record of {len(record)} bytes does not fit a ring of {self.size} bytes")
        offset = self.offset if self.offset + len(record) <= self.size else 0
        written = os.pwrite(self.fd, record, offset)
        if written != len(record):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what a short pwrite means on a full disk
        self.seq += 1
        self.offset = offset + len(record)
        self.dirty = True
        return len(record)

    def sync(self) -> None:
        if self.dirty:
            self.dirty = False
            os.fdatasync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


class Recorder:
    """The agent's side: a Sampler.on_sample callback that never raises, plus counters for the metrics."""

    def __init__(self, path: str, size: int, sync_interval: float, boot: str, version: str = "", interval: float = 1.0,
                 make_directory: bool = False):
        self.path, self.sync_interval, self.boot = path, sync_interval, boot
        self.records = self.bytes = self.errors = 0
        self.previous_boot_unclean: bool | None = None
        self.previous_boot: str = ""
        self._error = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.ring: Ring | None = None
        try:
            if make_directory:  # the default ring's directory: made as the unit's StateDirectory= makes it (0755)
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            self.ring = Ring(path, size)
        except OSError as e:
            self.errors += 1
            log.error("flight recorder off: cannot open its ring", extra={"path": path, "err": e.strerror or str(e)})
            return
        if self.ring.old_format and self.ring.newest is None:
            log.warning("the flight recorder ring holds only records of the old format (LXFR): not understood, "
                        "overwritten from now on", extra={"path": path})
        verdict, self.previous_boot = previous_boot(self.ring.newest, self.ring.old_format, boot)
        self.previous_boot_unclean = None if verdict == UNKNOWN else verdict == UNCLEAN
        self.run = Run(boot, round(time.time(), 3), os.getpid(), interval, verdict)
        self._write(START, self.run.started, {"version": version, "previous_boot": self.previous_boot})
        self._syncer = threading.Thread(target=self._sync_loop, name="recorder-sync", daemon=True)
        self._syncer.start()

    @property
    def enabled(self) -> bool:
        return self.ring is not None

    def _failed(self, e: BaseException) -> None:
        self.errors += 1
        message = getattr(e, "strerror", None) or str(e)
        if message != self._error:  # once per change, not once per second
            log.error("flight recorder write failed", extra={"path": self.path, "err": message})
            self._error = message

    def _write(self, kind: int, t: float, data: dict) -> None:
        with self._lock:
            if self.ring is None:
                return
            try:
                n = self.ring.append(kind, t, self.run, self.errors, data)
            except (OSError, ValueError) as e:
                self._failed(e)
                return
            self.records += 1
            self.bytes += n
            if self._error:
                log.info("flight recorder writes again", extra={"path": self.path})
                self._error = ""

    def sampled(self, snap: Snapshot, verdict: Verdict) -> None:
        try:
            data = figures(snap, verdict)
        except Exception as e:  # a figure we cannot compute must not stop the sampler
            self._failed(e)
            return
        self._write(SAMPLE, snap.timestamp, data)

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.sync_interval):
            self._sync()

    def _sync(self) -> None:
        with self._lock:
            if self.ring is None:
                return
            try:
                self.ring.sync()
            except OSError as e:
                self._failed(e)

    def stop(self) -> None:
        """The clean-stop marker: the next start (or postmortem) knows this run ended on purpose."""
        if self.ring is None:
            return
        self._stop.set()
        self._write(STOP, time.time(), {})
        self._sync()
        with self._lock:
            self.ring.close()
            self.ring = None
