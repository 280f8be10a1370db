"""lxcwatch record and replay: captures, deltas, the trace file, and the real commands against fixture trees and the live host."""

import gzip
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from agent import POLL, Agent, lxcwatch_binary
from test_e2e_golden import HOSTS

from lxcwatch.traces import capture, replay, trace
from lxcwatch import cli
from lxcwatch.traces.trace import Record, Tree


def tree_of(root) -> Tree:
    """Every file and symlink below root, symlinks not followed (fixture trees hold device -> driver -> device loops)."""
    tree = Tree()
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                tree.links[rel] = os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    tree.files[rel] = f.read().decode("utf-8", "surrogateescape")
    return tree


def copy_host(tmp_path, host: str = "tg3-pair"):
    root = tmp_path / "host"
    shutil.copytree(HOSTS / host, root, symlinks=True)
    return root


def capture_of(root) -> Tree:
    return capture.full(str(root / "proc"), str(root / "sys"))


def write_trace(path, records: list[Record], **head) -> None:
    with open(path, "wb") as f:
        writer = trace.Writer(f, max_size=1 << 30)
        writer.write(trace.encode(trace.header(head.get("interval", 1.0), "node-a", 1764000000.0, "6.1.0")))
        for record in records:
            writer.write(trace.encode(record))
        writer.close()


def lxcwatch(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([lxcwatch_binary(), *args], capture_output=True, text=True, timeout=timeout)


def path_args(root) -> list[str]:
    return [f"--path.procfs={root / 'proc'}", f"--path.sysfs={root / 'sys'}"]


# --- the pure parts: capture, delta, apply, the file format ---


def test_a_capture_of_a_fixture_tree_is_the_tree():
    """The fixtures were made by tests/fixtures/capture.py: capturing one gives back every file and link."""
    root = HOSTS / "tg3-pair"
    assert capture_of(root) == tree_of(root)


def test_delta_holds_what_changed_and_the_highest_removed_paths(tmp_path):
    root = copy_host(tmp_path)
    before = capture_of(root)
    (root / "sys/devices/virtual/net/br0/flags").write_text("0x1103\n")
    (root / "sys/class/net/vethC").unlink()
    shutil.rmtree(root / "sys/devices/virtual/net/vethC")
    (root / "sys/devices/virtual/net/vethA/master").unlink()
    os.symlink("../vethB", root / "sys/devices/virtual/net/vethA/master")  # a changed link target
    after = capture_of(root)

    record = trace.delta(before, after, 1.5)
    assert record.t == 1.5
    assert record.files == {"sys/devices/virtual/net/br0/flags": "0x1103\n"}
    assert record.links == {"sys/devices/virtual/net/vethA/master": "../vethB"}
    assert record.removed == ("sys/class/net/vethC", "sys/devices/virtual/net/vethC")
    assert trace.apply(before, record) == after
    assert trace.delta(after, after, 2.0) == Record(2.0)


def test_delta_turns_a_file_into_a_directory_and_back():
    file, directory = Tree({"sys/a/x": "1\n"}), Tree({"sys/a/x/y": "2\n"})
    assert trace.delta(file, directory, 0).removed == ("sys/a/x",)
    assert trace.apply(file, trace.delta(file, directory, 0)) == directory
    assert trace.delta(directory, file, 0).removed == ("sys/a/x",)
    assert trace.apply(directory, trace.delta(directory, file, 0)) == file


def test_records_round_trip_through_the_file(tmp_path):
    records = [
        Record(0.0, {"proc/net/dev": "x\n", "sys/class/net/\udcffodd/flags": "0x1103\n"}, {"sys/class/net/eth0": "../x"}),
        Record(1.0, removed=("sys/class/net/eth0",), label={"nics": ["eth0"], "host": True}),
        Record(2.0),
    ]
    path = tmp_path / "t.trace.gz"
    write_trace(path, records, interval=0.5)
    header, *got = trace.read(str(path))
    assert header == trace.header(0.5, "node-a", 1764000000.0, "6.1.0")
    assert got == records
    first = gzip.decompress(path.read_bytes()).splitlines()[1]
    assert set(json.loads(first)) == {"t", "files", "links", "removed"}  # every key, always; label when given


def test_the_writer_stops_before_max_size_and_leaves_a_readable_file(tmp_path):
    path = tmp_path / "t.trace.gz"
    with open(path, "wb") as f:
        writer = trace.Writer(f, max_size=600)
        assert writer.write(trace.encode(trace.header(1.0, "h", 0.0, "k")))
        written = 0
        while writer.write(trace.encode(Record(float(written), {"proc/stat": os.urandom(40).hex()}))):
            written += 1
        writer.close()
    assert 0 < written < 10
    assert os.path.getsize(path) <= 600
    assert len(list(trace.read(str(path)))) == 1 + written


@pytest.mark.parametrize("path", ["/etc/passwd", "sys/../../etc/passwd", "etc/passwd", "sys//x", "sys/./x"])
def test_paths_outside_proc_and_sys_are_refused(tmp_path, path):
    trace_file = tmp_path / "t.trace.gz"
    write_trace(trace_file, [Record(0.0, {path: "x"})])
    with pytest.raises(trace.TraceError, match=r"t\.trace\.gz: record 1: bad path"):
        list(trace.read(str(trace_file)))


def test_the_capturer_rereads_only_what_changes_until_the_interfaces_change(tmp_path):
    root = copy_host(tmp_path)
    capturer = capture.Capturer(str(root / "proc"), str(root / "sys"))
    first = capturer.sample()
    assert first == capture_of(root)
    (root / "sys/devices/virtual/net/br0/flags").write_text("0x1103\n")  # volatile: seen next sample
    (root / "sys/devices/virtual/net/br0/ifindex").write_text("99\n")  # static: not re-read while links stay
    (root / "sys/devices/virtual/net/vethA/master").unlink()  # a port leaves its bridge
    second = capturer.sample()
    assert trace.delta(first, second, 1).files == {"sys/devices/virtual/net/br0/flags": "0x1103\n"}
    assert trace.delta(first, second, 1).removed == ("sys/devices/virtual/net/vethA/master",)

    (root / "sys/class/net/vethC").unlink()  # the set of interfaces changed: a full capture
    third = capturer.sample()
    assert third == capture_of(root)
    assert "sys/devices/virtual/net/br0/ifindex" in trace.delta(second, third, 2).files


# --- the commands ---


def test_replay_writes_exactly_the_files_links_and_removals_of_a_trace(tmp_path):
    records = [
        Record(0.0, {"proc/net/dev": "a\n", "sys/devices/virtual/net/v1/flags": "0x1103\n",
                     "sys/devices/virtual/net/v2/flags": "0x1103\n"},
               {"sys/class/net/v1": "../../devices/virtual/net/v1", "sys/class/net/v2": "../../devices/virtual/net/v2"}),
        Record(0.1, {"proc/net/dev": "b\n"}, removed=("sys/class/net/v2", "sys/devices/virtual/net/v2")),
        Record(0.2, {"sys/devices/virtual/net/v1/operstate": "up\n"}, {"sys/class/net/v3": "../../devices/virtual/net/v1"}),
    ]
    write_trace(tmp_path / "t.trace.gz", records)
    out = lxcwatch("replay", str(tmp_path / "t.trace.gz"), "--out-root", str(tmp_path / "root"), "--speed", "0")
    assert (out.returncode, out.stderr) == (0, "")
    want = Tree()
    for record in records:
        want = trace.apply(want, record)
    assert tree_of(tmp_path / "root") == want
    assert sorted(os.listdir(tmp_path / "root")) == ["proc", "sys"]  # no temporary files left
    assert os.listdir(tmp_path / "root/sys/devices/virtual/net") == ["v1"]


def test_a_fixture_tree_survives_record_and_replay(tmp_path):
    root = copy_host(tmp_path)
    out = lxcwatch("record", "--out", str(tmp_path / "t.trace.gz"), "--duration", "150ms",
                   "--sample.interval", "50ms", *path_args(root))
    assert out.returncode == 0, out.stderr
    assert out.stderr.startswith("lxcwatch: recorded ")
    out = lxcwatch("replay", str(tmp_path / "t.trace.gz"), "--out-root", str(tmp_path / "root"), "--speed", "0")
    assert out.returncode == 0, out.stderr
    assert tree_of(tmp_path / "root") == tree_of(root)


def record_live(tmp_path, attempts: int = 3) -> list[str]:
    """Records the live host for ~0.5 s; returns its interfaces, retrying while they change under the recording
    (other tests on this host create and delete bridges and veths)."""
    for _ in range(attempts):
        before = sorted(os.listdir("/sys/class/net"))
        out = lxcwatch("record", "--out", str(tmp_path / "live.trace.gz"), "--duration", "500ms",
                       "--sample.interval", "100ms")
        assert out.returncode == 0, out.stderr
        if sorted(os.listdir("/sys/class/net")) == before:
            return before
    pytest.skip("the host's interfaces kept changing during the recording")


def test_a_live_recording_replays_into_a_tree_the_agent_reads(tmp_path):
    interfaces = record_live(tmp_path)
    header, *records = trace.read(str(tmp_path / "live.trace.gz"))
    assert header["interval"] == 0.1 and header["kernel"] == os.uname().release
    assert 1 <= len(records) <= 5 and records[0].t == 0.0  # a loaded host may skip a slot
    out = lxcwatch("replay", str(tmp_path / "live.trace.gz"), "--out-root", str(tmp_path / "root"), "--speed", "0")
    assert out.returncode == 0, out.stderr

    root = tmp_path / "root"
    agent = Agent([*path_args(root), "--sample.interval=50ms"])
    try:
        seen = agent.wait_for(lambda e: e.value("lxcwatch_samples_total") >= 2, "two samples")
    finally:
        agent.stop()
    assert {s.labels["device"] for s in seen.find("lxcwatch_link_info")} == set(interfaces)
    success = {s.labels["collector"]: s.value for s in seen.find("lxcwatch_scrape_collector_success")}
    assert success and all(value == 1 for value in success.values()), success


def test_max_size_stops_the_recording_early_with_a_notice(tmp_path):
    one = tmp_path / "one.trace.gz"
    out = lxcwatch("record", "--out", str(one), "--duration", "50ms", "--sample.interval", "50ms")
    assert out.returncode == 0, out.stderr
    limit = 3 * os.path.getsize(one)  # room for the first sample and a few changes of the live /proc files

    path = tmp_path / "t.trace.gz"
    started = time.monotonic()
    out = lxcwatch("record", "--out", str(path), "--duration", "60s", "--sample.interval", "10ms",
                   "--max-size", str(limit))
    assert time.monotonic() - started < 30
    assert out.returncode == 0, out.stderr
    *notices, last = out.stderr.splitlines()  # a host without the tracepoint says so once, before
    assert last.startswith(f"lxcwatch: --max-size {limit} reached: stopped after "), out.stderr
    assert all(n.startswith("lxcwatch: no NAPI poll counts in the trace: ") for n in notices) and len(notices) <= 1
    assert os.path.getsize(path) <= limit
    header, *records = trace.read(str(path))
    assert len(records) >= 1


def test_max_size_smaller_than_the_first_sample_records_nothing(tmp_path):
    out = lxcwatch("record", "--out", str(tmp_path / "t.trace.gz"), "--duration", "1s", "--max-size", "100B")
    assert out.returncode == 1
    assert out.stderr == "lxcwatch: error: --max-size 100B is too small for the first sample; nothing recorded\n"
    assert not (tmp_path / "t.trace.gz").exists()


def test_sigterm_ends_a_recording_with_a_valid_file(tmp_path):
    root = copy_host(tmp_path)
    path = tmp_path / "t.trace.gz"
    proc = subprocess.Popen([lxcwatch_binary(), "record", "--out", str(path), "--duration", "1h",
                             "--sample.interval", "20ms", *path_args(root)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not (path.exists() and path.stat().st_size > 0):  # the header is on disk: the signal handlers are set
            assert time.monotonic() < deadline and proc.poll() is None, "no first sample"
            time.sleep(POLL)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert err.startswith("lxcwatch: recorded ")
    header, first, *_ = trace.read(str(path))
    assert trace.apply(Tree(), first) == capture_of(root)


def test_a_truncated_trace_is_a_one_line_error(tmp_path):
    root = copy_host(tmp_path)
    path = tmp_path / "t.trace.gz"
    write_trace(path, [trace.delta(Tree(), capture_of(root), 0.0), Record(1.0, {"proc/stat": os.urandom(100).hex()})])
    path.write_bytes(path.read_bytes()[:-40])
    out = lxcwatch("replay", str(path), "--out-root", str(tmp_path / "root"), "--speed", "0")
    assert out.returncode == 1
    assert out.stderr.startswith(f"lxcwatch: error: {path}: record 2: truncated") and out.stderr.count("\n") == 1


def test_a_corrupt_record_is_named(tmp_path):
    path = tmp_path / "t.trace.gz"
    lines = [trace.encode(trace.header(1.0, "h", 0.0, "k")), trace.encode(Record(0.0, {"proc/stat": "x"})), b"{not json\n"]
    path.write_bytes(gzip.compress(b"".join(lines)))
    out = lxcwatch("replay", str(path), "--out-root", str(tmp_path / "root"), "--speed", "0")
    assert (out.returncode, out.stderr) == (1, f"lxcwatch: error: {path}: record 2: not valid JSON (truncated or corrupt)\n")


def test_replay_at_speed_one_takes_the_trace_time(tmp_path):
    path = tmp_path / "t.trace.gz"
    write_trace(path, [Record(t, {"proc/stat": f"cpu {t}\n"}) for t in (0.0, 0.2, 0.4)])
    started = time.monotonic()
    out = lxcwatch("replay", str(path), "--out-root", str(tmp_path / "root"), "--speed", "1.0")
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert elapsed >= 0.4
    assert (tmp_path / "root/proc/stat").read_text() == "cpu 0.4\n"


@pytest.mark.parametrize("args, message", [
    (["record", "--out", "x", "--duration", "1s", "--max-size", "64XB"], "invalid size '64XB'"),
    (["record", "--out", "x", "--duration", "soon"], "invalid duration 'soon'"),
    (["replay", "x", "--out-root", "/", "--speed", "0"], "--out-root /: exists and is not an empty directory"),
    (["replay", "x", "--out-root", "y", "--speed", "-1"], "invalid --speed '-1'"),
])
def test_bad_flag_values_are_usage_errors(args, message):
    out = lxcwatch(*args)
    assert out.returncode == 2 and message in out.stderr and out.stderr.count("\n") == 1, out.stderr


def test_replay_speed_divides_the_trace_time(tmp_path):
    """In-process, so start-up time does not count: 0.4 s of trace at speed 2 takes at least 0.2 s."""
    path = tmp_path / "t.trace.gz"
    write_trace(path, [Record(t, {"proc/stat": f"cpu {t}\n"}) for t in (0.0, 0.2, 0.4)])
    started = time.monotonic()
    assert cli.main(["replay", str(path), "--out-root", str(tmp_path / "root"), "--speed", "2"]) == 0
    assert time.monotonic() - started >= 0.2


def test_loop_turns_the_tree_back_into_the_first_record_before_each_pass(tmp_path):
    records = [Record(0.0, {"proc/stat": "cpu 1\n"}),
               Record(0.1, {"proc/stat": "cpu 2\n", "sys/devices/virtual/net/v9/flags": "0x1003\n"},
                      {"sys/class/net/v9": "../../devices/virtual/net/v9"})]
    write_trace(tmp_path / "t.trace.gz", records)
    stop, seen = threading.Event(), []

    class Watched(replay.TreeWriter):
        def apply(self, record):
            super().apply(record)
            seen.append(tree_of(tmp_path / "root"))
            if len(seen) == 4:
                stop.set()

    replay.replay(str(tmp_path / "t.trace.gz"), Watched(str(tmp_path / "root")), 0, True, stop)
    first, second = trace.apply(Tree(), records[0]), trace.apply(trace.apply(Tree(), records[0]), records[1])
    assert seen == [first, second, first, second]


def test_replay_never_writes_through_a_symlink_out_of_the_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    path = tmp_path / "t.trace.gz"
    write_trace(path, [Record(0.0, links={"sys/x": os.path.relpath(outside, tmp_path / "root/sys")}),
                       Record(0.1, {"sys/x/evil": "1\n"})])
    out = lxcwatch("replay", str(path), "--out-root", str(tmp_path / "root"), "--speed", "0")
    assert (out.returncode, out.stderr) == (1, f"lxcwatch: error: {path}: record 2: sys/x/evil leads out of the replay "
                                               "root through a symlink\n")
    assert os.listdir(outside) == []
