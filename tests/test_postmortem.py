"""`lxcwatch postmortem` end to end: the real agent on a replayed incident, stopped, then read back."""

import datetime
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from agent import Agent, lxcwatch_binary
from lxcwatch import flight_recorder as fr
from lxcwatch import postmortem as pm

CORPUS = Path(__file__).parent / "corpus"
# both_nics_heavy-1's labels (trace seconds): eth0 heavy 25..95, eth1 heavy 37..82; replayed at speed 10.
ONSETS = {"eth0": 25.0, "eth1": 37.0}
SPEED = 10.0
NIC_COLOURS = {(31, 119, 180), (214, 39, 40)}
HEAVY = (255, 160, 0)


def postmortem(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([lxcwatch_binary(), "postmortem", *args], capture_output=True, text=True, timeout=60)


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
        assert reason == "time_squeeze"  # packets per IRQ above the boundary, corroborated by squeezes (no poll counts)
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


@pytest.mark.parametrize("value,label", [(8_009_000, "8.01M"), (248_700, "249k"), (2288, "2.29k"), (999, "999"),
                                         (64, "64"), (0.5, "0.5"), (3.2e9, "3.2G")])
def test_axis_labels_are_short(value, label):
    assert pm.si(value) == label


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


def test_around_an_earlier_time_cuts_the_window(incident, tmp_path):
    started, _, ring = incident
    cut = started + 3.5  # after eth0 went heavy (onset 2.5 s + 4 samples), before eth1 did (onset 3.7 s)
    done = postmortem(f"--recorder.path={ring}", f"--out={tmp_path}", f"--around={cut}", "--minutes=1")
    assert done.returncode == 0, done.stderr
    episodes = heavy_episodes((tmp_path / "summary.txt").read_text())
    assert "eth1" not in episodes and "eth0" in episodes


def test_kernel_events_of_the_run_show_in_summary_and_timeline(incident, tmp_path):
    """The run's boot's kernel messages, from real journal files (systemd-journal-remote), on the timeline."""
    from test_klog import kernel, make_journal  # the journal-file helper of the klog tests

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
