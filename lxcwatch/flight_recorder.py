"""The flight recorder: each sample's key figures in a fixed-size on-disk ring that survives a panic (docs/postmortem.md)."""

import errno
import fcntl
import json
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass

from lxcwatch import rates
from lxcwatch.classifier import Verdict
from lxcwatch.snapshot import Snapshot

log = logging.getLogger("lxcwatch.recorder")

MAGIC = b"LXFR"
HEADER = struct.Struct("<4sBxxxQII")  # magic, kind, seq, payload length, crc32 (of header with crc 0 + payload)
SAMPLE, START, STOP = 1, 2, 3
KINDS = {SAMPLE: "sample", START: "start", STOP: "stop"}
DEFAULT_SIZE = 64 << 20
MIN_SIZE = 4096


@dataclass(frozen=True)
class Record:
    seq: int
    kind: int
    payload: bytes
    offset: int = 0
    size: int = 0

    @property
    def data(self) -> dict:
        try:
            return json.loads(zlib.decompress(self.payload))
        except (zlib.error, ValueError):  # the CRC matched: only a writer bug gets here
            return {}


def encode(seq: int, kind: int, data: dict) -> bytes:
    payload = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 1)
    head = HEADER.pack(MAGIC, kind, seq, len(payload), 0)
    crc = zlib.crc32(payload, zlib.crc32(head))
    return HEADER.pack(MAGIC, kind, seq, len(payload), crc) + payload


def decode_at(buf: bytes | memoryview, offset: int) -> Record | None:
    """The record at offset, or None if the bytes there are not a whole, intact record."""
    if offset + HEADER.size > len(buf):
        return None
    magic, kind, seq, length, crc = HEADER.unpack_from(buf, offset)
    end = offset + HEADER.size + length
    if magic != MAGIC or kind not in KINDS or end > len(buf):
        return None
    payload = bytes(buf[offset + HEADER.size:end])
    if zlib.crc32(payload, zlib.crc32(HEADER.pack(MAGIC, kind, seq, length, 0))) != crc:
        return None
    return Record(seq, kind, payload, offset, end - offset)


def scan(buf: bytes) -> list[Record]:
    """Every intact record in a ring image, oldest first; torn or half-overwritten records fail their CRC."""
    found: dict[int, Record] = {}
    pos = buf.find(MAGIC)
    while pos >= 0:
        record = decode_at(buf, pos)
        if record is None:
            pos = buf.find(MAGIC, pos + 1)
            continue
        found[record.seq] = record
        pos = buf.find(MAGIC, pos + record.size)
    return [found[s] for s in sorted(found)]


def read(path: str) -> list[Record]:
    with open(path, "rb") as f:
        return scan(f.read())


def boot_id(procfs: str = "/proc") -> str:
    try:
        with open(os.path.join(procfs, "sys", "kernel", "random", "boot_id")) as f:
            return f.read().strip()
    except OSError:
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
    return {"t": round(snap.timestamp, 3), "n": nics, "c": cpus, "h": [int(verdict.host.heavy), verdict.host.reason],
            "x": {name: c.state for name, c in sorted(snap.containers.items())}}


NIC_FIELDS = ("packets", "irqs", "packets_per_irq", "squeezes", "heavy", "reason")
CPU_FIELDS = ("processed", "dropped", "squeezes")


class Ring:
    """A fixed-size file of records written in place one after the other, wrapping to the start."""

    def __init__(self, path: str, size: int):
        self.path, self.size = path, size
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            self.records = self._open()
        except BaseException:
            os.close(self.fd)
            raise
        last = max(self.records, key=lambda r: r.seq, default=None)
        self.seq = last.seq + 1 if last else 1
        self.offset = last.offset + last.size if last else 0
        self.dirty = False

    def _open(self) -> list[Record]:
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # one writer per ring: two agents would interleave
        if os.fstat(self.fd).st_size != self.size:  # a new size keeps the records that still fit
            os.ftruncate(self.fd, self.size)
        try:
            os.posix_fallocate(self.fd, 0, self.size)
        except OSError as e:  # a full disk leaves a sparse file; writes then fail and are counted
            log.warning("could not preallocate the flight recorder", extra={"path": self.path, "err": e.strerror})
        return scan(os.pread(self.fd, self.size, 0))

    def append(self, kind: int, data: dict) -> int:
        """Writes one record after the previous one; raises ValueError if it can never fit, OSError on I/O."""
        record = encode(self.seq, kind, data)
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


def last_run(records: list[Record]) -> tuple[Record | None, Record | None]:
    """The last start record and the stop record that ended its run, if any."""
    start = stop = None
    for r in records:
        if r.kind == START:
            start, stop = r, None
        elif r.kind == STOP and start is not None:
            stop = r
    return start, stop


class Recorder:
    """The agent's side: a Sampler.on_sample callback that never raises, plus counters for the metrics."""

    def __init__(self, path: str, size: int, sync_interval: float, boot: str, version: str = ""):
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
        start, stop = last_run(self.ring.records)
        if start is not None and start.data.get("boot") != boot:
            self.previous_boot = start.data.get("boot", "")
            self.previous_boot_unclean = stop is None
        else:
            self.previous_boot_unclean = False
        self._write(START, {"t": round(time.time(), 3), "boot": boot, "pid": os.getpid(), "version": version})
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

    def _write(self, kind: int, data: dict) -> None:
        with self._lock:
            if self.ring is None:
                return
            try:
                n = self.ring.append(kind, data)
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
        self._write(SAMPLE, data)

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
        self._write(STOP, {"t": round(time.time(), 3), "boot": self.boot})
        self._sync()
        with self._lock:
            self.ring.close()
            self.ring = None
