"""The Ansible role on two real systemd hosts (LXC system containers), as an operator gets it: `make dist`'s artifact
and role, installed from a directory with no checkout; --check on fresh hosts, TLS and basic auth proven, Prometheus
scraping over them, auth off and on, the runbooks' commands; serve, restart, watchdog, reload."""

import contextlib
import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error

import pytest
import yaml

from tests.support import systemd_hosts
from tests.support.agent import free_port, stop_process, wait_until
from tests.support.systemd_hosts import REPO, Deployment, Fleet

pytestmark = [pytest.mark.live, pytest.mark.slow]

REPLICAS = ("a", "b")
UNIT = REPO / "packaging" / "systemd" / "lxcwatch.service"


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
def controller(fleet):
    """`make dist`, and the controller directory with the role installed from it (nothing of the checkout)."""
    deployment = Deployment(fleet, systemd_hosts.build_dist(fleet.workdir / "dist"))
    yield deployment
    deployment.close()


@pytest.fixture(scope="module")
def deployment(fleet, controller, request):
    """A --check run on the fresh hosts, then the first real run (TLS and basic auth on), which must succeed for
    anything else to be checked; `bare`: when the real run started."""
    check = controller.run("--check")
    assert check.returncode == 0, check.tail()
    started = time.monotonic()
    first = controller.run()
    controller.first_run = time.monotonic() - started
    say(request, f"first playbook run (artifact by URL, TLS and basic auth): {controller.first_run:.1f} s")
    assert first.returncode == 0, first.tail()
    return controller


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


def test_check_mode_on_fresh_hosts_passes_and_changes_nothing(fleet, deployment):
    check = deployment.runs[0]
    assert set(check.recap()) == {h.name for h in fleet.hosts}, check.tail()
    for name, counts in check.recap().items():
        assert counts["failed"] == counts["unreachable"] == 0 and counts["changed"] > 0, (name, counts)
    # It ran before the first real run, which then found everything still to do:
    first = deployment.runs[1].output
    for task in ("Copy the artifact", "Create the virtual environment", "Install the package from the wheelhouse",
                 "Install the systemd unit"):
        assert re.search(rf"TASK \[lxcwatch : {task}\] \*+\n(changed: \[\S+\]\n){{2}}", first), task


def test_first_run_deploys_both_hosts_from_the_artifact(fleet, deployment):
    first = deployment.runs[1]
    recap = first.recap()
    assert set(recap) == {h.name for h in fleet.hosts}, first.tail()
    for name, counts in recap.items():
        assert counts["failed"] == counts["unreachable"] == 0, (name, counts)
        assert counts["changed"] > 0, (name, counts)
    # The controller ran from a directory with the installed role and nothing of the checkout.
    assert not (deployment.dir / "roles" / "lxcwatch" / "files" / "lxcwatch.service").is_symlink()
    assert str(REPO) not in "".join(p.read_text() for p in deployment.dir.glob("*.json"))
    for host in fleet.hosts:
        # On PATH, as the runbooks call it; installed from the wheelhouse the URL served.
        assert host.attach("sh", "-c", "command -v lxcwatch && lxcwatch --version").split() == \
            ["/usr/local/bin/lxcwatch", "lxcwatch", "0.1.0"]
        wheels = host.attach("sh", "-c", "ls /var/cache/lxcwatch/wheels-0.1.0-*/wheelhouse").split()
        assert "lxcwatch-0.1.0-py3-none-any.whl" in wheels, wheels


def test_a_wrong_checksum_stops_the_play_before_any_host_is_touched(fleet, deployment):
    tampered = deployment.dir / "tampered"
    tampered.mkdir()
    artifact = shutil.copy(deployment.dist["wheelhouse"], tampered)
    sums = deployment.dist["checksums"].read_text()
    (tampered / "SHA256SUMS").write_text(re.sub(r"^[0-9a-f]{64}(?=  lxcwatch-[^ ]*-wheelhouse)", "0" * 64, sums, flags=re.M))
    with open(artifact, "ab") as f:
        f.write(b"\0")  # and a changed artifact: it must fail on its checksum, whatever SHA256SUMS says
    bad = deployment.run(variables={"lxcwatch_artifact": str(artifact)})
    assert bad.returncode != 0
    assert "matches its checksum" in bad.output and "but" in bad.output, bad.tail()
    assert all(counts["changed"] == 0 for counts in bad.recap().values()), bad.tail()


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
        assert float(last.split(": ")[1].split()[0]) <= 2.1, report  # tests/deploy/test_systemd_unit.py says why


def test_both_agents_answer_on_the_container_addresses(fleet, deployment):
    for host in fleet.hosts:
        e = host.metrics()
        assert e.value("lxcwatch_replica_info", replica=host.replica, replica_group="deploy") == 1, host.address
        assert len(e.find("lxcwatch_replica_info")) == 1
        success = {s.labels["collector"]: s.value for s in e.find("lxcwatch_scrape_collector_success")}
        assert success and set(success.values()) == {1}, success
        assert e.find("lxcwatch_build_info")
        assert e.value("lxcwatch_samples_total") >= 1


def status(host, auth=None, tls=None) -> int:
    """The HTTP status of GET /metrics, or 0 when there is no HTTP answer (a TLS port spoken to in plain HTTP)."""
    try:
        with host.get("/metrics", auth=auth, tls=tls):
            return 200
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def test_tls_and_basic_auth_are_on(fleet, deployment):
    for host in fleet.hosts:
        assert status(host) == 401
        assert status(host, auth=(Deployment.USER, "wrong")) == 401
        assert status(host, auth=(Deployment.USER, Deployment.PASSWORD)) == 200
        assert status(host, auth=(Deployment.USER, Deployment.PASSWORD), tls=False) == 0
        files = host.attach("stat", "-c", "%U:%G %a %n", "/etc/lxcwatch/web-config.yml", "/etc/lxcwatch/tls/key.pem")
        assert files.splitlines() == ["root:lxcwatch 640 /etc/lxcwatch/web-config.yml",
                                      "root:lxcwatch 640 /etc/lxcwatch/tls/key.pem"]
        assert Deployment.PASSWORD not in host.attach("cat", "/etc/lxcwatch/web-config.yml")
    # The play proved it itself, from each host:
    assert re.search(r"TASK \[lxcwatch : Scrape without credentials\] \*+\n(ok: \[\S+\]\n){2}",
                     deployment.runs[1].output), deployment.runs[1].tail()


@pytest.fixture(scope="module")
def prometheus(fleet, deployment, request):
    """The monitoring playbook (installed role) into a temporary Prometheus configuration that the operator had
    already (tests/fixtures/operator), then Debian's Prometheus on it, on 127.0.0.1."""
    work = fleet.workdir / "monitoring"
    (work / "prometheus").mkdir(parents=True)
    for name in ("prometheus.yml", "alertmanager.yml"):
        shutil.copy(REPO / "tests" / "fixtures" / "operator" / name, work / "prometheus" / name)
    password = work / "password"
    password.write_text(Deployment.PASSWORD)
    inventory = deployment.dir / "inventory-monitoring.json"
    hosts = json.loads(deployment.inventory.read_text())
    hosts["all"]["children"]["monitoring"] = {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}
    inventory.write_text(json.dumps(hosts))
    destinations = {
        "lxcwatch_prometheus_config_file": work / "prometheus" / "prometheus.yml",
        "lxcwatch_prometheus_rules_dir": work / "prometheus" / "rules",
        "lxcwatch_prometheus_file_sd_dir": work / "prometheus" / "file_sd",
        "lxcwatch_alertmanager_config_file": work / "prometheus" / "alertmanager.yml",
        "lxcwatch_grafana_dashboards": False,
        "lxcwatch_docs_dir": work / "doc",
        "lxcwatch_prometheus_scrape_config_extra": {
            "scheme": "https", "tls_config": {"ca_file": str(deployment.pki / "ca.crt")},
            "basic_auth": {"username": Deployment.USER, "password_file": str(password)}},
    }
    started = time.monotonic()
    run = deployment.run(playbook="monitoring.yml", inventory=inventory, variables=json.loads(
        json.dumps(destinations, default=str)))
    deployment.monitoring_run = time.monotonic() - started
    assert run.returncode == 0, run.tail()
    port = free_port()
    log = open(work / "prometheus.log", "w")
    proc = subprocess.Popen([shutil.which("prometheus") or "/usr/bin/prometheus",
                             f"--config.file={destinations['lxcwatch_prometheus_config_file']}",
                             f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}", destinations
    finally:
        stop_process(proc)
        log.close()


def lxcwatch_targets(url: str) -> list[dict]:
    try:
        targets = systemd_hosts.DIRECT.open(f"{url}/api/v1/targets", timeout=5).read()
    except OSError:
        return []
    return [t for t in json.loads(targets)["data"]["activeTargets"] if t["labels"]["job"] == "lxcwatch"]


def test_prometheus_scrapes_both_agents_over_tls_with_basic_auth(fleet, deployment, prometheus, request):
    url, destinations = prometheus
    started = time.monotonic()  # Prometheus was started by the fixture just now
    targets = wait_until(lambda: (t := lxcwatch_targets(url)) and all(x["health"] == "up" for x in t) and t,
                         "Prometheus to scrape both agents", timeout=60)
    scraped = time.monotonic() - started
    say(request, f"bare hosts to both agents scraped over TLS with basic auth: {deployment.first_run:.1f} s agent "
                 f"run + {deployment.monitoring_run:.1f} s monitoring run + {scraped:.1f} s to the first good scrape = "
                 f"{deployment.first_run + deployment.monitoring_run + scraped:.1f} s")
    assert sorted(t["scrapeUrl"] for t in targets) == sorted(f"https://{h.address}:12243/metrics" for h in fleet.hosts)
    config = yaml.safe_load(destinations["lxcwatch_prometheus_config_file"].read_text())
    assert [j["job_name"] for j in config["scrape_configs"]] == ["prometheus", "node", "blackbox", "lxcwatch"]


def test_second_run_changes_nothing(fleet, deployment):
    again = deployment.run()
    assert again.returncode == 0, again.tail()
    assert {name: counts["changed"] for name, counts in again.recap().items()} == \
        {h.name: 0 for h in fleet.hosts}, again.tail()


def main_pids(fleet) -> dict[str, str]:
    return {h.name: h.show("lxcwatch", "MainPID")["MainPID"] for h in fleet.hosts}


def test_auth_off_and_on_again_restarts_the_agents(fleet, deployment):
    before = main_pids(fleet)
    since = f"@{int(time.time()) - 1}"
    off = deployment.run(web=False)
    assert off.returncode == 0, off.tail()
    after_off = main_pids(fleet)
    assert all(after_off[name] not in ("0", pid) for name, pid in before.items()), (before, after_off)
    for host in fleet.hosts:
        assert status(host) == 200  # plain HTTP, no credentials
        assert host.attach("ls", "/etc/lxcwatch") == ""  # web config, certificate and key are gone
        assert "--web.config.file" not in host.attach("cat", "/etc/default/lxcwatch")
        assert host.metrics().value("lxcwatch_config_last_reload_successful") == 1
    on = deployment.run()
    assert on.returncode == 0, on.tail()
    after_on = main_pids(fleet)
    assert all(after_on[name] not in ("0", pid) for name, pid in after_off.items()), (after_off, after_on)
    for host in fleet.hosts:
        assert status(host) == 401
        assert host.metrics().value("lxcwatch_config_last_reload_successful") == 1
        # The restart came first: no reload ever met the changed --web.config.file.
        assert "restart needed" not in host.journal("-u", "lxcwatch", "--since", since)


def test_a_reloadable_change_reloads_without_a_restart(fleet, deployment):
    before = main_pids(fleet)
    loaded = {h.name: h.metrics().value("lxcwatch_config_last_reload_success_timestamp_seconds") for h in fleet.hosts}
    debug = deployment.run(variables={"lxcwatch_log_level": "debug"})
    assert debug.returncode == 0, debug.tail()
    assert main_pids(fleet) == before
    for host in fleet.hosts:
        e = host.metrics()
        assert e.value("lxcwatch_config_last_reload_successful") == 1
        assert e.value("lxcwatch_config_last_reload_success_timestamp_seconds") > loaded[host.name]
    back = deployment.run()
    assert back.returncode == 0 and main_pids(fleet) == before, back.tail()


def runbook_commands() -> list[str]:
    """Every line of the fenced code blocks of docs/runbooks.md, without its comment."""
    text = (REPO / "docs" / "runbooks.md").read_text()
    blocks = re.findall(r"^```\n(.*?)^```$", text, re.S | re.M)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_runbook_commands_work_on_a_deployed_host(fleet, deployment):
    commands = runbook_commands()
    assert "lxcwatch status" in commands, commands
    host = fleet.hosts[0]
    for command in commands:
        out = fleet.ssh(host, command)  # root's login over SSH, as an operator runs them
        searching = "grep" in command  # a search that finds nothing exits 1
        assert out.returncode == 0 or (searching and out.returncode == 1), (command, out.returncode, out.stderr)
        errors = [line for line in out.stderr.splitlines() if not line.startswith("Warning: Permanently added")]
        assert errors == [], (command, out.stderr)


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


def test_hung_agent_is_restarted_by_the_watchdog(fleet, deployment):
    """A stopped agent sends no WATCHDOG=1: systemd's watchdog (WatchdogSec=30s) aborts it, kills it when the
    abort cannot land (TimeoutStopSec=20s) and starts it again. No host file can hang the loop any more (reads
    are bounded, tests/e2e/test_hostile_host.py); a loop frozen while scrapes go on is tests/e2e/test_service.py's."""
    host = fleet.hosts[1]
    before = host.show("lxcwatch", "MainPID", "NRestarts")
    since = f"@{int(time.time()) - 1}"
    host.attach("kill", "-STOP", before["MainPID"])
    after = restarted(host, before, timeout=90)  # 30 s watchdog + 20 s abort timeout + RestartSec=5s
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
