"""The flight recorder: each sample's key figures in a fixed-size on-disk ring that survives a panic (docs/postmortem.md)."""

import errno
import fcntl
import json
import logging
import os
import struct
import threading
import time
import uuid
import zlib
from dataclasses import dataclass

from lxcwatch.core import rates
from lxcwatch.core.classifier import Verdict
from lxcwatch.core.snapshot import Snapshot

log = logging.getLogger("lxcwatch.recorder")

MAGIC = b"LXF2"
OLD_MAGIC = b"LXFR"  # format 1: no run identity in its records; recognised, not read
# magic, kind, previous boot verdict, seq, time, boot id, run start, pid, sample interval ms, ring size,
# write errors so far, payload length, crc32 (of the header with crc 0, then the payload)
HEADER = struct.Struct("<4sBBxxQd16sdIIQIII")
ZERO_CRC = bytes(4)  # the crc field as the crc covers it
SAMPLE, START, STOP = 1, 2, 3
KINDS = {SAMPLE: "sample", START: "start", STOP: "stop"}
CLEAN, UNCLEAN, UNKNOWN = 0, 1, 2  # what a run found about the previous boot's last run
DEFAULT_SIZE = 8 << 20  # 30 minutes of a busy 128-CPU host at 1 s (docs/postmortem.md)
MIN_SIZE = 4096


@dataclass(frozen=True)
class Run:
    """Who writes: repeated in every record, so a run is known after any number of wraps."""

    boot: str
    started: float
    pid: int
    interval: float
    previous_boot: int = UNKNOWN

    @property
    def key(self) -> tuple[str, float, int]:
        return self.boot, self.started, self.pid


@dataclass(frozen=True, slots=True)
class Record:
    """An intact record's header and where it lies; Scan.data reads its payload."""

    seq: int
    kind: int
    time: float
    run: Run
    ring_size: int
    errors: int
    offset: int
    size: int


def boot_bytes(boot: str) -> bytes:
    return uuid.UUID(boot).bytes if boot else bytes(16)


def boot_text(raw: bytes) -> str:
    return str(uuid.UUID(bytes=raw)) if any(raw) else ""


def encode(seq: int, kind: int, t: float, run: Run, ring_size: int, errors: int, data: dict) -> bytes:
    payload = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 1)
    fields = (kind, run.previous_boot, seq, t, boot_bytes(run.boot), run.started, run.pid, round(run.interval * 1000),
              ring_size, min(errors, 0xFFFFFFFF), len(payload))
    crc = zlib.crc32(payload, zlib.crc32(HEADER.pack(MAGIC, *fields, 0)))
    return HEADER.pack(MAGIC, *fields, crc) + payload


@dataclass(frozen=True)
class Broken:
    """A record header found where the record is not intact: torn, overwritten or corrupt; seq is the header's word."""

    offset: int
    seq: int | None  # None: the header itself runs past the end of the file


def decode_at(buf: bytes, offset: int, runs: dict) -> Record | Broken:
    """The record at offset, or what is known of a damaged one (the bytes there start with MAGIC).
    `runs` shares one Run object among the records of a run, however many records repeat it."""
    if offset + HEADER.size > len(buf):
        return Broken(offset, None)
    _, kind, previous, seq, t, boot, started, pid, interval, ring_size, errors, length, crc = HEADER.unpack_from(buf, offset)
    body, end = offset + HEADER.size, offset + HEADER.size + length
    if kind not in KINDS or end > len(buf):
        return Broken(offset, seq)
    view = memoryview(buf)
    if zlib.crc32(view[body:end], zlib.crc32(ZERO_CRC, zlib.crc32(view[offset:body - 4]))) != crc:
        return Broken(offset, seq)
    key = (boot, started, pid, interval, previous)
    run = runs.get(key)
    if run is None:
        run = runs[key] = Run(boot_text(boot), started, pid, interval / 1000, previous)
    return Record(seq, kind, t, run, ring_size, errors, offset, end - offset)


@dataclass
class Scan:
    """A ring image read: its intact records oldest first and what else was found."""

    records: list[Record]
    broken: list[Broken]
    duplicates: int  # intact records whose seq another intact record already has
    old_format: int  # "LXFR" in the image: records of format 1
    buf: bytes

    def data(self, record: Record) -> dict | None:
        """The record's payload, None if it does not decode (its CRC matched: only a writer bug gets here)."""
        try:
            return json.loads(zlib.decompress(self.buf[record.offset + HEADER.size:record.offset + record.size]))
        except (zlib.error, ValueError):
            return None


def scan(buf: bytes, keep: bool = True) -> Scan:
    """Every intact record in a ring image; torn or half-overwritten records fail their CRC and are listed as broken.
    keep=False keeps only the newest record: opening the ring for writing needs no more, in little memory."""
    found: dict[int, Record] = {}
    newest: Record | None = None
    broken: list[Broken] = []
    duplicates = 0
    runs: dict = {}
    pos = buf.find(MAGIC)
    while pos >= 0:
        record = decode_at(buf, pos, runs)
        if isinstance(record, Broken):
            broken.append(record)
            pos = buf.find(MAGIC, pos + 1)
            continue
        if keep:
            duplicates += record.seq in found
            found[record.seq] = record
        if newest is None or record.seq > newest.seq:
            newest = record
        pos = buf.find(MAGIC, pos + record.size)
    records = [found[s] for s in sorted(found)] if keep else [newest] if newest else []
    return Scan(records, broken, duplicates, buf.count(OLD_MAGIC), buf)


def read(path: str) -> Scan:
    with open(path, "rb") as f:
        return scan(f.read())


def boot_id(procfs: str = "/proc") -> str:
    """This boot's id, "" if unreadable or not a UUID (then no run can be told apart from this boot's)."""
    try:
        with open(os.path.join(procfs, "sys", "kernel", "random", "boot_id")) as f:
            return str(uuid.UUID(f.read().strip()))
    except (OSError, ValueError):
        return ""


def figures(prev: Snapshot | None, snap: Snapshot, verdict: Verdict) -> dict:
    """What one sample record holds: rates rounded to what a person reads, modes, container states."""
    nics = {}
    for device, v in sorted(verdict.nics.items()):
        r = v.rates
        nics[device] = [round(r.packets, 1), round(r.irqs, 1),
                        None if r.packets_per_irq is None else round(r.packets_per_irq, 2),
                        round(r.squeezes, 2), int(v.mode.heavy), v.mode.reason]
    cpus = {}
    if prev is not None:
        for cpu, c in rates.cpu_rates(prev, snap).items():
            if c.processed or c.dropped or c.squeezes:
                cpus[str(cpu)] = [round(c.processed, 1), round(c.dropped, 2), round(c.squeezes, 2)]
    return {"n": nics, "c": cpus, "h": [int(verdict.host.heavy), verdict.host.reason],
            "x": {name: c.state for name, c in sorted(snap.containers.items())}}


NIC_FIELDS = ("packets", "irqs", "packets_per_irq", "squeezes", "heavy", "reason")
CPU_FIELDS = ("processed", "dropped", "squeezes")


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


def previous_boot(newest: Record | None, old_format: int, boot: str) -> tuple[int, str]:
    """(CLEAN, UNCLEAN or UNKNOWN, that boot's id) about the previous boot's last run, from the ring's newest record:
    a run of another boot ended cleanly only with its stop record; a run of this boot already found out, and says so
    in every record, so the answer survives any number of wraps and restarts within this boot."""
    if not boot:
        return UNKNOWN, ""
    if newest is None:
        return (UNKNOWN if old_format else CLEAN), ""
    if newest.run.boot == boot:
        return newest.run.previous_boot, ""
    if not newest.run.boot:
        return UNKNOWN, ""
    return (CLEAN if newest.kind == STOP else UNCLEAN), newest.run.boot


class Recorder:
    """The agent's side: a Sampler.on_sample callback that never raises, plus counters for the metrics."""

    def __init__(self, path: str, size: int, sync_interval: float, boot: str, version: str = "", interval: float = 1.0):
        self.path, self.sync_interval, self.boot = path, sync_interval, boot
        self.records = self.bytes = self.errors = 0
        self.previous_boot_unclean: bool | None = None
        self.previous_boot: str = ""
        self._error = ""
        self._prev: Snapshot | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.ring: Ring | None = None
        try:
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
            data = figures(self._prev, snap, verdict)
        except Exception as e:  # a figure we cannot compute must not stop the sampler
            self._failed(e)
            return
        finally:
            self._prev = snap
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
