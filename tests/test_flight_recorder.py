"""The flight recorder's ring: round trip, wrap-around, torn and corrupted records, a full disk, the real agent on SIGTERM."""

import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from agent import Agent
from lxcwatch import flight_recorder as fr
from lxcwatch.classifier import Verdict
from lxcwatch.snapshot import Snapshot

HOSTS = Path(__file__).parent / "fixtures" / "hosts"


def ring(tmp_path, size=64 << 10) -> fr.Ring:
    return fr.Ring(str(tmp_path / "flight.ring"), size)


def write(r: fr.Ring, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        r.append(fr.SAMPLE, {"i": i, "pad": "x" * (i % 7)})


def values(path) -> list[int]:
    return [rec.data["i"] for rec in fr.read(str(path)) if rec.kind == fr.SAMPLE]


def test_round_trip(tmp_path):
    r = ring(tmp_path)
    write(r, 50)
    r.close()
    records = fr.read(str(tmp_path / "flight.ring"))
    assert [rec.data for rec in records] == [{"i": i, "pad": "x" * (i % 7)} for i in range(50)]
    assert [rec.seq for rec in records] == list(range(1, 51))
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
    assert 4096 // 64 < len(got) < 4096 // 30  # each record is 30-60 bytes: the ring is nearly full


def test_a_torn_last_record_loses_only_itself(tmp_path):
    r = ring(tmp_path)
    write(r, 20)
    last = fr.scan(Path(r.path).read_bytes())[-1]
    r.close()
    with open(tmp_path / "flight.ring", "r+b") as f:  # the power went out halfway through the last write
        f.seek(last.offset + last.size // 2)
        f.write(b"\0" * (last.size - last.size // 2))
    assert values(tmp_path / "flight.ring") == list(range(19))


def test_a_flipped_byte_in_an_old_record_drops_only_that_record(tmp_path):
    r = ring(tmp_path)
    write(r, 20)
    fifth = fr.scan(Path(r.path).read_bytes())[4]
    r.close()
    with open(tmp_path / "flight.ring", "r+b") as f:
        f.seek(fifth.offset + fr.HEADER.size + 3)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x40]))
    assert values(tmp_path / "flight.ring") == [i for i in range(20) if i != 4]


def test_a_record_larger_than_the_ring_is_refused(tmp_path):
    r = ring(tmp_path, size=4096)
    write(r, 3)
    with pytest.raises(ValueError, match="does not fit"):
        r.append(fr.SAMPLE, {"i": 99, "pad": os.urandom(4096).hex()})
    write(r, 1, start=3)
    r.close()
    assert values(tmp_path / "flight.ring") == [0, 1, 2, 3]


def snapshot(seq: int) -> Snapshot:
    return Snapshot(seq, 1764000000.0 + seq, float(seq), {})


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
    recorder = fr.Recorder(str(tiny_tmpfs / "flight.ring"), 1 << 20, 60.0, "boot-a")
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
    records = fr.read(str(tiny_tmpfs / "flight.ring"))
    samples = [r.data["t"] for r in records if r.kind == fr.SAMPLE]
    assert samples[:recorder.records - 3] == [1764000000.0 + s for s in range(1, recorder.records - 2)]
    assert samples[-1] == 1764000000.0 + 3001  # it writes again once there is room
    assert records[-1].kind == fr.STOP


def test_unopenable_ring_disables_the_recorder_without_raising(tmp_path):
    recorder = fr.Recorder(str(tmp_path / "missing" / "flight.ring"), 1 << 16, 5.0, "boot-a")
    assert not recorder.enabled and recorder.errors == 1
    recorder.sampled(snapshot(1), Verdict())
    recorder.stop()


def test_unclean_previous_boot_is_detected(tmp_path):
    path = str(tmp_path / "flight.ring")
    r = fr.Ring(path, 1 << 16)
    r.append(fr.START, {"t": 1.0, "boot": "old-boot"})
    r.append(fr.SAMPLE, {"t": 2.0})
    r.close()
    recorder = fr.Recorder(path, 1 << 16, 5.0, "new-boot")
    assert recorder.previous_boot_unclean is True and recorder.previous_boot == "old-boot"
    recorder.stop()
    # This run stopped cleanly: the next start, in yet another boot, finds nothing wrong.
    again = fr.Recorder(path, 1 << 16, 5.0, "third-boot")
    assert again.previous_boot_unclean is False
    again.stop()


def test_a_clean_stop_in_the_previous_boot_is_not_unclean(tmp_path):
    path = str(tmp_path / "flight.ring")
    r = fr.Ring(path, 1 << 16)
    r.append(fr.START, {"t": 1.0, "boot": "old-boot"})
    r.append(fr.STOP, {"t": 3.0, "boot": "old-boot"})
    r.close()
    recorder = fr.Recorder(path, 1 << 16, 5.0, "new-boot")
    assert recorder.previous_boot_unclean is False
    recorder.stop()


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
    records = fr.read(str(path))
    assert len(records) >= before + 1
    assert [r.seq for r in records] == list(range(1, len(records) + 1))  # no hole
    assert records[0].kind == fr.START and records[-1].kind == fr.STOP
    assert records[-1].data["boot"] == fr.boot_id() != ""
    assert all(r.kind == fr.SAMPLE for r in records[1:-1])


def test_figures_of_a_sample():
    from lxcwatch import classifier, rates

    r = rates.NicRates("eth0", 5000.0, 100.0, 50.0, 80.0, 12.5, (0,))
    v = classifier.NicVerdict("eth0", classifier.Mode(True, "packets_per_interrupt"), "packets_per_interrupt", r, 0.8, 0.0)
    verdict = classifier.Verdict({"eth0": v}, host=classifier.Mode(True, "nic"))
    data = fr.figures(None, snapshot(7), verdict)
    assert data == {"t": 1764000007.0, "n": {"eth0": [5000.0, 100.0, 50.0, 12.5, 1, "packets_per_interrupt"]},
                    "c": {}, "h": [1, "nic"], "x": {}}
