"""Probes against loopback listeners this module opens: success, refusal, timeout, concurrency, and a
sample that never waits for a probe."""

import contextlib
import logging
import socket
import subprocess
import time
from pathlib import Path

import pytest

from agent import lxcwatch_binary, wait_until

from lxcwatch.core import probe_spec
from lxcwatch.sources import probes
from lxcwatch.sources.host import Sources
from lxcwatch.errors import UsageError
from lxcwatch.core.probe_spec import ProbeSpec
from lxcwatch.sources.probes import Attempts, ProbeFile, ProbeRunner

V2 = Path(__file__).resolve().parent / "fixtures" / "hosts" / "lxc-v2"


@contextlib.contextmanager
def listening():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


@contextlib.contextmanager
def full_listener():
    """A listener whose accept queue is full: the kernel drops further SYNs and a connect hangs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        with socket.create_connection(s.getsockname()):
            yield s.getsockname()[1]


def closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connecting is refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_round(specs: tuple[ProbeSpec, ...]) -> dict:
    """One attempt per probe, all started at once; returns when every one ended."""
    attempts, results = Attempts(), {}
    try:
        for spec in specs:
            result = attempts.start(spec)
            if result is not None:
                results[spec.key] = result
        while attempts.pending:
            for result in attempts.wait(time.monotonic() + 0.5):
                results[result.container, result.name] = result
    finally:
        attempts.close()
    return results


def spec(name: str, port: int, timeout: float = 1.0, container: str = "app") -> ProbeSpec:
    return ProbeSpec(container, name, "tcp", "127.0.0.1", port, timeout)


def test_success_refusal_and_timeout_in_one_concurrent_round():
    refused = closed_port()
    with listening() as open_port, full_listener() as hang1, full_listener() as hang2:
        started = time.monotonic()
        results = run_round((spec("up", open_port), spec("refused", refused),
                             spec("hang1", hang1, 0.6), spec("hang2", hang2, 0.6)))
        took = time.monotonic() - started
    assert results["app", "up"].success and results["app", "up"].duration_seconds < 0.5
    assert not results["app", "refused"].success and results["app", "refused"].error == "Connection refused"
    for name in ("hang1", "hang2"):
        assert not results["app", name].success and results["app", name].error == "timeout"
        assert results["app", name].duration_seconds == 0.6
    assert 0.6 <= took < 1.1  # the two timeouts ran side by side, not one after the other


def test_runner_updates_and_forgets():
    with listening() as port:
        runner = ProbeRunner(interval=0.05)
        try:
            runner.update((spec("up", port),))
            deadline = time.monotonic() + 5
            while not runner.results() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert [(r.name, r.success) for r in runner.results()] == [("up", True)]
            runner.update(())
            assert runner.results() == ()
        finally:
            runner.stop()


def test_a_sample_never_waits_for_a_probe(tmp_path):
    probes_file = tmp_path / "probes"
    with full_listener() as hang:
        probes_file.write_text(f"app hang tcp 127.0.0.1:{hang} 3s\n")
        sources = Sources.open(str(V2 / "proc"), str(V2 / "sys"), (str(V2 / "var" / "lib" / "lxc"),),
                               str(probes_file), probes_interval=0.05)
        try:
            sources.lxc.read()  # declares the probe; its first round now waits 3 s
            started = time.monotonic()
            for _ in range(5):
                reading = sources.lxc.read()
            took = time.monotonic() - started
            assert reading.probes == ()  # no result yet, and nobody waited for one
            assert took < 0.5
        finally:
            sources.close()


def test_probe_file_reload_keeps_the_last_good_probes(tmp_path, caplog):
    path = tmp_path / "probes"
    path.write_text("app a tcp 127.0.0.1:1\n")
    file = ProbeFile(str(path))
    assert [s.name for s in file.specs()] == ["a"]
    path.write_text("app a tcp 127.0.0.1:1\napp b tcp nowhere\n")
    with caplog.at_level(logging.ERROR):
        assert [s.name for s in file.specs()] == ["a"]
    assert "probes:2: bad address 'nowhere'" in file.error
    path.write_text("app b tcp 127.0.0.1:2 250ms\n")
    assert file.specs() == (spec("b", 2, 0.25),)
    assert file.error == ""


def test_bad_probes_file_is_refused_at_start(tmp_path):
    path = tmp_path / "probes"
    path.write_text("app web tcp 10.0.3.5:80\napp web2 tcp 10.0.3.5\n")
    with pytest.raises(UsageError, match="probes:2: bad address"):
        probes.check_file(str(path))
    out = subprocess.run([lxcwatch_binary(), f"--probes.file={path}", f"--path.procfs={V2 / 'proc'}",
                          f"--path.sysfs={V2 / 'sys'}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr == f"lxcwatch: error: --probes.file: {path}:2: bad address '10.0.3.5': want HOST:PORT (IPv6 in brackets)\n"
    out = subprocess.run([lxcwatch_binary(), f"--probes.file={tmp_path / 'missing'}"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2 and "No such file or directory" in out.stderr


def test_a_hung_probe_delays_no_other_probe():
    """Issue 12, point 6: a connect into a full backlog with a long timeout; the other probe keeps its schedule."""
    with listening() as port, full_listener() as hang:
        runner = ProbeRunner(interval=0.1)
        try:
            runner.update((spec("up", port), spec("hang", hang, timeout=30)))
            seen = []

            def five_fresh_results():
                seen.extend(r for r in runner.results() if r.name == "up")
                return len({r.timestamp for r in seen}) >= 5

            wait_until(five_fresh_results, "5 attempts of the probe beside a hung one", timeout=10, poll=0.02)
            assert all(r.success for r in seen)
            assert [r.name for r in runner.results()] == ["up"]  # the hung one has no result yet: not a guess
        finally:
            runner.stop()


@pytest.mark.parametrize("timeout", ["99999999999h", "61s", "2m"])
def test_probe_timeouts_are_capped(timeout):
    with pytest.raises(ValueError, match=r"longer than the maximum 60s"):
        probe_spec.parse_spec("app", ["web", "tcp", "127.0.0.1:80", timeout])
    assert probe_spec.parse_spec("app", ["web", "tcp", "127.0.0.1:80", "1m"]).timeout == 60.0
