"""Runs the real lxcwatch agent on a free loopback port and reads its exposition."""

import base64
import contextlib
import ctypes
import os
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
        self.port = free_port()
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{self.port}/metrics"
        self.ssl_context = ssl_context
        self.headers = {"Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()} if auth else {}
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [*(command or [lxcwatch_binary()]), f"--web.listen-address=127.0.0.1:{self.port}", *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=None if env is None else {**os.environ, **env}, cwd=cwd,
        )
        try:
            self._wait_ready(tries)
        except BaseException:
            self.stop()
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
    for request in (PTRACE_SEIZE, PTRACE_INTERRUPT):
        if libc.ptrace(request, tid, None, None) != 0:
            raise OSError(ctypes.get_errno(), f"ptrace {request:#x} of thread {tid}")
    os.waitpid(tid, WALL)  # the thread is in its ptrace stop
    try:
        yield tid
    finally:
        libc.ptrace(PTRACE_DETACH, tid, None, None)


PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_DETACH = 0x4206, 0x4207, 17
WALL = 0x40000000  # waitpid's __WALL: wait for a thread that is not our child
