"""`lxcwatch postmortem` end to end: the real agent on a replayed incident, stopped, then read back."""

import datetime
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.support.agent import Agent, lxcwatch_binary, run_measured
from tests.support.paths import CORPUS, HOSTS
from lxcwatch.blackbox import flight_recorder as fr
from lxcwatch.blackbox import ring_format
from lxcwatch.blackbox import timeline
from lxcwatch.blackbox import ring_survey
from lxcwatch.blackbox import postmortem_tool
from lxcwatch.core.classifier import Verdict
from tests.e2e.test_flight_recorder import crash, old_format_record, snapshot

# Bounds for reading a ring of at most 1 MiB: the interpreter, zlib and PIL take ~37 MiB; a ring adds ~2.4x its size
# (docs/postmortem.md); the rest is headroom for a loaded machine.
RSS_LIMIT_KIB = 64 << 10
SECONDS_LIMIT = 10.0
# both_nics_heavy-1's labels (trace seconds): eth0 heavy 25..95, eth1 heavy 37..82; replayed at speed 10.
ONSETS = {"eth0": 25.0, "eth1": 37.0}
SPEED = 10.0
NIC_COLOURS = {(31, 119, 180), (214, 39, 40)}
HEAVY = (255, 160, 0)


def postmortem(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([lxcwatch_binary(), "postmortem", *args], capture_output=True, text=True, timeout=60)


def measured(*args: str) -> tuple[subprocess.CompletedProcess, float, int]:
    """`lxcwatch postmortem` with the time it took and its peak RSS in KiB."""
    return run_measured([lxcwatch_binary(), "postmortem", *args], timeout=120)


def report(ring: Path, out: Path, *more: str) -> str:
    """postmortem's summary.txt, asserting it ran within the time and memory bounds."""
    done, seconds, rss = measured(f"--recorder.path={ring}", f"--out={out}", *more)
    assert done.returncode == 0, done.stderr
    print(f"postmortem of {ring.name}: {seconds:.2f} s, peak RSS {rss / 1024:.0f} MiB")  # shown with pytest -s
    assert seconds < SECONDS_LIMIT and rss < RSS_LIMIT_KIB, (seconds, rss)
    return (out / "summary.txt").read_text()


def run_line(summary: str) -> str:
    return next(line for line in summary.splitlines() if line.startswith("run: "))


def parse_stamp(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").timestamp()


def heavy_episodes(summary: str) -> dict[str, list[tuple[float, str]]]:
    out, device = {}, None
    for line in summary.splitlines():
        if m := re.match(r"  (\w+): peak ", line):
            device = m.group(1)
        elif m := re.match(r"    napi_heavy (\S+ \S+) \.\. .* \((\w+)\)$", line):
            out.setdefault(device, []).append((parse_stamp(m.group(1)), m.group(2)))
    return out


@pytest.fixture(scope="module")
def incident(tmp_path_factory):
    """The agent's ring after it watched both NICs slide into polling and back, then got SIGTERM."""
    tmp = tmp_path_factory.mktemp("incident")
    root, ring = tmp / "root", tmp / "flight.ring"
    (tmp / "lxc").mkdir()
    replay = subprocess.Popen([lxcwatch_binary(), "replay", str(CORPUS / "both_nics_heavy-1.trace.gz"),
                               f"--out-root={root}", f"--speed={SPEED:g}"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (root / "proc" / "net" / "dev").exists():  # record 0 is written at the replay's start
            with pytest.raises(subprocess.TimeoutExpired):
                replay.wait(timeout=0.01)
            assert time.monotonic() < deadline
        replay_started = time.time()
        agent = Agent([f"--path.procfs={root / 'proc'}", f"--path.sysfs={root / 'sys'}", f"--path.lxc={tmp / 'lxc'}",
                       "--sample.interval=100ms", f"--recorder.path={ring}", "--recorder.size=1MiB"])
        try:  # the host went heavy and came back: two changes of its verdict
            agent.wait_for(lambda e: e.value("lxcwatch_host_mode_changes_total") >= 2, "the episode's end", timeout=30)
            agent.proc.send_signal(signal.SIGTERM)
            assert agent.proc.wait(timeout=10) == 0
        finally:
            agent.stop()
    finally:
        replay.kill()
        replay.wait()
    out = tmp / "out"
    done = postmortem(f"--recorder.path={ring}", f"--out={out}", "--minutes=5")
    assert done.returncode == 0, done.stderr
    return replay_started, out, ring


def test_summary_names_each_heavy_episode_at_its_onset(incident):
    started, out, _ = incident
    summary = (out / "summary.txt").read_text()
    episodes = heavy_episodes(summary)
    assert set(episodes) == {"eth0", "eth1"}, summary
    for device, onset in ONSETS.items():
        (begin, reason), = episodes[device]
        expected = started + onset / SPEED
        # enter_samples (4) of evidence plus one partial interval, plus replay and sampling jitter
        assert expected - 0.3 <= begin <= expected + 0.9, (device, begin - expected, summary)
        # counter evidence (the trace has no poll counts): packets per IRQ above the boundary with squeezes, or a
        # sample that saw packets but no IRQ (the replay rewrites files one by one while the agent reads them)
        assert reason in ("time_squeeze", "packets_per_interrupt"), summary
    assert "stopped cleanly" in summary and "UNCLEAN" not in summary
    assert re.search(r"eth0: peak \d{6,} packets/s", summary)  # the trace peaks above 1M packets/s


def test_timeline_png_has_its_panels(incident):
    _, out, _ = incident
    image = Image.open(out / "timeline.png")
    assert image.format == "PNG" and image.size == (1200, 792)
    rgb = image.convert("RGB")
    width, _ = rgb.size
    panels = [(40, 190), (202, 352), (364, 514), (526, 676)]  # packets/s, IRQs/s, packets per IRQ, squeezes/s
    for top, bottom in panels:
        colours = {rgb.getpixel((x, y)) for x in range(91, 1029) for y in range(top + 1, bottom)}
        assert NIC_COLOURS <= colours, (top, NIC_COLOURS - colours)
    band = {rgb.getpixel((x, 700)) for x in range(91, 1029)}  # eth0's mode band
    assert HEAVY in band


def test_without_pillow_the_summary_is_written_and_one_line_says_how_to_get_the_picture(incident, tmp_path):
    _, _, ring = incident
    out = tmp_path / "out"
    blocked = "import sys; sys.modules['PIL'] = None; from lxcwatch.cli import main; sys.exit(main())"  # as if absent
    done = subprocess.run([sys.executable, "-c", blocked, "postmortem", f"--recorder.path={ring}", f"--out={out}",
                           "--minutes=5"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ("lxcwatch postmortem: timeline.png not drawn: Pillow is not installed "
                                   "(pip install 'lxcwatch[postmortem]')")
    assert sorted(p.name for p in out.iterdir()) == ["summary.txt"]
    assert done.stdout.split() == [str(out / "summary.txt")]


@pytest.mark.parametrize("value,label", [(8_009_000, "8.01M"), (248_700, "249k"), (2288, "2.29k"), (999, "999"),
                                         (64, "64"), (0.5, "0.5"), (3.2e9, "3.2G")])
def test_axis_labels_are_short(value, label):
    assert timeline.si(value) == label


def test_errors_are_one_line(tmp_path, incident):
    _, _, ring = incident
    for args, message in [
        ([f"--recorder.path={tmp_path / 'none'}"], "no flight recorder ring"),
        ([f"--recorder.path={ring}", "--around=yesterday-ish"], "invalid --around"),
    ]:
        done = postmortem(*args, f"--out={tmp_path / 'out'}")
        assert done.returncode != 0 and message in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    empty = tmp_path / "empty.ring"
    fr.Ring(str(empty), 4096).close()
    done = postmortem(f"--recorder.path={empty}", f"--out={tmp_path / 'out'}")
    assert done.returncode == 1 and "no samples recorded" in done.stderr and "Traceback" not in done.stderr
    old = tmp_path / "old.ring"
    old.write_bytes(old_format_record(1, 2, {"t": 1.0, "boot": "x", "pid": 1}) + old_format_record(2, 1, {"t": 2.0}))
    done = postmortem(f"--recorder.path={old}", f"--out={tmp_path / 'out'}")
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "a ring of the old format (LXFR records" in done.stderr and "not understood" in done.stderr


def test_around_an_earlier_time_cuts_the_window(incident, tmp_path):
    started, _, ring = incident
    cut = started + 3.5  # after eth0 went heavy (onset 2.5 s + 4 samples), before eth1 did (onset 3.7 s)
    done = postmortem(f"--recorder.path={ring}", f"--out={tmp_path}", f"--around={cut}", "--minutes=1")
    assert done.returncode == 0, done.stderr
    episodes = heavy_episodes((tmp_path / "summary.txt").read_text())
    assert "eth1" not in episodes and "eth0" in episodes


def test_kernel_events_of_the_run_show_in_summary_and_timeline(incident, tmp_path):
    """The run's boot's kernel messages, from real journal files (systemd-journal-remote), on the timeline."""
    from tests.unit.test_klog import kernel, make_journal  # the journal-file helper of the klog tests

    started, _, ring = incident
    boot = fr.boot_id()  # the incident ran in this boot
    journal = make_journal(tmp_path / "journal", [
        kernel(started + 3.0, boot, "tg3 0000:02:00.0 eth0: transmit timed out, resetting"),
        kernel(started + 3.2, boot, "eth0: renamed from veth1234"),  # no signature: not an event
    ])
    out = tmp_path / "out"
    done = postmortem(f"--recorder.path={ring}", f"--out={out}", "--minutes=5", f"--path.journal={journal}")
    assert done.returncode == 0, done.stderr
    summary = (out / "summary.txt").read_text()
    events = summary.split("kernel events (journal)\n", 1)[1].splitlines()
    assert len([e for e in events if e.startswith("  20")]) == 1, summary
    assert re.match(r"  \S+ \S+ \w+ eth0: tg3 0000:02:00.0 eth0: transmit timed out, resetting$", events[0]), events
    rgb = Image.open(out / "timeline.png").convert("RGB")
    assert (120, 0, 120) in {rgb.getpixel((x, y)) for x in range(91, 1029) for y in range(40, 676, 4)}


def tg3_agent(ring: Path, lxc: Path, *more: str, interval: str = "50ms", command: list[str] | None = None) -> Agent:
    return Agent([f"--path.procfs={HOSTS / 'tg3-pair' / 'proc'}", f"--path.sysfs={HOSTS / 'tg3-pair' / 'sys'}",
                  f"--path.lxc={lxc}", f"--sample.interval={interval}", f"--recorder.path={ring}", *more], command=command)


def kill_9(agent: Agent) -> None:
    agent.proc.send_signal(signal.SIGKILL)
    assert agent.proc.wait(timeout=10) == -signal.SIGKILL
    agent.stop()


def records(agent: Agent, n: int) -> None:
    agent.wait_for(lambda e: e.value("lxcwatch_recorder_records_total") >= n, f"{n} records", timeout=30)


def test_a_live_agent_is_running_not_crashed_and_a_killed_one_is_unclean(tmp_path):
    ring = tmp_path / "flight.ring"
    agent = tg3_agent(ring, tmp_path, "--recorder.size=1MiB")
    try:
        records(agent, 20)
        summary = report(ring, tmp_path / "live")
        assert f"pid {agent.proc.pid}, boot {fr.boot_id()} (this boot)" in run_line(summary)
        assert "RUNNING" in run_line(summary) and "UNCLEAN" not in summary, summary
    finally:
        kill_9(agent)
    summary = report(ring, tmp_path / "dead")
    assert "ENDED UNCLEANLY" in run_line(summary) and "(killed; the host stayed up)" in run_line(summary), summary


def test_after_many_kill_9_restarts_the_last_run_is_shown(tmp_path):
    """Six runs killed one after the other in this boot, wrapping a 16 KiB ring: the last one is the report's."""
    ring, pids = tmp_path / "flight.ring", []
    for _ in range(6):
        agent = tg3_agent(ring, tmp_path, "--recorder.size=16KiB", interval="20ms")
        try:
            records(agent, 60)
            pids.append(agent.proc.pid)
        finally:
            kill_9(agent)
    assert fr.read(str(ring)).records[0].seq > 1  # wrapped: the first runs' records are gone
    line = run_line(report(ring, tmp_path / "out"))
    assert line.startswith(f"run: pid {pids[-1]}, ") and "ENDED UNCLEANLY" in line, (pids, line)


T0 = 1764000000.0  # snapshot(k) is stamped T0 + k


def recorded(ring: Path, samples: range) -> fr.Recorder:
    """A ring written by the recorder itself in this boot: a start record, then one sample a second."""
    recorder = fr.Recorder(str(ring), 1 << 20, 60.0, fr.boot_id())
    for k in samples:
        recorder.sampled(snapshot(k), Verdict())
    return recorder


def damage_lines(summary: str) -> list[str]:
    return summary.split("damage:\n", 1)[1].split("\n\n", 1)[0].splitlines()


def stamps(line: str) -> list[float]:
    return [parse_stamp(m) for m in re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", line)]


def test_a_corrupt_middle_and_a_truncated_tail_are_named(tmp_path):
    ring = tmp_path / "flight.ring"
    crash(recorded(ring, range(1, 121)))  # seq 1 is the start record, seq k + 1 the sample of T0 + k
    found = fr.read(str(ring)).records
    with open(ring, "r+b") as f:
        for r in found[50:53]:  # the samples of T0 + 50 .. 52: one flipped byte each
            f.seek(r.offset + ring_format.HEADER.size + 2)
            byte = f.read(1)[0]
            f.seek(-1, 1)
            f.write(bytes([byte ^ 0x20]))
        last = found[-1]  # the last write, cut short halfway
        f.seek(last.offset + last.size // 2)
        f.write(bytes(last.size - last.size // 2))
    summary = report(ring, tmp_path / "out")
    assert "samples in window: 116" in summary  # 120 written, 3 corrupt, 1 torn
    lines = damage_lines(summary)
    assert lines[0] == "  missing records: 3 between the oldest and the newest, 3 of them with a corrupt header left"
    assert lines[1].startswith("    seq 51..53: ") and stamps(lines[1]) == [T0 + 49, T0 + 53], lines
    assert lines[2].startswith("  truncated tail: the write after the newest record "), lines
    gap = next(line for line in lines if "records lost" in line)
    assert stamps(gap) == [T0 + 49, T0 + 53] and gap.endswith("(4.0 s): 3 records lost"), gap
    assert "ENDED UNCLEANLY" in run_line(summary) and "last record " in run_line(summary)


def test_the_ring_lock_names_its_holder(tmp_path):
    """Against a /proc/locks of ours that names the ring's device and inode (the kernel's: tests/live)."""
    path, locks = tmp_path / "flight.ring", tmp_path / "locks"
    path.write_bytes(b"")
    st = os.stat(path)
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    locks.write_text(f"1: FLOCK  ADVISORY  WRITE 4242 {where} 0 EOF\n1: -> FLOCK  ADVISORY  WRITE 5151 {where} 0 EOF\n"
                     f"2: POSIX  ADVISORY  WRITE 3568 {where} 0 EOF\n")
    assert postmortem_tool.lock_holders(str(path), locks=str(locks)) == {4242}
    locks.write_text("1: FLOCK  ADVISORY  WRITE 4242 fd:00:1 0 EOF\n")
    assert postmortem_tool.lock_holders(str(path), locks=str(locks)) == set()
    locks.write_text("1: FLOCK\n")
    assert postmortem_tool.lock_holders(str(path), locks=str(locks)) is None  # unreadable: the run may be alive
    assert postmortem_tool.lock_holders(str(path), locks=str(tmp_path / "no-locks")) is None


# Fixed ids: parameters (and so test ids) must be the same in every pytest-xdist worker.
THIS, EARLIER = "0c4d1e5b-0000-4000-8000-000000000001", "0c4d1e5b-0000-4000-8000-000000000002"


@pytest.mark.parametrize("boot,kinds,newest,current,holders,expected", [
    (EARLIER, [ring_format.START, ring_format.SAMPLE], True, THIS, set(), "unclean"),  # the host went down under it
    (EARLIER, [ring_format.SAMPLE, ring_format.STOP], True, THIS, set(), "stopped"),
    (THIS, [ring_format.SAMPLE], True, THIS, {4242}, "running"),  # even with its start record overwritten
    (THIS, [ring_format.SAMPLE], True, THIS, {0}, "running"),  # a holder this pid namespace cannot see
    (THIS, [ring_format.SAMPLE], True, THIS, {999}, "unclean"),  # a new agent took the lock before writing
    (THIS, [ring_format.SAMPLE], True, THIS, set(), "unclean"),  # kill -9: the lock went with the process
    (THIS, [ring_format.SAMPLE], False, THIS, {4242}, "unclean"),  # a later run of this boot exists
    (THIS, [ring_format.SAMPLE], True, THIS, None, "unknown"),  # /proc/locks unreadable: maybe alive
    (THIS, [ring_format.SAMPLE], True, "", {4242}, "unknown"),  # this boot's id unreadable
    ("", [ring_format.SAMPLE], True, THIS, set(), "unknown"),  # the run's boot id was unreadable
])
def test_how_a_run_ended(boot, kinds, newest, current, holders, expected):
    run = ring_format.Run(boot, T0, 4242, 1.0, ring_format.CLEAN)
    view = ring_survey.RunView(run, [ring_format.Record(i + 1, kind, T0 + i, run, 1 << 20, 0, 0, 100) for i, kind in enumerate(kinds)])
    assert ring_survey.state(view, newest, current, holders) == expected
