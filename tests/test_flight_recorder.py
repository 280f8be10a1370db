"""The flight recorder's ring: round trip, wrap-around, torn and corrupted records, a full disk, the real agent on SIGTERM."""

import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from agent import Agent
from lxcwatch.blackbox import flight_recorder as fr
from lxcwatch.blackbox import ring_format
from lxcwatch.core.classifier import Verdict
from lxcwatch.collectors import build
from lxcwatch.core.snapshot import Snapshot

HOSTS = Path(__file__).parent / "fixtures" / "hosts"
BENCH = Path(__file__).parent.parent / "bench"
BOOT_A, BOOT_B, BOOT_C = (str(uuid.uuid4()) for _ in range(3))
RUN = ring_format.Run(BOOT_A, 1764000000.0, 4242, 1.0, ring_format.CLEAN)


def ring(tmp_path, size=64 << 10) -> fr.Ring:
    return fr.Ring(str(tmp_path / "flight.ring"), size)


def write(r: fr.Ring, n: int, start: int = 0, run: ring_format.Run = RUN) -> None:
    for i in range(start, start + n):
        r.append(ring_format.SAMPLE, 1764000000.0 + i, run, 0, {"i": i, "pad": "x" * (i % 7)})


def values(path) -> list[int]:
    found = fr.read(str(path))
    return [found.data(rec)["i"] for rec in found.records if rec.kind == ring_format.SAMPLE]


def test_round_trip(tmp_path):
    r = ring(tmp_path)
    write(r, 50)
    r.close()
    found = fr.read(str(tmp_path / "flight.ring"))
    assert [found.data(rec) for rec in found.records] == [{"i": i, "pad": "x" * (i % 7)} for i in range(50)]
    assert [rec.seq for rec in found.records] == list(range(1, 51))
    assert {rec.run for rec in found.records} == {RUN}  # every record names its run
    assert [rec.time for rec in found.records] == [1764000000.0 + i for i in range(50)]
    assert os.path.getsize(tmp_path / "flight.ring") == 64 << 10  # preallocated, never grows


def test_reopening_continues_after_the_last_record(tmp_path):
    r = ring(tmp_path)
    write(r, 10)
    r.close()
    r = ring(tmp_path)
    assert r.seq == 11
    write(r, 5, start=10)
    r.close()
    assert values(tmp_path / "flight.ring") == list(range(15))


def test_wrap_around_keeps_the_newest(tmp_path):
    r = ring(tmp_path, size=4096)
    write(r, 2000)
    r.close()
    got = values(tmp_path / "flight.ring")
    assert got[-1] == 1999
    assert got == list(range(got[0], 2000))  # contiguous: nothing newer lost, nothing old resurrected
    assert 4096 // 140 < len(got) <= 4096 // 100  # each record is 76 + 24..64 bytes: the ring is nearly full


def test_a_torn_last_record_loses_only_itself(tmp_path):
    r = ring(tmp_path)
    write(r, 20)
    last = ring_format.scan(Path(r.path).read_bytes()).records[-1]
    r.close()
    with open(tmp_path / "flight.ring", "r+b") as f:  # the power went out halfway through the last write
        f.seek(last.offset + last.size // 2)
        f.write(b"\0" * (last.size - last.size // 2))
    assert values(tmp_path / "flight.ring") == list(range(19))


def test_a_flipped_byte_in_an_old_record_drops_only_that_record(tmp_path):
    r = ring(tmp_path)
    write(r, 20)
    fifth = ring_format.scan(Path(r.path).read_bytes()).records[4]
    r.close()
    with open(tmp_path / "flight.ring", "r+b") as f:
        f.seek(fifth.offset + ring_format.HEADER.size + 3)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x40]))
    assert values(tmp_path / "flight.ring") == [i for i in range(20) if i != 4]


def test_a_record_larger_than_the_ring_is_refused(tmp_path):
    r = ring(tmp_path, size=4096)
    write(r, 3)
    with pytest.raises(ValueError, match="does not fit"):
        r.append(ring_format.SAMPLE, 0.0, RUN, 0, {"i": 99, "pad": os.urandom(4096).hex()})
    write(r, 1, start=3)
    r.close()
    assert values(tmp_path / "flight.ring") == [0, 1, 2, 3]


def snapshot(seq: int) -> Snapshot:
    return build(None, seq, 1764000000.0 + seq, float(seq), {}, {})


@pytest.fixture
def tiny_tmpfs():
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    directory = tempfile.mkdtemp(prefix="lxcwatch-full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", directory], check=True)
    try:
        yield Path(directory)
    finally:
        subprocess.run(["umount", "--lazy", directory], check=True)  # lazy: a failed test may hold the ring open
        os.rmdir(directory)


def test_disk_full_counts_errors_and_sampling_goes_on(tiny_tmpfs, caplog):
    filler = tiny_tmpfs / "filler"
    filler.write_bytes(b"\1" * (40 << 10))
    # The ring wants 1 MiB on a 64 KiB file system: preallocation fails, then writes do once the disk fills.
    recorder = fr.Recorder(str(tiny_tmpfs / "flight.ring"), 1 << 20, 60.0, BOOT_A)
    assert recorder.enabled
    for seq in range(1, 3001):
        recorder.sampled(snapshot(seq), Verdict())  # must never raise
    assert recorder.errors > 0
    assert recorder.records > 100
    failures = [r for r in caplog.records if r.getMessage() == "flight recorder write failed"]
    assert len(failures) == 1  # logged once per change, not once per sample
    filler.unlink()
    recorder.sampled(snapshot(3001), Verdict())
    recorder.stop()
    records = fr.read(str(tiny_tmpfs / "flight.ring")).records
    samples = [r.time for r in records if r.kind == ring_format.SAMPLE]
    assert samples[:recorder.records - 3] == [1764000000.0 + s for s in range(1, recorder.records - 2)]
    assert samples[-1] == 1764000000.0 + 3001  # it writes again once there is room
    assert records[-1].kind == ring_format.STOP
    # The ring itself keeps the count: the stop record carries every failure counted before it.
    assert records[-1].errors == recorder.errors
    assert records[0].errors == 0

def test_unopenable_ring_disables_the_recorder_without_raising(tmp_path):
    recorder = fr.Recorder(str(tmp_path / "missing" / "flight.ring"), 1 << 16, 5.0, BOOT_A)
    assert not recorder.enabled and recorder.errors == 1
    recorder.sampled(snapshot(1), Verdict())
    recorder.stop()


def crash(recorder: fr.Recorder) -> None:
    """What kill -9 leaves: the records written so far, no stop record, the lock released with the descriptor."""
    recorder._stop.set()
    recorder.ring.close()


def test_unclean_previous_boot_is_detected(tmp_path):
    path = str(tmp_path / "flight.ring")
    first = fr.Recorder(path, 1 << 16, 5.0, BOOT_A)
    assert first.previous_boot_unclean is False  # a new ring: no earlier run to have died
    first.sampled(snapshot(1), Verdict())
    crash(first)
    recorder = fr.Recorder(path, 1 << 16, 5.0, BOOT_B)
    assert recorder.previous_boot_unclean is True and recorder.previous_boot == BOOT_A
    recorder.stop()
    # This run stopped cleanly: the next start, in yet another boot, finds nothing wrong.
    again = fr.Recorder(path, 1 << 16, 5.0, BOOT_C)
    assert again.previous_boot_unclean is False
    again.stop()


def test_a_clean_stop_in_the_previous_boot_is_not_unclean(tmp_path):
    path = str(tmp_path / "flight.ring")
    fr.Recorder(path, 1 << 16, 5.0, BOOT_A).stop()
    recorder = fr.Recorder(path, 1 << 16, 5.0, BOOT_B)
    assert recorder.previous_boot_unclean is False
    recorder.stop()


def test_the_unclean_boot_is_remembered_through_wraps_and_kill_9_restarts(tmp_path):
    """Boot A's run dies with the host; in boot B the agent is killed again and again, each run wrapping the ring
    several times, so that nothing of boot A survives: every run of boot B still says boot A ended uncleanly."""
    path, size = str(tmp_path / "flight.ring"), 8192
    first = fr.Recorder(path, size, 5.0, BOOT_A)
    for seq in range(1, 200):
        first.sampled(snapshot(seq), Verdict())
    crash(first)
    for restart in range(5):
        recorder = fr.Recorder(path, size, 5.0, BOOT_B)
        assert recorder.previous_boot_unclean is True, restart
        for seq in range(1, 200):
            recorder.sampled(snapshot(seq), Verdict())
        crash(recorder)
        boots = {r.run.boot for r in fr.read(path).records}
        assert boots == {BOOT_B}, restart  # boot A's records are all overwritten
    recorder = fr.Recorder(path, size, 5.0, BOOT_B)
    assert recorder.previous_boot_unclean is True
    recorder.stop()  # a clean stop in boot B, then boot C: boot B ended cleanly
    assert fr.Recorder(path, size, 5.0, BOOT_C).previous_boot_unclean is False


def old_format_record(seq: int, kind: int, data: dict) -> bytes:
    """A record of format 1 as lxcwatch wrote it before records named their run: 24-byte header, zlib(JSON)."""
    import json
    import struct
    import zlib

    header = struct.Struct("<4sBxxxQII")
    payload = zlib.compress(json.dumps(data).encode())
    crc = zlib.crc32(payload, zlib.crc32(header.pack(b"LXFR", kind, seq, len(payload), 0)))
    return header.pack(b"LXFR", kind, seq, len(payload), crc) + payload


def test_a_ring_of_the_old_format_is_named_not_misread(tmp_path, caplog):
    path = tmp_path / "flight.ring"
    old = old_format_record(1, 2, {"t": 1.0, "boot": BOOT_A, "pid": 1}) + old_format_record(2, 1, {"t": 2.0})
    path.write_bytes(old + bytes((1 << 16) - len(old)))
    recorder = fr.Recorder(str(path), 1 << 16, 5.0, BOOT_B)
    assert recorder.previous_boot_unclean is None  # not known: the old records cannot say
    assert any("old format" in r.getMessage() for r in caplog.records)
    recorder.stop()
    again = fr.Recorder(str(path), 1 << 16, 5.0, BOOT_C)  # its own records now answer
    assert again.previous_boot_unclean is False
    again.stop()


def test_sigterm_leaves_every_completed_record_and_a_clean_stop(tmp_path):
    path = tmp_path / "flight.ring"
    agent = Agent([f"--path.procfs={HOSTS / 'tg3-pair' / 'proc'}", f"--path.sysfs={HOSTS / 'tg3-pair' / 'sys'}",
                   f"--path.lxc={tmp_path}", "--sample.interval=20ms", f"--recorder.path={path}", "--recorder.size=1MiB"])
    try:
        written = agent.wait_for(lambda e: e.value("lxcwatch_recorder_records_total") >= 50, "50 records")
        assert written.value("lxcwatch_recorder_enabled") == 1
        before = written.value("lxcwatch_recorder_records_total")
        agent.proc.send_signal(signal.SIGTERM)
        assert agent.proc.wait(timeout=10) == 0
    finally:
        agent.stop()
    records = fr.read(str(path)).records
    assert len(records) >= before + 1
    assert [r.seq for r in records] == list(range(1, len(records) + 1))  # no hole
    assert records[0].kind == ring_format.START and records[-1].kind == ring_format.STOP
    assert {r.run for r in records} == {ring_format.Run(fr.boot_id(), records[0].time, agent.proc.pid, 0.02, ring_format.CLEAN)}
    assert fr.boot_id() != ""
    assert all(r.kind == ring_format.SAMPLE for r in records[1:-1])


def test_figures_of_a_sample():
    from lxcwatch.core import classifier, rates

    r = rates.NicRates("eth0", 5000.0, 100.0, 50.0, 80.0, 12.5, (0,))
    v = classifier.NicVerdict("eth0", classifier.Mode(True, "packets_per_interrupt"), "packets_per_interrupt", r, 0.8, 0.0)
    verdict = classifier.Verdict({"eth0": v}, host=classifier.Mode(True, "nic"))
    data = ring_format.figures(snapshot(7), verdict)
    assert data == {"n": {"eth0": [5000.0, 100.0, 50.0, 12.5, 1, "packets_per_interrupt"]},
                    "c": {}, "h": [1, "nic"], "x": {}}


def busy(tree: Path, rng: random.Random) -> None:
    """Every CPU's softnet counters, every interface's and every IRQ's counts move: the biggest sample record."""
    path = tree / "proc" / "net" / "softnet_stat"
    rows = []
    for line in path.read_text().splitlines():
        cols = line.split()  # processed, dropped, time_squeeze: the first three hex columns
        cols[:3] = [f"{(int(c, 16) + rng.randrange(1, 10**6)) & 0xFFFFFFFF:08x}" for c in cols[:3]]
        rows.append(" ".join(cols) + "\n")
    path.write_text("".join(rows))
    for name in ("net/dev", "interrupts"):
        path = tree / "proc" / name
        lines = path.read_text().splitlines(True)
        head = 2 if name == "net/dev" else 1
        moved = [label + ":" + re.sub(r"(?<=\s)[1-9]\d*(?=\s)", lambda m: str(int(m.group()) + rng.randrange(1, 10**5)), rest)
                 for label, rest in (line.split(":", 1) for line in lines[head:])]
        path.write_text("".join(lines[:head] + moved))


def test_the_default_ring_holds_30_minutes_of_a_busy_128_cpu_host(tmp_path):
    """One record per 1 s sample for the last 30 minutes, whatever the uptime (every record names its run, so wraps
    lose only old samples): the bench's synthetic 128-CPU, 8-NIC host, every counter moving, 100 containers."""
    from lxcwatch.collectors import ALL as COLLECTORS
    from lxcwatch.sources.host import Sources
    from lxcwatch.sampler import Sampler

    sys.path.insert(0, str(BENCH))
    import synthetic_host

    synthetic_host.build(str(tmp_path), 128, 8, 32, 50)
    (tmp_path / "lxc").mkdir()
    sampler = Sampler(Sources.open(str(tmp_path / "proc"), str(tmp_path / "sys"), (str(tmp_path / "lxc"),)),
                      list(COLLECTORS), 1.0)
    rng, sizes = random.Random(12), []
    for i in range(6):
        snap = sampler.sample(at=(1764000000.0 + i, 1000.0 + i))
        data = ring_format.figures(snap, sampler.verdict)
        data["x"] = {f"ct{k:04d}": "RUNNING" for k in range(100)}  # bench/synthetic_containers.py's names
        sizes.append(len(ring_format.encode(i + 1, ring_format.SAMPLE, snap.timestamp, RUN, ring_format.DEFAULT_SIZE, 0, data)))
        busy(tmp_path, rng)
    assert len(data["c"]) == 128 and len(data["n"]) >= 8  # every CPU and NIC is in the record
    needed = 30 * 60 * max(sizes)
    assert needed <= ring_format.DEFAULT_SIZE < 2 * needed, (sizes, needed)


def test_opening_a_full_ring_keeps_only_its_newest_record(tmp_path):
    """The agent opens a wrapped ring of ~40,000 records in bounded memory: one read of the ring, then one record."""
    import tracemalloc

    size = 4 << 20
    r = ring(tmp_path, size)
    write(r, 40_000)
    r.close()
    tracemalloc.start()
    try:
        opened = ring(tmp_path, size)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert opened.newest.seq == 40_000 and opened.seq == 40_001
    opened.close()
    assert held < 64 << 10 and peak < 1.5 * size, (held, peak)
