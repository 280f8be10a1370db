"""The documented commands that need root and the live host, run as written (the list of who runs what:
tests/e2e/test_docs_commands.py). They run in a mount namespace of their own with tmpfs over /var/lib and over the
fixed paths the docs use (/tmp/pm, /tmp/host; the default ring in /var/lib/lxcwatch), so those are this test's alone,
start as on a fresh host, and vanish with it; `lxcwatch` is on PATH as in an activated venv."""

import os
import shlex
import signal
import socket
import stat
import subprocess
import urllib.request
import zlib
from pathlib import Path

import pytest

from tests.support.agent import Exposition, stop_process, wait_until
from tests.support.docs_commands import ROOT, block_after

PORT = 12243  # the documented default: `make run` and the agent of the trace example listen there
BIN = ROOT / ".venv" / "bin"
PRIVATE = ("/tmp/pm", "/tmp/host", "/tmp/trace-example")  # docs/postmortem.md, docs/trace-format.md, the record


class Namespace:
    """A mount namespace held by a sleeping process; commands enter it with nsenter."""

    def __init__(self):
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "infinity"])
        mine = os.readlink("/proc/self/ns/mnt")
        wait_until(lambda: os.readlink(f"/proc/{self.holder.pid}/ns/mnt") != mine, "the mount namespace")
        # The docs' fixed paths, each a tmpfs of this namespace; not all of /tmp, which may hold the checkout itself.
        self.made = [d for d in PRIVATE if not os.path.exists(d)]
        for directory in self.made:
            os.makedirs(directory)  # an empty mount point on the host, removed again by close()
        for directory in ("/var/lib", *PRIVATE):
            subprocess.run(self.command("mount", "-t", "tmpfs", "tmpfs", directory), check=True, timeout=30)
        self.env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}

    def command(self, *argv: str) -> list[str]:
        return ["nsenter", f"--target={self.holder.pid}", "--mount", "--", *argv]

    def bash(self, command: str, cwd: str) -> list[str]:
        """The command as a shell in cwd runs it (cwd seen from inside the namespace)."""
        return self.command("bash", "-c", f"cd {shlex.quote(cwd)} && exec {command}")

    def shell(self, command: str, cwd: str = str(ROOT), timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.bash(command, cwd), env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self, command: str, log, cwd: str = str(ROOT)) -> subprocess.Popen:
        """A long-running command in a session of its own, so that it can get a terminal's Ctrl-C. SIGINT as at a
        terminal: a suite started in the background (`nohup ... &`) passes it on ignored, and make then ignores it."""
        return subprocess.Popen(self.bash(command, cwd), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def path(self, path: str) -> Path:
        return Path(f"/proc/{self.holder.pid}/root{path}")

    def close(self):
        stop_process(self.holder)
        for directory in reversed(self.made):
            os.rmdir(directory)


@pytest.fixture
def ns():
    if os.geteuid() != 0:
        pytest.skip("needs root: a mount namespace with tmpfs over /tmp and /var/lib")
    with socket.socket(socket.AF_INET6) as s:  # the agent binds [::]:12243 (IPv6 and IPv4)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the agent does: closed scrapes may linger
        try:
            s.bind(("::", PORT))
        except OSError:
            pytest.skip(f"port {PORT}, the documented default, is taken (another agent?)")
    namespace = Namespace()
    yield namespace
    namespace.close()


def ctrl_c(proc: subprocess.Popen, timeout: float = 30) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends to its foreground job
    return proc.wait(timeout=timeout)


def scrape() -> Exposition | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=5) as response:
            return Exposition(response.read().decode())
    except OSError:
        return None


def recorded(proc, check, what: str, timeout: float = 60) -> Exposition:
    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"{what}: the agent exited with {proc.returncode}")
        e = scrape()
        return e if e and e.find("lxcwatch_build_info") and check(e) else None
    return wait_until(ready, what, timeout=timeout)


@pytest.mark.live
@pytest.mark.slow
def test_make_run_logs_no_error_and_postmortem_reads_its_ring(ns, tmp_path):
    """README's `make run` on a host where nothing of lxcwatch is installed yet, then Ctrl-C, then
    docs/postmortem.md's commands with their defaults."""
    plan = subprocess.run(["make", "--no-print-directory", "-n", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    if plan.stdout.split() != [".venv/bin/lxcwatch"]:  # /var/lib/dpkg is hidden here: no package set-up
        pytest.skip(f"the .venv is not up to date; `make run` would set it up first: {plan.stdout}")
    with open(tmp_path / "make-run.log", "w+") as log:
        run = ns.start("make run", log)
        try:
            e = recorded(run, lambda e: e.find("lxcwatch_recorder_enabled"), "the first scrape")
            assert e.value("lxcwatch_recorder_enabled") == 1, "the flight recorder is off"
            recorded(run, lambda e: e.value("lxcwatch_recorder_records_total") >= 3, "three records in the ring")
        finally:
            code = ctrl_c(run)
        log.seek(0)
        output = log.read()
    assert code == -signal.SIGINT, output  # make waits for the agent it ran, then dies of the Ctrl-C as a job does
    assert "level=error" not in output, output
    assert "msg=stopping" in output, output
    state = ns.path("/var/lib/lxcwatch")
    assert stat.S_IMODE(state.stat().st_mode) == 0o755 and (state / "flight.ring").is_file()

    first, show, around = block_after("docs/postmortem.md", "## At 3 a.m.")
    out = ns.shell(first)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "/tmp/pm/summary.txt", out.stdout
    # timeline.png with Pillow, else one line that says how to get it
    assert ns.path("/tmp/pm/timeline.png").exists() or "pip install 'lxcwatch[postmortem]'" in out.stderr, out
    out = ns.shell(show)
    assert out.returncode == 0 and "samples in window:" in out.stdout, out
    out = ns.shell(around)  # the docs' example date: this ring has no sample then, and says so in one line
    assert out.returncode == 1 and out.stdout == "", out
    assert out.stderr.startswith("lxcwatch: error: no samples between 2025-11-24 02:42:00") and out.stderr.count("\n") == 1, out


def lines_in(trace: Path) -> int:
    """Complete lines of a gzip trace still being written (each line is flushed)."""
    try:
        data = zlib.decompressobj(wbits=31).decompress(trace.read_bytes())
    except (OSError, zlib.error):
        return 0
    return data.count(b"\n")


@pytest.mark.live
@pytest.mark.slow
def test_record_replay_and_the_agent_on_the_replay(ns, tmp_path):
    """docs/trace-format.md: record (ended by Ctrl-C after 3 samples), replay, and the agent in a second shell
    while the replay runs: the replay still runs after the agent's second sample."""
    record, replay = block_after("docs/trace-format.md", "## Usage")
    (agent,) = block_after("docs/trace-format.md", "in a second shell")
    work = "/tmp/trace-example"
    with open(tmp_path / "record.log", "w+") as log:
        recording = ns.start(record, log, cwd=work)
        trace = ns.path(f"{work}/bad-night.trace.gz")
        try:
            wait_until(lambda: lines_in(trace) >= 4 or recording.poll() is not None, "the header and three samples")
        finally:
            assert ctrl_c(recording) == 0
        log.seek(0)
        assert "lxcwatch: recorded " in log.read()
    with open(tmp_path / "replay.log", "w+") as replay_log, open(tmp_path / "agent.log", "w+") as agent_log:
        replaying = ns.start(replay, replay_log, cwd=work)
        agent_proc = None
        try:
            wait_until(lambda: ns.path("/tmp/host/sys/class/net").is_dir() or replaying.poll() is not None,
                       "the replayed tree")
            agent_proc = ns.start(agent, agent_log, cwd=work)
            first = recorded(agent_proc, lambda e: e.find("lxcwatch_softnet_processed_total"), "a sample of the replay")
            moved = lambda e: e.value("lxcwatch_last_sample_timestamp_seconds") != first.value(
                "lxcwatch_last_sample_timestamp_seconds")
            recorded(agent_proc, moved, "a second sample")
            assert replaying.poll() is None, "the replay ended before the agent's second sample"
        finally:
            if agent_proc:
                assert ctrl_c(agent_proc) == 0
            assert ctrl_c(replaying) == 0
        agent_log.seek(0)
        assert "level=error" not in agent_log.read()


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.parametrize("target", ["bench-containers"])  # `make bench`: tests/e2e/test_bench_commands.py
def test_make_bench(target):
    """docs/performance.md's `make bench-containers`, as written (minutes)."""
    out = subprocess.run(["make", target], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "|---" in out.stdout, out.stdout[-3000:]  # the figures, as a table


