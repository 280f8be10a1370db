"""The real agent process: failure isolation, HTTP endpoints, and one-line errors with the right exit codes."""

import gzip
import shutil
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.support.agent import Agent, lxcwatch_binary
from tests.e2e.test_e2e_golden import HOSTS, tree_args


@pytest.fixture
def tree(tmp_path):
    """A private, writable copy of the live capture, symlinks kept."""
    root = tmp_path / "host"
    shutil.copytree(HOSTS / "virtio-live", root, symlinks=True)
    return root


def args_for(root) -> list[str]:
    return [f"--path.procfs={root / 'proc'}", f"--path.sysfs={root / 'sys'}", "--sample.interval=50ms"]


def test_a_broken_source_fails_only_its_collector_and_is_logged_once(tree):
    softnet = tree / "proc" / "net" / "softnet_stat"
    good = softnet.read_text()
    softnet.write_text(good.splitlines()[0] + "\n0000000e 00000000\n")  # truncated second row
    agent = Agent(args_for(tree))
    try:
        seen = agent.wait_for(lambda e: e.value("lxcwatch_samples_total") >= 5, "five samples")
        assert seen.value("lxcwatch_scrape_collector_success", collector="softnet") == 0
        assert not seen.find("lxcwatch_softnet_processed_total")
        for name in ("softirqs", "interrupts", "netdev", "links", "napi", "kthreads", "napi_poll", "lxc"):
            assert seen.value("lxcwatch_scrape_collector_success", collector=name) == 1, name
        assert seen.value("lxcwatch_link_receive_packets_total", device="eth0") is not None

        fresh = softnet.with_name("softnet_stat.new")
        fresh.write_text(good)
        fresh.replace(softnet)  # atomic: a write in place can be read half-done ("no rows") and fail again
        healed = agent.wait_for(lambda e: e.value("lxcwatch_scrape_collector_success", collector="softnet") == 1,
                                "softnet to recover")
        assert healed.find("lxcwatch_softnet_processed_total")
    finally:
        agent.stop()
    log = agent.output().splitlines()
    failed = [line for line in log if "collector failed" in line]
    assert len(failed) == 1, log
    assert "collector=softnet" in failed[0] and "softnet_stat:2" in failed[0]
    assert sum("collector recovered" in line for line in log) == 1


def test_a_vanished_interface_is_dropped_not_fatal(tree):
    agent = Agent(args_for(tree))
    try:
        agent.wait_for(lambda e: "ifb1" in e.devices(), "ifb1 to be listed")
        (tree / "sys" / "class" / "net" / "ifb1").unlink()
        netdev = tree / "proc" / "net" / "dev"
        netdev.write_text("".join(line + "\n" for line in netdev.read_text().splitlines() if "ifb1:" not in line))
        gone = agent.wait_for(lambda e: "ifb1" not in e.devices(), "ifb1 series to disappear")
        assert gone.value("lxcwatch_scrape_collector_success", collector="links") == 1
        assert "eth0" in gone.devices()
    finally:
        agent.stop()


def get(url: str, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_http_endpoints():
    agent = Agent(tree_args("virtio-live"))
    try:
        base = agent.url.rsplit("/", 1)[0]
        status, headers, body = get(base + "/")
        assert status == 200 and b"lxcwatch" in body and b'href="/metrics"' in body and b"0.1.0" in body
        assert get(base + "/nope")[0] == 404
        status, headers, body = get(agent.url, {"Accept": "application/openmetrics-text; version=1.0.0"})
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        assert body.endswith(b"# EOF\n")
        status, headers, body = get(agent.url, {"Accept-Encoding": "gzip"})
        assert headers.get("Content-Encoding") == "gzip"
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert b"lxcwatch_build_info" in gzip.decompress(body)
    finally:
        agent.stop()


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([lxcwatch_binary(), *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["--sample.interval=fast"], 2, "invalid duration 'fast'"),
        (["--no-such-flag"], 2, "unrecognized arguments: --no-such-flag"),
        (["--web.listen-address=nowhere"], 2, "invalid listen address 'nowhere'"),
        (["--log.format=xml"], 2, "--log.format: invalid choice: 'xml'"),
        (["--path.procfs=/nonexistent"], 1, "--path.procfs=/nonexistent: not a directory"),
        (["--path.sysfs=/etc"], 1, "--path.sysfs=/etc: none of class/net found"),
        (["--web.max-requests=-1"], 2, "invalid --web.max-requests -1: must be 0 (no limit) or more"),
        (["--web.request-timeout=0s"], 2, "invalid duration '0s': must be greater than zero"),
        (["status", "--sample.interval=0s"], 2, "must be greater than zero"),
        (["status", "--path.procfs=/nonexistent"], 1, "--path.procfs=/nonexistent: not a directory"),
    ],
    ids=["duration", "unknown-flag", "address", "log-format", "procfs", "sysfs", "max-requests", "request-timeout",
         "status-interval", "status-procfs"],
)
def test_user_errors_are_one_line(args, code, message):
    out = run(*args)
    assert out.returncode == code
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("lxcwatch: error: "), out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_port_in_use_is_a_runtime_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = run(f"--web.listen-address=127.0.0.1:{port}", *tree_args("virtio-live"))
    assert out.returncode == 1
    assert out.stderr == f"lxcwatch: error: listen tcp 127.0.0.1:{port}: Address already in use\n"


def test_version():
    out = run("--version")
    assert out.returncode == 0 and out.stdout == "lxcwatch 0.1.0\n"


def test_status_json_on_a_fixture_tree():
    import json

    out = run("status", "--json", "--sample.interval=50ms", *tree_args("tg3-pair")[:2])
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    nics = {n["device"]: n for n in data["nics"]}
    assert set(nics) == {"eth0", "eth1"}
    assert nics["eth0"]["driver"] == "tg3" and nics["eth0"]["driver_version"] == "3.119"
    assert nics["eth0"]["promiscuous"] is True
    assert [c["cpu"] for c in data["cpus"]] == list(range(16))


def test_disabled_collector_and_json_logs(tree):
    agent = Agent(args_for(tree) + ["--no-collector.softnet", "--log.format=json"])
    try:
        seen = agent.scrape()
    finally:
        agent.stop()
    assert not seen.find("lxcwatch_softnet_processed_total")
    assert not seen.find("lxcwatch_scrape_collector_success", collector="softnet")
    assert seen.value("lxcwatch_scrape_collector_success", collector="netdev") == 1
    import json

    first = json.loads(agent.output().splitlines()[0])
    assert first["msg"] == "listening" and first["level"] == "info"
    assert first["collectors"] == "softirqs,interrupts,netdev,links,napi,kthreads,napi_poll,lxc"


def test_every_listen_address_serves():
    from tests.support.agent import free_port

    ports = [free_port(), free_port()]
    proc = subprocess.Popen([lxcwatch_binary(), *tree_args("virtio-live"),
                             *(f"--web.listen-address=127.0.0.1:{p}" for p in ports)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for port in ports:
            assert b"lxcwatch_build_info" in poll_metrics(proc, f"http://127.0.0.1:{port}/metrics")
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def poll_metrics(proc: subprocess.Popen, url: str, tries: int = 200) -> bytes:
    for _ in range(tries):
        try:
            status, _, body = get(url)
            assert status == 200
            return body
        except OSError:
            try:
                proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            raise AssertionError(f"agent exited: {proc.stderr.read()}") from None
    raise AssertionError(f"{url} never answered")
