"""The hostile host of issue 12: every attack is a test against the real agent on a copy of a fixture tree.

Each test asserts three things: the agent keeps serving the other collectors (their success stays 1 and
samples keep coming on the grid); the failure is named, in a metric and in the log; peak RSS, threads and
descriptors stay within BOUNDS. A file the agent only reads at start (probes, --config.file, the web config
and its certificate) is named in one line on stderr and the agent exits at once, within bounds too.

Attacks: a FIFO, a symlink to /dev/zero and a sparse file past the read cap in place of a file the agent
reads; a file whose reads block in the kernel (tests/stuckfs.py, FUSE: what a sysfs net attribute does while
a driver reset holds rtnl_lock); a probe into a full listen backlog on loopback."""

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lxcwatch.collectors import ALL as COLLECTORS

import netlab
from agent import Agent, Exposition, free_port, lxcwatch_binary, run_measured, wait_until
from test_probes import full_listener
from test_service import NotifySocket

HOSTS = Path(__file__).parent / "fixtures" / "hosts"
STUCKFS = Path(__file__).parent / "stuckfs.py"
INTERVAL = 0.2
DEADLINE = 1.0  # below the 5 s default, so that a stuck start answers quickly here (tests/test_config.py: the default)
MiB = 1 << 20
# The untouched lxc-hybrid tree, measured: peak RSS 28 MiB, 16 threads (main, sampler, one reader per collector:
# 9, and the HTTP server's 5, which a scrape does not add to: lxcwatch/export/http_server.py), 48 descriptors (kept-open
# container files). The bounds leave room for a hung probe's thread and a sample's garbage, and sit far below what
# an unbounded read reached (8.4 GB from /dev/zero, issue 12).
BOUNDS = {"peak_rss_mib": 100, "threads": 20, "fds": 80}
# (file in the tree, collector that reads it): the kernel files, a sysfs attribute, a container's config
KERNEL_FILES = [
    pytest.param("proc/net/softnet_stat", "softnet", id="softnet_stat"),
    pytest.param("proc/interrupts", "interrupts", id="interrupts"),
    pytest.param("sys/class/net/eth0/flags", "links", id="sysfs-flags"),
    pytest.param("var/lib/lxc/web/config", "lxc", id="lxc-config"),
]
REASONS = {"fifo": "a FIFO, not a regular file: refused", "zero": "a character device, not a regular file: refused",
           "huge": "bytes: refused (cap in lxcwatch/sources/root.py)"}


def usage(pid: int) -> dict[str, float]:
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f)
    return {"peak_rss_mib": int(status["VmHWM"].split()[0]) / 1024, "threads": int(status["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def assert_bounded(pid: int) -> dict[str, float]:
    used = usage(pid)
    assert all(used[k] <= BOUNDS[k] for k in BOUNDS), f"over {BOUNDS}: {used}"
    return used


class Tree:
    """A copy of the lxc-hybrid fixture host (containers, bridges, veths) the agent runs on."""

    def __init__(self, base: Path):
        self.root = base / "lxc-hybrid"
        self.root.mkdir(parents=True)
        subprocess.run(["cp", "-a", f"{HOSTS / 'lxc-hybrid'}/.", str(self.root)], check=True)

    def args(self) -> list[str]:
        return [f"--path.procfs={self.root / 'proc'}", f"--path.sysfs={self.root / 'sys'}",
                f"--path.lxc={self.root / 'var' / 'lib' / 'lxc'}", f"--sample.interval={INTERVAL * 1000:g}ms",
                f"--sample.deadline={DEADLINE * 1000:g}ms", "--no-recorder", "--no-kernel.events"]

    def plant(self, rel: str, attack: str) -> Path:
        return plant(self.root / rel, attack)


def plant(path: Path, attack: str) -> Path:
    """Put the attack in place of `path`: a FIFO (nobody writes), a symlink to /dev/zero, or a sparse regular
    file one byte past the largest read cap (32 MiB, /proc/interrupts')."""
    if path.exists() or path.is_symlink():
        path.unlink()
    if attack == "fifo":
        os.mkfifo(path)
    elif attack == "zero":
        path.symlink_to("/dev/zero")
    else:
        with open(path, "wb") as f:
            f.truncate(32 * MiB + 1)
    return path


def success(agent: Agent) -> dict[str, float]:
    return {s.labels["collector"]: s.value for s in agent.scrape().find("lxcwatch_scrape_collector_success")}


def samples(agent: Agent) -> float:
    return agent.scrape().value("lxcwatch_samples_total")


def assert_others_keep_sampling(agent: Agent, failing: str | None) -> None:
    """Every other collector succeeds, and samples keep coming on the grid (at least 5 in 10 intervals)."""
    assert {c: v for c, v in success(agent).items() if c != failing} == {c: 1 for c in COLLECTORS if c != failing}
    before = samples(agent)
    wait_until(lambda: samples(agent) >= before + 5, "5 more samples", timeout=10 * INTERVAL + 5)


def logged(agent: Agent, *parts: str) -> list[str]:
    return [line for line in agent.output().splitlines() if all(p in line for p in parts)]


# ---------------------------------------------------------------- files the agent reads every sample


@pytest.mark.parametrize("attack", ["fifo", "zero", "huge"])
@pytest.mark.parametrize(("rel", "collector"), KERNEL_FILES)
def test_hostile_file_fails_only_its_reader(tmp_path, rel, collector, attack):
    tree = Tree(tmp_path)
    path = tree.plant(rel, attack)
    started = time.monotonic()
    agent = Agent(tree.args())
    try:
        answered = time.monotonic() - started
        first = agent.scrape()  # the first sample already read the file: its failure is there from the start
        assert (first.value("lxcwatch_container_read_success", container="web") if collector == "lxc" else
                first.value("lxcwatch_scrape_collector_success", collector=collector)) == 0
        if collector == "lxc":  # one container unreadable: the collector goes on with the others
            agent.wait_for(lambda e: e.value("lxcwatch_container_read_success", container="web") == 0,
                           "web's read_success 0")
            assert agent.scrape().value("lxcwatch_container_read_success", container="db") == 1
            assert_others_keep_sampling(agent, None)
            assert logged(agent, "container not fully read", "container=web", str(path), REASONS[attack])
        else:
            agent.wait_for(lambda e: e.value("lxcwatch_scrape_collector_success", collector=collector) == 0,
                           f"{collector} failing")
            assert_others_keep_sampling(agent, collector)
            # the sysfs attribute is read through read_attr, which names the file but not why (links: Partial)
            reason = "" if collector == "links" else REASONS[attack]
            failed = logged(agent, "collector failed", f"collector={collector}", str(path), reason)
            assert len(failed) == 1, agent.output()  # once, not once per sample
        if collector == "links":  # partly failed: eth0 keeps its link_info, only its promiscuity is unknown
            exposition = agent.scrape()
            assert exposition.find("lxcwatch_link_info", device="eth0")
            assert exposition.value("lxcwatch_link_promiscuous", device="eth0") is None
            assert exposition.value("lxcwatch_link_promiscuous", device="lxcbr0") is not None
        used = assert_bounded(agent.proc.pid)
        print(f"{rel} as {attack}: answered {answered:.2f}s after start, failure in the metric by then; {used}")
    finally:
        agent.stop()


# ---------------------------------------------------------------- files read at start


def run_to_exit(args: list[str], timeout: float = 10) -> tuple[int, str, float, float]:
    """(exit code, stderr, seconds to exit, peak RSS in MiB) of an agent that must refuse to start."""
    done, seconds, rss = run_measured([lxcwatch_binary(), f"--web.listen-address=127.0.0.1:{free_port()}", *args],
                                      timeout)  # a hang fails the test instead of hanging it
    return done.returncode, done.stderr, seconds, rss / 1024


def web_config(tmp_path: Path, cert: Path) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {cert}\n")
    return path


@pytest.mark.parametrize("attack", ["fifo", "zero", "huge"])
@pytest.mark.parametrize("what", ["probes", "config", "web-config", "cert"])
def test_hostile_start_file_is_refused_in_one_line(tmp_path, what, attack):
    tree = Tree(tmp_path)
    path = plant(tmp_path / what, attack)
    flag = {"probes": f"--probes.file={path}", "config": f"--config.file={path}",
            "web-config": f"--web.config.file={path}", "cert": f"--web.config.file={web_config(tmp_path, path)}"}[what]
    code, stderr, took, peak = run_to_exit([*tree.args(), flag])
    assert code in (1, 2), stderr
    assert stderr.startswith("lxcwatch: error: ") and len(stderr.splitlines()) == 1, stderr  # no traceback
    assert str(path) in stderr and (REASONS[attack] if attack != "huge" else "larger than") in stderr, stderr
    assert took < 10 and peak <= BOUNDS["peak_rss_mib"], (took, peak)
    print(f"{what} as {attack}: refused in {took:.2f}s, peak RSS {peak:.0f} MiB: {stderr.strip()}")


def test_hostile_config_file_on_reload_keeps_the_running_flags(tmp_path):
    tree = Tree(tmp_path)
    config = tmp_path / "default"
    config.write_text('ARGS=""\n')
    agent = Agent([*tree.args(), f"--config.file={config}"])
    try:
        plant(config, "fifo")
        agent.proc.send_signal(signal.SIGHUP)
        agent.wait_for(lambda e: e.value("lxcwatch_config_last_reload_successful") == 0, "the reload to fail")
        assert_others_keep_sampling(agent, None)
        assert logged(agent, "reload failed", str(config), REASONS["fifo"])
        assert_bounded(agent.proc.pid)
    finally:
        agent.stop()


# ---------------------------------------------------------------- a read that blocks in the kernel


class StuckFile:
    """tests/stuckfs.py mounted over a file of the tree: reads block until `release()`."""

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


# ---------------------------------------------------------------- a probe that hangs


def test_a_hung_probe_holds_no_other_probe(tmp_path):
    tree = Tree(tmp_path)
    up = socket.socket()
    up.bind(("127.0.0.1", 0))
    up.listen(8)
    port = up.getsockname()[1]
    probes = tmp_path / "probes"
    with full_listener() as hang:
        probes.write_text(f"web hang tcp 127.0.0.1:{hang} 1m\nweb up tcp 127.0.0.1:{port}\n")
        agent = Agent([*tree.args(), f"--probes.file={probes}", "--probes.interval=200ms"])
        try:
            agent.wait_for(lambda e: e.value("lxcwatch_container_probe_success", container="web", probe="up") == 1,
                           "the probe beside the hung one to succeed")
            up.close()  # now it is refused: its next attempts must say so while `hang` still hangs
            closed = time.monotonic()
            seen = agent.wait_for(
                lambda e: e.value("lxcwatch_container_probe_success", container="web", probe="up") == 0,
                "the probe beside the hung one to fail", timeout=5)
            assert seen.value("lxcwatch_container_probe_success", container="web", probe="hang") is None
            assert_others_keep_sampling(agent, None)
            assert logged(agent, "probe failed", "probe=up", "Connection refused")
            used = assert_bounded(agent.proc.pid)
            print(f"hung probe: the other probe's failure seen {time.monotonic() - closed:.2f}s after it began; {used}")
        finally:
            agent.stop()


def test_probe_timeout_beyond_the_cap_is_refused(tmp_path):
    tree = Tree(tmp_path)
    probes = tmp_path / "probes"
    probes.write_text("web slow tcp 127.0.0.1:9 99999999999h\n")
    code, stderr, _, _ = run_to_exit([*tree.args(), f"--probes.file={probes}"])
    assert code == 2 and re.search(r"probes:1: timeout 99999999999h is longer than the maximum 60s", stderr), stderr


# ---------------------------------------------------------------- interface names the kernel allows


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
