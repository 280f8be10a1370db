"""The flight recorder's ring format (LXF2, docs/postmortem.md): records, their encoding and decoding, and what a
sample record holds. Pure: lxcwatch/blackbox/flight_recorder.py writes and reads the file."""

import json
import struct
import uuid
import zlib
from dataclasses import dataclass

from lxcwatch.core.classifier import Verdict
from lxcwatch.core.snapshot import Snapshot

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


def figures(snap: Snapshot, verdict: Verdict) -> dict:
    """What one sample record holds: the verdict's rates rounded to what a person reads, modes, container states."""
    nics = {}
    for device, v in sorted(verdict.nics.items()):
        r = v.rates
        nics[device] = [round(r.packets, 1), round(r.irqs, 1),
                        None if r.packets_per_irq is None else round(r.packets_per_irq, 2),
                        round(r.squeezes, 2), int(v.mode.heavy), v.mode.reason]
    cpus = {str(cpu): [round(c.processed, 1), round(c.dropped, 2), round(c.squeezes, 2)]
            for cpu, c in verdict.cpus.items() if c.processed or c.dropped or c.squeezes}
    return {"n": nics, "c": cpus, "h": [int(verdict.host.heavy), verdict.host.reason],
            "x": {name: c.state for name, c in sorted(snap.containers.items())}}


NIC_FIELDS = ("packets", "irqs", "packets_per_irq", "squeezes", "heavy", "reason")
CPU_FIELDS = ("processed", "dropped", "squeezes")


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
