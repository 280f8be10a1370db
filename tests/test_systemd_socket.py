"""The shipped lxcwatch.socket: checked by `systemd-analyze verify`, and run by systemd 252 in a booted Debian host
(an LXC system container, tests/systemd_hosts.py) with the agent the role deployed: the first scrape starts the
service, a restart refuses no scrape, docs/deploy.md's commands switch a host over as written."""

import json
import re
import shutil
import subprocess
import urllib.request

import pytest
import systemd_hosts
from agent import Exposition
from systemd_hosts import REPO, Deployment, Fleet
from test_systemd_unit import ANALYZE, analyze, exposure, unit_here

from lxcwatch import cli
from lxcwatch.export import http_server

SOCKET = REPO / "packaging" / "systemd" / "lxcwatch.socket"


def socket_setting(name: str) -> str:
    return re.search(rf"^{name}=(.*)$", SOCKET.read_text(), re.M).group(1)


def test_the_socket_listens_where_the_agent_would():
    assert socket_setting("ListenStream") == str(cli.DEFAULT_PORT)  # ":12243": all addresses, IPv6 and IPv4
    assert socket_setting("Backlog") == str(http_server.BACKLOG)


@pytest.mark.skipif(ANALYZE is None, reason="needs systemd-analyze (Debian: systemd)")
def test_verify_is_clean_beside_the_service(tmp_path):
    unit_here(tmp_path)  # lxcwatch.service, the unit the socket activates, in the same directory
    shutil.copy(SOCKET, tmp_path / "lxcwatch.socket")
    out = analyze("verify", str(tmp_path / "lxcwatch.socket"))
    assert (out.returncode, out.stdout + out.stderr) == (0, "")


@pytest.mark.skipif(ANALYZE is None, reason="needs systemd-analyze (Debian: systemd)")
def test_verify_would_catch_a_socket_without_its_service(tmp_path):
    shutil.copy(SOCKET, tmp_path / "lxcwatch.socket")
    out = analyze("verify", str(tmp_path / "lxcwatch.socket"))
    assert out.returncode != 0 and "service lxcwatch.service not loaded" in out.stderr


@pytest.mark.skipif(ANALYZE is None, reason="needs systemd-analyze (Debian: systemd)")
def test_the_service_keeps_its_exposure_with_the_socket_beside_it(tmp_path):
    unit_here(tmp_path)
    shutil.copy(SOCKET, tmp_path / "lxcwatch.socket")
    out = analyze("security", "--offline=true", "--threshold=21", str(tmp_path / "lxcwatch.service"))
    assert exposure(out) <= 2.1 and out.returncode == 0, out.stdout


# --- in a systemd host

def deploy_commands() -> list[str]:
    """The socket activation block of docs/deploy.md, one command a line."""
    section = (REPO / "docs" / "deploy.md").read_text().split("## Socket activation", 1)[1]
    block = re.search(r"^```\n(.*?)^```$", section, re.S | re.M).group(1)
    return [line for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def host():
    reason = systemd_hosts.unavailable()
    if reason:
        pytest.skip(reason)
    tarball, _ = systemd_hosts.rootfs_tarball()
    fleet = Fleet()
    deployment = None
    try:
        fleet.create("s", tarball)
        fleet.boot()
        deployment = Deployment(fleet, systemd_hosts.build_dist(fleet.workdir / "dist"))
        run = deployment.run(web=False)
        assert run.returncode == 0, run.tail()
        yield fleet.hosts[0]
    finally:
        if deployment:
            deployment.close()
        problems = fleet.cleanup()
        assert not problems, f"not removed: {problems}"


def scrape(host, timeout: float = 30) -> int:
    """One GET /metrics, no retry: its status (an OSError, such as a refused connection, fails the test)."""
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"http://{host.address}:{systemd_hosts.PORT}/metrics", timeout=timeout) as response:
        host.last = Exposition(response.read().decode())
        return response.status


@pytest.mark.live
@pytest.mark.slow
def test_socket_activation_on_a_systemd_host(host):
    assert host.is_active("lxcwatch.service") == "active"  # as the role left it, listening itself
    host.attach("tee", "/root/lxcwatch.socket", stdin=SOCKET.read_text())  # the file, copied to the host
    for command in deploy_commands():
        host.attach("sh", "-c", f"cd /root && {command}")
    assert host.is_active("lxcwatch.socket") == "active"
    assert host.is_active("lxcwatch.service") == "inactive"  # until the first connection
    assert "--web.systemd-socket" in host.attach("cat", "/etc/default/lxcwatch")

    assert scrape(host) == 200  # this connection starts the service
    # The wheel `make dist` built carries the commit (setup.py), and the host's Python.
    (build,) = host.last.find("lxcwatch_build_info")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    assert build.labels["revision"] == head.stdout.strip(), build.labels
    assert build.labels["pythonversion"] == host.attach("python3", "-c", "import platform; "
                                                        "print(platform.python_version())").strip()
    unit = host.show("lxcwatch.service", "ActiveState", "TriggeredBy", "MainPID")
    assert unit["ActiveState"] == "active" and unit["TriggeredBy"] == "lxcwatch.socket", unit
    entries = [json.loads(line) for line in host.journal("-u", "lxcwatch", "-o", "json").splitlines()]
    mine = [e for e in entries if e.get("_PID") == unit["MainPID"]]
    assert [e.get("ADDRESSES") for e in mine if e.get("MESSAGE") == "listening"] == ["[::]:12243"], mine
    ignored = [e for e in mine if e.get("MESSAGE", "").startswith("--web.listen-address ignored")]
    assert [e.get("IGNORED") for e in ignored] == [":12243"], mine  # the role's flag

    # The agent down refuses no scrape: the connection waits in systemd's socket until an agent accepts it.
    for _ in range(3):
        host.attach("systemctl", "stop", "lxcwatch.service")
        assert host.is_active("lxcwatch.service") == "inactive"
        assert scrape(host) == 200  # started by this connection
        assert host.is_active("lxcwatch.service") == "active"
    before = host.show("lxcwatch.service", "MainPID", "NRestarts")
    host.attach("kill", "-9", before["MainPID"])  # a crash: restarted RestartSec=5s later, the socket stays
    assert scrape(host) == 200
    after = host.show("lxcwatch.service", "MainPID", "NRestarts")
    assert after["MainPID"] != before["MainPID"] and int(after["NRestarts"]) == int(before["NRestarts"]) + 1, after

    report = host.attach("systemd-analyze", "security", "--no-pager", "lxcwatch.service")
    assert float(report.strip().splitlines()[-1].split(": ")[1].split()[0]) <= 2.1, report
