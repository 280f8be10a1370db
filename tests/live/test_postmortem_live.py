"""lxcwatch postmortem on the live host: a crash in an earlier boot (a mount namespace over boot_id), and rings on a
full file system (a 64 KiB tmpfs, tests/live/conftest.py)."""

import fcntl
import os
import re
import time
import uuid

import pytest

from tests.support.agent import lxcwatch_binary
from lxcwatch.blackbox import flight_recorder as fr
from lxcwatch.blackbox import postmortem_tool, ring_format
from lxcwatch.core.classifier import Verdict
from tests.e2e.test_flight_recorder import snapshot
from tests.e2e.test_postmortem import (T0, damage_lines, kill_9, parse_stamp, postmortem, recorded, records, report, run_line,
                                       stamps, tg3_agent)


@pytest.mark.live
@pytest.mark.slow
def test_a_crash_in_an_earlier_boot_survives_a_wrapped_ring(tmp_path):
    """The issue's reproduction, for real: the agent runs in a mount namespace where boot_id is a file of ours (an
    earlier boot), wraps a 64 KiB ring at 50 ms (~45 s) and is killed; restarted in the real boot, it says the
    previous boot ended uncleanly (and still after a kill -9 and a restart within this boot), and postmortem reports
    that run, by its pid and boot, with its real start, while the new run is alive."""
    if os.geteuid() != 0:
        pytest.skip("a mount namespace and a bind mount over /proc/sys/kernel/random/boot_id need root")
    ring, fake = tmp_path / "flight.ring", tmp_path / "boot_id"
    earlier = str(uuid.uuid4())
    fake.write_text(earlier + "\n")
    in_earlier_boot = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                       'mount --bind "$0" /proc/sys/kernel/random/boot_id && exec "$@"', str(fake), lxcwatch_binary()]
    started = time.time()
    agent = tg3_agent(ring, tmp_path, "--recorder.size=64KiB", command=in_earlier_boot)
    try:
        agent.wait_for(lambda e: e.value("lxcwatch_recorder_written_bytes_total") >= 1.5 * (64 << 10), "a wrap and a half",
                       timeout=120)
        crashed_pid = agent.proc.pid
    finally:
        kill_9(agent)
    found = fr.read(str(ring)).records
    assert found[0].seq > 1 and found[0].kind == ring_format.SAMPLE  # wrapped: the run's start record is overwritten
    assert {r.run.boot for r in found} == {earlier}
    agent = tg3_agent(ring, tmp_path, "--recorder.size=64KiB")
    try:
        assert agent.scrape().value("lxcwatch_previous_boot_unclean") == 1
        assert "the previous boot ended without a clean stop of lxcwatch" in agent.output()
        assert earlier in agent.output()  # the warning names the boot
        summary = report(ring, tmp_path / "out")  # while the new run is alive in this boot
        records(agent, 40)
    finally:
        kill_9(agent)
    agent = tg3_agent(ring, tmp_path, "--recorder.size=64KiB")  # killed and restarted within this boot: still known
    try:
        assert agent.scrape().value("lxcwatch_previous_boot_unclean") == 1
    finally:
        agent.stop()
    line = run_line(summary)
    assert line.startswith(f"run: pid {crashed_pid}, boot {earlier} (an earlier boot), started "), line
    assert "ENDED UNCLEANLY" in line and "its start record is overwritten" in line, line
    begun = parse_stamp(re.search(r"started (\S+ \S+)", line).group(1))
    assert started <= begun <= started + 30  # the run's real start, not 1970
    assert "1970" not in summary


def test_failed_writes_show_as_a_gap_and_the_count_the_agent_kept(tiny_tmpfs, tmp_path):
    """A full disk: writes fail for a while; postmortem names the hole and the errors the ring itself recorded."""
    filler = tiny_tmpfs / "filler"
    filler.write_bytes(b"\1" * (40 << 10))
    ring = tiny_tmpfs / "flight.ring"
    recorder = recorded(ring, range(1, 3001))
    assert recorder.errors > 0
    filler.unlink()
    for k in range(3001, 3011):
        recorder.sampled(snapshot(k), Verdict())
    recorder.stop()
    found = fr.read(str(ring)).records
    last_before = max(r.time for r in found if r.kind == ring_format.SAMPLE and r.time < T0 + 3001)
    summary = report(ring, tmp_path / "out")
    lines = damage_lines(summary)
    assert f"  write errors counted by the agent: {recorder.errors} (by its last record)" in lines, lines
    gap = next(line for line in lines if "nothing written" in line)
    assert stamps(gap) == [last_before, T0 + 3001], gap
    assert "stopped cleanly" in run_line(summary)


def test_out_on_a_full_file_system_is_one_line(tiny_tmpfs, tmp_path):
    ring = tmp_path / "flight.ring"
    recorded(ring, range(1, 31)).stop()
    with open(tiny_tmpfs / "filler", "wb", buffering=0) as f:  # every page of the tmpfs
        with pytest.raises(OSError, match="No space left"):
            while True:
                f.write(b"\1" * 4096)
    done = postmortem(f"--recorder.path={ring}", f"--out={tiny_tmpfs / 'pm'}")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "No space left on device" in done.stderr, done.stderr


def test_the_kernels_lock_table_names_the_ring_holder(tmp_path):
    """The real /proc/locks: this process's flock on a ring, and none once released."""
    path = tmp_path / "flight.ring"
    path.write_bytes(b"")
    assert os.getpid() not in postmortem_tool.lock_holders(str(path))
    with open(path, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert os.getpid() in postmortem_tool.lock_holders(str(path))
