"""The flight recorder on a real full file system (a 64 KiB tmpfs, tests/live/conftest.py): write errors are counted
and sampling goes on."""

from lxcwatch.blackbox import flight_recorder as fr
from lxcwatch.blackbox import ring_format
from lxcwatch.core.classifier import Verdict
from tests.e2e.test_flight_recorder import BOOT_A, snapshot


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
