"""The Ansible role on two real systemd hosts (LXC system containers): deploy, serve, restart, watchdog, reload."""

import contextlib
import json
import re
import subprocess
import threading
import time

import pytest

import systemd_hosts
from agent import wait_until
from systemd_hosts import REPO, Deployment, Fleet

pytestmark = [pytest.mark.live, pytest.mark.slow]

REPLICAS = ("a", "b")
UNIT = REPO / "packaging" / "systemd" / "lxcwatch.service"
HANG = "/var/lib/lxc/hang"  # the agent's default LXC path, inside the host


def say(request, line: str) -> None:
    """A timing for the terminal, past pytest's capture."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\ntest_deploy: {line}", flush=True)


@pytest.fixture(scope="module")
def fleet(request):
    reason = systemd_hosts.unavailable()
    if reason:
        pytest.skip(reason)
    tarball, built = systemd_hosts.rootfs_tarball()
    say(request, f"root filesystem {tarball}: " + (f"built in {built:.0f} s" if built else "cached"))
    fleet = None
    try:
        started = time.monotonic()
        fleet = Fleet()
        for replica in REPLICAS:
            fleet.create(replica, tarball)
        fleet.boot()
        say(request, f"two hosts booted and reachable over SSH in {time.monotonic() - started:.1f} s")
        yield fleet
    finally:
        problems = fleet.cleanup() if fleet else []
        assert not problems, f"not removed: {problems}"


@pytest.fixture(scope="module")
def deployment(fleet, request):
    """The first playbook run, which must succeed for anything else to be checked."""
    if not systemd_hosts.PLAYBOOK.exists():
        pytest.fail(f"{systemd_hosts.PLAYBOOK} does not exist")
    wheelhouse = systemd_hosts.build_wheelhouse(fleet.workdir / "wheels")
    deployment = Deployment(fleet, wheelhouse)
    started = time.monotonic()
    first = deployment.run()
    say(request, f"first playbook run: {time.monotonic() - started:.1f} s")
    assert first.returncode == 0, first.tail()
    return deployment


def serving(host, timeout: float = 30):
    """The host's agent answers /metrics (a restarted agent takes a moment to bind)."""
    def scrape():
        try:
            return host.metrics()
        except OSError:
            return None
    return wait_until(scrape, f"{host.name} to serve /metrics", timeout)


def restarted(host, before: dict[str, str], timeout: float):
    """Wait until systemd has a new main process for the unit, active again; its properties."""
    def check():
        now = host.show("lxcwatch", "ActiveState", "MainPID", "NRestarts")
        return now if now["ActiveState"] == "active" and now["MainPID"] not in ("0", before["MainPID"]) else None
    return wait_until(check, f"lxcwatch on {host.name} to be restarted", timeout)


def test_hosts_boot_systemd_to_running(fleet):
    for host in fleet.hosts:
        assert host.attach("cat", "/proc/1/comm").strip() == "systemd"
        assert host.attach("systemctl", "--version").startswith("systemd 252 ")
        assert fleet.verdicts[host.name] == "running", host.attach("systemctl", "--failed", "--no-legend")
        assert host.is_active("multi-user.target") == "active"


def test_first_run_deploys_both_hosts(fleet, deployment):
    first = deployment.runs[0]
    recap = first.recap()
    assert set(recap) == {h.name for h in fleet.hosts}, first.tail()
    for name, counts in recap.items():
        assert counts["failed"] == counts["unreachable"] == 0, (name, counts)
        assert counts["changed"] > 0, (name, counts)


def test_service_runs_under_systemd_as_lxcwatch_from_the_packaged_unit(fleet, deployment):
    for host in fleet.hosts:
        assert host.is_active("lxcwatch") == "active"
        unit = host.show("lxcwatch", "Type", "User", "MainPID", "NRestarts", "FragmentPath", "WatchdogUSec")
        assert (unit["Type"], unit["User"], unit["NRestarts"]) == ("notify", "lxcwatch", "0"), unit
        assert unit["WatchdogUSec"] not in ("0", "infinity"), unit
        assert host.attach("ps", "-o", "user=", "-p", unit["MainPID"]).strip() == "lxcwatch"
        assert host.attach("cat", unit["FragmentPath"]) == UNIT.read_text()


def test_systemd_analyze_security_exposure_is_at_most_2_1(fleet, deployment):
    for host in fleet.hosts:
        # verify on the host that has everything the unit names (its binary, its user): no message at all
        verify = subprocess.run(["lxc-attach", "-P", host.path, "-n", host.name, "--clear-env", "--",
                                 "systemd-analyze", "verify", "/etc/systemd/system/lxcwatch.service"],
                                capture_output=True, text=True, timeout=60)
        assert (verify.returncode, verify.stdout + verify.stderr) == (0, ""), verify
        report = host.attach("systemd-analyze", "security", "--no-pager", "lxcwatch.service")
        last = report.strip().splitlines()[-1]
        assert last.startswith("→ Overall exposure level for lxcwatch.service: "), report
        assert float(last.split(": ")[1].split()[0]) <= 2.1, report  # tests/test_systemd_unit.py says why


def test_both_agents_answer_on_the_container_addresses(fleet, deployment):
    for host in fleet.hosts:
        e = host.metrics()
        assert e.value("lxcwatch_replica_info", replica=host.replica, replica_group="deploy") == 1, host.address
        assert len(e.find("lxcwatch_replica_info")) == 1
        success = {s.labels["collector"]: s.value for s in e.find("lxcwatch_scrape_collector_success")}
        assert success and set(success.values()) == {1}, success
        assert e.find("lxcwatch_build_info")
        assert e.value("lxcwatch_samples_total") >= 1


def test_second_run_changes_nothing(fleet, deployment):
    again = deployment.run()
    assert again.returncode == 0, again.tail()
    assert {name: counts["changed"] for name, counts in again.recap().items()} == \
        {h.name: 0 for h in fleet.hosts}, again.tail()


def test_kill_9_gets_the_agent_restarted(fleet, deployment):
    host = fleet.hosts[0]
    before = host.show("lxcwatch", "MainPID", "NRestarts")
    host.attach("kill", "-9", before["MainPID"])
    after = restarted(host, before, timeout=30)  # RestartSec=5s
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    assert serving(host).value("lxcwatch_replica_info", replica=host.replica, replica_group="deploy") == 1


def sample_age(host) -> float | None:
    """Seconds since the agent's last completed sample, by the clock host and containers share."""
    last = host.metrics().value("lxcwatch_last_sample_timestamp_seconds")
    return time.time() - last if last else None


def test_hung_sampling_loop_is_restarted_by_the_watchdog(fleet, deployment):
    host = fleet.hosts[1]
    before = host.show("lxcwatch", "MainPID", "NRestarts")
    since = f"@{int(time.time()) - 1}"
    # open() of a FIFO blocks until a writer comes: the lxc collector reading this "config" hangs the sampler.
    host.attach("mkdir", "-p", HANG)
    try:
        host.attach("mkfifo", f"{HANG}/config")
        wait_until(lambda: (sample_age(host) or 0) > 5, "the sampling loop to hang", timeout=30)
        assert host.metrics().find("lxcwatch_build_info")  # the listener still serves
    finally:
        # Removed at once: the hung open() holds the FIFO's inode, not its name, so the agent stays stuck,
        # while the one systemd starts next no longer finds it (and does not hang before READY=1).
        host.attach("rm", "-rf", HANG)
    after = restarted(host, before, timeout=90)  # WatchdogSec=30s, then RestartSec=5s
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    assert "Watchdog timeout" in host.journal("-u", "lxcwatch", "--since", since)
    serving(host)
    assert wait_until(lambda: (sample_age(host) or 99) < 3, "fresh samples after the restart", timeout=15)


class Poller(threading.Thread):
    """Scrapes a host without pause until stopped; keeps every failure."""

    def __init__(self, host):
        super().__init__(daemon=True)
        self.host, self.done = host, threading.Event()
        self.scrapes, self.failures = 0, []

    def run(self):
        while not self.done.is_set():
            try:
                self.host.metrics()
                self.scrapes += 1
            except OSError as e:
                self.failures.append(repr(e))

    def wait_scrapes(self, count: int) -> None:
        target = self.scrapes + count
        wait_until(lambda: self.scrapes >= target or self.failures, f"{count} scrapes of {self.host.name}")


def scrape_until(host, check, what: str, timeout: float = 15):
    """Scrape until `check(exposition)` holds; that scrape."""
    def attempt():
        e = host.metrics()
        return e if check(e) else None
    return wait_until(attempt, what, timeout)


def test_reload_keeps_serving_and_applies_a_changed_flag(fleet, deployment):
    host = fleet.hosts[0]
    serving(host)
    before = host.show("lxcwatch", "MainPID", "NRestarts")
    flags = host.attach("cat", "/etc/default/lxcwatch")
    name_flag = re.compile(r"--replica\.name=a(?=[\s\"'])")
    assert len(name_flag.findall(flags)) == 1, flags
    reload_started = time.time()
    poller = Poller(host)
    poller.start()
    try:
        poller.wait_scrapes(5)
        host.attach("tee", "/etc/default/lxcwatch", stdin=name_flag.sub("--replica.name=a2", flags))
        host.attach("systemctl", "reload", "lxcwatch")
        e = scrape_until(host, lambda e: e.find("lxcwatch_replica_info", replica="a2"), "the reloaded replica name")
        poller.wait_scrapes(5)
    finally:
        poller.done.set()
        poller.join()
    assert poller.failures == []
    assert host.show("lxcwatch", "MainPID", "NRestarts") == before
    assert e.value("lxcwatch_replica_info", replica="a2", replica_group="deploy") == 1
    assert not e.find("lxcwatch_replica_info", replica="a")
    assert e.value("lxcwatch_config_last_reload_successful") == 1
    assert e.value("lxcwatch_config_last_reload_success_timestamp_seconds") >= reload_started


def test_journal_has_the_agents_structured_entries(fleet, deployment):
    host = fleet.hosts[1]
    pid = host.show("lxcwatch", "MainPID")["MainPID"]
    entries = [json.loads(line) for line in host.journal("-u", "lxcwatch", "-o", "json").splitlines()]
    mine = [e for e in entries if e.get("_PID") == pid]
    assert mine, f"no journal entry from the agent's main process {pid}"
    listening = [e for e in mine if e.get("MESSAGE") == "listening"]
    assert len(listening) == 1, [e.get("MESSAGE") for e in mine]
    entry = listening[0]
    assert entry["SYSLOG_IDENTIFIER"] == "lxcwatch"
    assert entry["PRIORITY"] == "6"  # info
    assert entry["_SYSTEMD_UNIT"] == "lxcwatch.service"
    assert entry.get("LOGGER") == "lxcwatch", entry
    assert f":{systemd_hosts.PORT}" in entry.get("ADDRESSES", ""), entry
