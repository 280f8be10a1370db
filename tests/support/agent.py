"""Runs the real lxcwatch agent on a free loopback port and reads its exposition."""

import base64
import contextlib
import ctypes
import os
import platform
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

POLL = 0.05  # seconds between two polls of a bounded wait
BIND_ATTEMPTS = 3


def lxcwatch_binary() -> str:
    """The console script next to the interpreter running pytest (the project's venv), else on PATH."""
    beside = Path(sys.executable).parent / "lxcwatch"
    return str(beside) if beside.exists() else (shutil.which("lxcwatch") or "lxcwatch")


class Exposition:
    """One scrape: the raw text and its samples, parsed by prometheus_client."""

    def __init__(self, text: str):
        self.text = text
        self.samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def find(self, name: str, **labels: str) -> list:
        return [s for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample that matches, None when none does."""
        found = self.find(name, **labels)
        assert len(found) <= 1, f"{len(found)} samples of {name}{labels}"
        return found[0].value if found else None

    def devices(self) -> set[str]:
        """Devices the agent has series for, except the kernel-event counters: those count what the kernel said
        of a device (e.g. "entered promiscuous mode" when it joined a bridge) and outlive it by design."""
        return {s.labels["device"] for s in self.samples
                if "device" in s.labels and not s.name.startswith("lxcwatch_kernel_events")}


def wait_until(check: Callable[[], object], what: str, timeout: float = 15.0, poll: float = POLL,
               diagnose: Callable[[], str] = lambda: ""):
    """Call `check` until it returns something truthy, at most `timeout` seconds; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{diagnose()}".rstrip())
        time.sleep(poll)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    """A running `lxcwatch` process listening on 127.0.0.1:port. With `ssl_context` it is scraped over https, with
    `auth` (user, password) with basic auth; `command` replaces the console script (e.g. a setpriv prefix)."""

    def __init__(self, args: list[str], tries: int = 200, env: dict[str, str] | None = None,
                 ssl_context: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None,
                 command: list[str] | None = None, cwd: str | None = None):
        self.ssl_context = ssl_context
        self.headers = {"Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()} if auth else {}
        for attempt in range(BIND_ATTEMPTS):
            self.port = free_port()
            self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{self.port}/metrics"
            self._log = tempfile.TemporaryFile()
            self.proc = subprocess.Popen(
                [*(command or [lxcwatch_binary()]), f"--web.listen-address=127.0.0.1:{self.port}", *args],
                stdout=self._log, stderr=subprocess.STDOUT, env=None if env is None else {**os.environ, **env}, cwd=cwd,
            )
            try:
                self._wait_ready(tries)
                return
            except BaseException:
                self.stop()
                # Another process (tests run in parallel) took the free port before the agent bound it: a new port.
                if attempt + 1 < BIND_ATTEMPTS and f"127.0.0.1:{self.port}: Address already in use" in self.output():
                    continue
                raise

    def _wait_ready(self, tries: int) -> None:
        for _ in range(tries):
            try:
                self.scrape()
                return
            except OSError:
                self._pause()  # raises if the agent exited
        raise AssertionError(f"lxcwatch did not answer on {self.url} after {tries} tries:\n{self.output()}")

    def _pause(self) -> None:
        """Wait one poll period, or less if the agent exits, which is fatal."""
        try:
            self.proc.wait(timeout=POLL)
        except subprocess.TimeoutExpired:
            return
        raise AssertionError(f"lxcwatch exited with {self.proc.returncode}:\n{self.output()}")

    def scrape_text(self) -> str:
        request = urllib.request.Request(self.url, headers=self.headers)
        with urllib.request.urlopen(request, timeout=5, context=self.ssl_context) as response:
            return response.read().decode()

    def scrape(self) -> Exposition:
        exposition = Exposition(self.scrape_text())
        # Another exporter may own a port that was free a moment ago: be sure this one is ours.
        assert exposition.find("lxcwatch_build_info"), f"{self.url} is not lxcwatch"
        return exposition

    def wait_for(self, check: Callable[[Exposition], object], what: str, timeout: float = 10.0,
                 show: str = "") -> Exposition:
        """Scrape until `check` is truthy, at most `timeout` seconds; on timeout, show the lines containing `show`."""
        deadline = time.monotonic() + timeout
        while True:
            exposition = self.scrape()
            if check(exposition):
                return exposition
            if time.monotonic() > deadline:
                lines = [line for line in exposition.text.splitlines() if show and show in line]
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; last scrape:\n" + "\n".join(lines))
            self._pause()

    def output(self) -> str:
        """Everything the agent printed (stdout and stderr); still readable after `stop()`."""
        if self._log.closed:
            return self._final_output
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.proc, timeout)
        if not self._log.closed:
            self._final_output = self.output()
            self._log.close()


def thread_id(pid: int, name: str) -> int:
    """The id of the thread of process `pid` named `name` in the kernel (the agent names its threads)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() == name:
                return int(tid)
    raise AssertionError(f"process {pid} has no thread named {name!r}")


@contextlib.contextmanager
def frozen_thread(pid: int, name: str):
    """Stop one thread of a running process while the others run on (ptrace seize + interrupt; root), as a
    thread stuck in the kernel would be; resumed on exit."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    tid = thread_id(pid, name)
    seen = []
    for _ in range(100):
        for request in (PTRACE_SEIZE, PTRACE_INTERRUPT):
            if libc.ptrace(request, tid, None, None) != 0:
                raise OSError(ctypes.get_errno(), f"ptrace {request:#x} of thread {tid}")
        os.waitpid(tid, WALL)  # the thread is in its ptrace stop
        # Stopped waiting on a futex (an Event, a lock) it holds no GIL, as a thread stuck in the kernel does;
        # stopped elsewhere it may hold the GIL (systemd's sd_notify sends with it held) and freeze every thread:
        # let it run on and stop it again.
        with open(f"/proc/{pid}/task/{tid}/syscall") as f:
            seen.append(f.read().split()[0])
            if seen[-1] in FUTEX[platform.machine()]:
                break
        libc.ptrace(PTRACE_DETACH, tid, None, None)
        time.sleep(0.01)  # let it run on to its next wait: stopped again at once it would be where it was
    else:
        raise AssertionError(f"thread {name} never stopped waiting on a futex, but in {sorted(set(seen))}")
    try:
        yield tid
    finally:
        libc.ptrace(PTRACE_DETACH, tid, None, None)


PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_DETACH = 0x4206, 0x4207, 17
# futex, and restart_syscall (an interrupted futex wait with a timeout resumes through it): their numbers
FUTEX = {"x86_64": ("202", "219"), "aarch64": ("98", "128")}
WALL = 0x40000000  # waitpid's __WALL: wait for a thread that is not our child


# Peak RSS of a child is only its own from a parent that is small at fork: the kernel keeps the larger of the
# pre-exec image's (here pytest's, 100+ MiB late in a run) and the program's (fs/exec.c: setmax_mm_hiwater_rss).
# So a small Python forks it and reports its time and peak RSS on its last line of output.
MEASURE = """import os, sys, time
begin = time.monotonic()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(time.monotonic() - begin, usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(argv: list[str], timeout: float) -> tuple[subprocess.CompletedProcess, float, int]:
    """`argv` run to its end, with the seconds it took and its peak RSS in KiB."""
    done = subprocess.run([sys.executable, "-c", MEASURE, *argv], capture_output=True, text=True, timeout=timeout)
    *out, figures = done.stdout.splitlines()
    seconds, rss = figures.split()
    return subprocess.CompletedProcess(done.args, done.returncode, "\n".join(out), done.stderr), float(seconds), int(rss)

