"""A hostile live host (issue 12): a file whose reads block in the kernel (tests/support/stuckfs.py, FUSE: what a
sysfs net attribute does while a driver reset holds rtnl_lock), and interface names the
kernel allows that are hard to spell."""

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import netlab
from tests.support.agent import Agent, Exposition, free_port, lxcwatch_binary, wait_until
from tests.support.paths import SUPPORT
from tests.e2e.test_service import NotifySocket
from tests.e2e.test_hostile_host import BOUNDS, DEADLINE, Tree, assert_bounded, assert_others_keep_sampling, logged, usage


STUCKFS = SUPPORT / "stuckfs.py"


class StuckFile:
    """tests/support/stuckfs.py mounted over a file of the tree: reads block until `release()`."""

    def __init__(self, path: Path):
        source = path.with_name(path.name + ".content")
        source.write_bytes(path.read_bytes())
        self.proc = subprocess.Popen([sys.executable, str(STUCKFS), str(path), str(source)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "mounted":
            self.proc.kill()
            pytest.fail(f"stuckfs did not mount: {line}{self.proc.stdout.read()}")

    def release(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


needs_fuse = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
                                reason="a FUSE mount needs root and /dev/fuse")


@pytest.fixture
def stuck(tmp_path, request):
    """(tree, the stuck file's path as the agent opens it, its collector, the stuckfs)."""
    tree = Tree(tmp_path)
    rel, collector = request.param
    fs = StuckFile((tree.root / rel).resolve())
    yield tree, tree.root / rel, collector, fs
    fs.close()


STUCK = [pytest.param(("proc/net/softnet_stat", "softnet"), id="softnet_stat"),
         pytest.param(("sys/class/net/eth0/operstate", "links"), id="sysfs-attribute")]


@needs_fuse
@pytest.mark.live
@pytest.mark.parametrize("stuck", STUCK, indirect=True)
def test_stuck_read_is_reported_and_sigterm_still_stops(stuck):
    tree, target, collector, fs = stuck
    started = time.monotonic()
    agent = Agent(tree.args())  # start: bind, one sample within the deadline, answer
    try:
        answered = time.monotonic() - started
        exposition = agent.scrape()
        assert exposition.value("lxcwatch_scrape_collector_success", collector=collector) == 0
        assert_others_keep_sampling(agent, collector)
        stuck_lines = logged(agent, "collector failed", f"collector={collector}", f"stuck: no answer within {DEADLINE:g}s",
                             f"last file opened {target}")
        assert len(stuck_lines) == 1, agent.output()  # logged once, however many samples it stays stuck
        first = assert_bounded(agent.proc.pid)
        assert_others_keep_sampling(agent, collector)  # more samples: the stuck reader got no second read
        assert usage(agent.proc.pid)["threads"] == first["threads"]
        took = agent.wait_for(lambda e: e.value("lxcwatch_scrape_collector_duration_seconds", collector=collector) > 1,
                              "the stuck read's age")  # the duration counts how long it has been stuck
        assert took.value("lxcwatch_scrape_collector_success", collector=collector) == 0
        stop_started = time.monotonic()
        agent.proc.send_signal(signal.SIGTERM)  # the read is still held by stuckfs
        assert agent.proc.wait(timeout=10) == 0
        stopped = time.monotonic() - stop_started
        print(f"{target} stuck: answered after {answered:.2f}s, {first}, stopped {stopped:.2f}s after SIGTERM")
    finally:
        agent.stop()


@needs_fuse
@pytest.mark.live
@pytest.mark.parametrize("stuck", STUCK[:1], indirect=True)
def test_stuck_read_that_returns_is_retried_and_recovers(stuck):
    tree, target, collector, fs = stuck
    agent = Agent(tree.args())
    try:
        agent.wait_for(lambda e: e.value("lxcwatch_scrape_collector_success", collector=collector) == 0, "stuck")
        fs.release()
        agent.wait_for(lambda e: e.value("lxcwatch_scrape_collector_success", collector=collector) == 1, "recovery")
        assert_others_keep_sampling(agent, None)
        assert len(logged(agent, "collector recovered", f"collector={collector}")) == 1
        assert_bounded(agent.proc.pid)
    finally:
        agent.stop()


@needs_fuse
@pytest.mark.live
@pytest.mark.parametrize("stuck", STUCK[:1], indirect=True)
def test_one_stuck_collector_does_not_trip_the_watchdog(stuck, tmp_path):
    tree, target, collector, fs = stuck
    notify = NotifySocket(tmp_path)
    port = free_port()
    proc = subprocess.Popen([lxcwatch_binary(), *tree.args(), f"--web.listen-address=127.0.0.1:{port}"],
                            env={**os.environ, "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert notify.wait_for("READY", 10)["STATUS"].endswith("failing collectors: softnet")
        pings = [notify.wait_for("WATCHDOG", 1.0) for _ in range(10)]  # every ping within half the 1 s watchdog
        assert all(p["WATCHDOG"] == "1" for p in pings)
        assert usage(proc.pid)["threads"] <= BOUNDS["threads"]
    finally:
        proc.kill()
        proc.wait()
        notify.close()


def scrape_in(netns: str, port: int) -> Exposition:
    """The agent's exposition, fetched from inside the namespace it listens in."""
    fetch = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics', timeout=5).read().decode())"
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", fetch], capture_output=True, text=True,
                         timeout=30)
    if out.returncode != 0:
        raise OSError(out.stderr)
    return Exposition(out.stdout)


@pytest.mark.live
@pytest.mark.parametrize("links_from", ["netlink", "sysfs"])
def test_one_spelling_per_interface_name(tmp_path, links_from):
    """Names with a UTF-8 é and with bytes that are not UTF-8 (Linux allows both) in a namespace of the test's:
    /proc/net/dev (link_receive_bytes_total) and netlink or sysfs (link_info) spell each one name alike,
    byte-exact (UTF-8 as is, other bytes \\xNN), and two names differing in one such byte stay two."""
    reason = netlab.unavailable()
    if reason:
        pytest.skip(reason)
    suffix = secrets.token_hex(2)
    netns = f"{netlab.PREFIX}n{suffix}"
    names = [b"lxw\xc3\xa9" + suffix.encode(), b"lxwa" + suffix.encode(),  # a veth pair: lxwé…, lxwa…
             b"lxw\xe9" + suffix.encode(), b"lxw\xe8" + suffix.encode()]  # and one of two non-UTF-8 names
    spelt = {"lo", f"lxw\u00e9{suffix}", f"lxwa{suffix}", f"lxw\\xe9{suffix}", f"lxw\\xe8{suffix}"}  # by hand
    netlab.ip("netns", "add", netns)
    port = free_port()
    try:
        for a, b in (names[:2], names[2:]):
            subprocess.run([b"ip", b"-n", netns.encode(), b"link", b"add", a, b"type", b"veth", b"peer", b"name", b],
                           check=True, timeout=30)
        netlab.ip("-n", netns, "link", "set", "lo", "up")
        sysfs = "/sys" if links_from == "netlink" else str(tmp_path / "sys")  # a bind mount is not "live": sysfs
        agent = ["mkdir", "-p", str(tmp_path / "sys"), "&&", "mount", "--bind", "/sys", str(tmp_path / "sys"), "&&",
                 "exec", lxcwatch_binary(), f"--web.listen-address=127.0.0.1:{port}", f"--path.sysfs={sysfs}",
                 f"--path.lxc={tmp_path}", "--no-recorder", "--no-kernel.events"]
        log = open(tmp_path / "agent.log", "w+")
        proc = subprocess.Popen(["ip", "netns", "exec", netns, "sh", "-c", " ".join(agent)], stdout=log, stderr=log)
        try:
            exposition = wait_until(lambda: _try(scrape_in, netns, port), "the agent in the namespace")
            counted = {s.labels["device"] for s in exposition.find("lxcwatch_link_receive_bytes_total")}
            described = {s.labels["device"] for s in exposition.find("lxcwatch_link_info")}
            assert exposition.value("lxcwatch_scrape_collector_success", collector="links") == 1, Path(log.name).read_text()
            assert counted == described == spelt
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            log.close()
    finally:
        netlab.ip("netns", "del", netns)
    assert not netlab.leftovers(suffix)


def _try(fn, *args):
    try:
        return fn(*args)
    except OSError:
        return None
