"""node_exporter's habits on the real agent: help on every flag, --collector.disable-defaults,
--web.disable-exporter-metrics, --web.systemd-socket (systemd-socket-activate passes the socket the way systemd
does), q-values in Accept and Accept-Encoding, and lxcwatch_build_info's labels."""

import argparse
import gzip
import http.client
import importlib
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from agent import Agent, Exposition, free_port, lxcwatch_binary, stop_process, wait_until
from test_e2e_golden import HOSTS

from lxcwatch import cli
from lxcwatch.export import negotiation

REPO = Path(__file__).resolve().parent.parent
TREE = [f"--path.procfs={HOSTS / 'tg3-pair' / 'proc'}", f"--path.sysfs={HOSTS / 'tg3-pair' / 'sys'}",
        f"--path.lxc={HOSTS / 'tg3-pair' / 'var' / 'lib' / 'lxc'}", "--sample.interval=100ms"]


# --- help on every flag

def parsers() -> dict[str, argparse.ArgumentParser]:
    tools = {name: cli.tool_parser(name, importlib.import_module(module)) for name, module in cli.TOOLS.items()}
    return {"lxcwatch": cli.agent_parser(), "status": cli.status_parser(), **tools}


def without_help(parser: argparse.ArgumentParser) -> list[str]:
    return [action.option_strings[0] if action.option_strings else action.dest for action in parser._actions
            if not action.help or action.help == argparse.SUPPRESS]


@pytest.mark.parametrize("name", list(parsers()))
def test_every_flag_has_help(name):
    assert without_help(parsers()[name]) == []


def test_a_flag_without_help_is_found():
    parser = argparse.ArgumentParser()
    parser.add_argument("--with", help="documented")
    parser.add_argument("--without")
    assert without_help(parser) == ["--without"]


def test_the_readme_flags_table_names_real_flags_and_their_defaults():
    table = (REPO / "README.md").read_text().split("## Flags", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(--[a-z.-]+)` \| `([^`]*)` \|", table, re.M)  # rows of one flag and one default
    assert len(rows) >= 3, table
    actions = cli.agent_parser()._option_string_actions
    defaults = {"--web.listen-address": f":{cli.DEFAULT_PORT}"}  # a repeatable flag: its default is applied later
    for flag, default in rows:
        assert str(defaults.get(flag, actions[flag].default)) == default, flag
    for flag in re.findall(r"`(--[a-z.-]+)`", table):
        assert flag in actions, flag


def test_the_log_flags_say_their_choices():
    text = cli.agent_parser().format_help()
    for words in ("--log.level {debug,info,warn,error}", "--log.format {logfmt,json}", "--no-kernel.events"):
        assert words in text


# --- --collector.disable-defaults

@pytest.mark.parametrize("argv, collectors", [
    ([], ("softnet", "softirqs", "interrupts", "netdev", "links", "napi", "kthreads", "napi_poll", "lxc")),
    (["--no-collector.lxc", "--no-collector.napi_poll"],
     ("softnet", "softirqs", "interrupts", "netdev", "links", "napi", "kthreads")),
    (["--collector.disable-defaults"], ()),
    (["--collector.disable-defaults", "--collector.netdev", "--collector.links"], ("netdev", "links")),
    (["--collector.netdev", "--collector.disable-defaults"], ("netdev",)),  # the order of the flags is no matter
    (["--collector.disable-defaults", "--collector.netdev", "--no-collector.netdev"], ()),  # the last one wins
])
def test_disable_defaults_leaves_only_the_collectors_named(argv, collectors):
    assert cli.agent_settings(argv).collectors == collectors


def test_an_agent_with_defaults_disabled_samples_only_what_it_was_given():
    agent = Agent([*TREE, "--collector.disable-defaults", "--collector.netdev", "--collector.softnet"])
    try:
        seen = agent.wait_for(lambda e: e.value("lxcwatch_samples_total") >= 2, "two samples")
    finally:
        agent.stop()
    assert {s.labels["collector"] for s in seen.find("lxcwatch_scrape_collector_success")} == {"netdev", "softnet"}
    assert seen.find("lxcwatch_link_receive_packets_total") and not seen.find("lxcwatch_nic_interrupts_total")


# --- --web.disable-exporter-metrics

EXPORTER_FAMILIES = ("process_", "lxcwatch_http_")


def names(e: Exposition) -> set[str]:
    return {sample.name for sample in e.samples}


def test_disable_exporter_metrics_drops_the_process_and_http_families_only():
    agents = [Agent(TREE), Agent([*TREE, "--web.disable-exporter-metrics"])]
    try:
        full, bare = (a.wait_for(lambda e: e.value("lxcwatch_samples_total") >= 2, "two samples") for a in agents)
    finally:
        for a in agents:
            a.stop()
    dropped = {n for n in names(full) if n.startswith(EXPORTER_FAMILIES)}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "lxcwatch_http_requests_total",
            "lxcwatch_http_connections_open"} <= dropped
    assert names(bare) == names(full) - dropped
    assert bare.find("lxcwatch_build_info") and bare.find("lxcwatch_scrape_collector_success", collector="netdev")


# --- q-values: expected values from RFC 9110 and prometheus/common's expfmt.NegotiateIncludingOpenMetrics

PROMETHEUS_2 = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")  # Debian bookworm's Prometheus 2.42
PROMETHEUS_3 = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
                "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;"
                "q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1")


@pytest.mark.parametrize("accept, openmetrics", [
    ("", False),  # no Accept: the text format
    ("*/*", False),  # expfmt matches only the named types; the text format is its fallback
    ("application/openmetrics-text", True),
    ("application/openmetrics-text;version=0.0.1", True),
    ("application/openmetrics-text; version=1.0.0", True),
    ("application/openmetrics-text;version=2.0.0", False),  # a version expfmt does not serve
    ("application/openmetrics-text;q=0.1, text/plain;q=0.9", False),  # the higher quality wins
    ("text/plain;q=0.9, application/openmetrics-text", True),  # no q is q=1
    ("text/plain;version=0.0.4;q=0.5, application/openmetrics-text;q=0.5", False),  # a tie: the first named
    ("application/openmetrics-text;q=0", False),  # q=0: not acceptable (RFC 9110 12.4.2)
    ("application/openmetrics-text;q=0, text/plain", False),
    ("application/openmetrics-text;q=abc", False),  # a malformed quality is no preference
    ("Application/OpenMetrics-Text", True),  # media types are case-insensitive (RFC 9110 8.3.1)
    (PROMETHEUS_2, True),
    (PROMETHEUS_3, True),
    ("text/plain;version=0.0.4;q=0.5,*/*;q=0.1", False),  # scrape_protocols: [PrometheusText0.0.4]
])
def test_accept(accept, openmetrics):
    assert negotiation.wants_openmetrics(accept) is openmetrics


@pytest.mark.parametrize("accept_encoding, gzip_wanted", [
    ("", False),  # no header: identity
    ("gzip", True),  # what Prometheus sends
    ("GZIP", True),  # content codings are case-insensitive (RFC 9110 8.4.1)
    ("x-gzip", True),  # RFC 9110 8.4.1.3
    ("gzip;q=0", False),  # not acceptable (the substring match used to gzip it)
    ("gzip;q=0.5", True),  # identity, not named, is acceptable but not preferred
    ("deflate, br", False),
    ("nogzip", False),  # a substring is not a coding
    ("*", True),
    ("*;q=0", False),
    ("gzip;q=0, *", False),  # the coding's own element beats *
    ("identity", False),
    ("identity;q=1, gzip;q=0.5", False),  # identity preferred
    ("gzip, identity;q=0.5", True),
    ("identity;q=0, gzip", True),
    ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
    ("gzip;q=1.5", False),  # not a qvalue (RFC 9110 12.4.2): no preference
])
def test_accept_encoding(accept_encoding, gzip_wanted):
    assert negotiation.wants_gzip(accept_encoding) is gzip_wanted


def get(port: int, headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        assert response.status == 200
        return {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_the_agent_negotiates_with_q_values():
    agent = Agent(TREE)
    try:
        headers, body = get(agent.port, {"Accept": "application/openmetrics-text;q=0.1, text/plain;q=0.9",
                                         "Accept-Encoding": "gzip;q=0"})
        assert headers["content-type"].startswith("text/plain; version=0.0.4")
        assert "content-encoding" not in headers and b"lxcwatch_build_info" in body
        headers, body = get(agent.port, {"Accept": PROMETHEUS_2, "Accept-Encoding": "gzip"})
        assert headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
        assert headers["content-encoding"] == "gzip" and gzip.decompress(body).endswith(b"# EOF\n")
    finally:
        agent.stop()


# --- lxcwatch_build_info

def test_build_info_carries_version_revision_and_python():
    agent = Agent(TREE)
    try:
        (build,) = agent.scrape().find("lxcwatch_build_info")
    finally:
        agent.stop()
    # An editable install from a checkout: no lxcwatch/_revision.py, which only a wheel build writes.
    assert not (REPO / "lxcwatch" / "_revision.py").exists()
    assert build.labels == {"version": "0.1.0", "revision": "unknown", "pythonversion": platform.python_version()}


def wheel_revision(tmp_path: Path, env: dict[str, str]) -> str:
    """Build the wheel as `make dist` does, and import lxcwatch from it: its REVISION."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(REPO),
                    "-w", str(dist)], check=True, capture_output=True, timeout=300, env={**os.environ, **env},
                   cwd=REPO)
    (wheel,) = dist.glob("lxcwatch-*.whl")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp_path / "unpacked")
    out = subprocess.run([sys.executable, "-c", "import lxcwatch; print(lxcwatch.__file__, lxcwatch.REVISION)"],
                         cwd=tmp_path / "unpacked", capture_output=True, text=True, check=True, timeout=60)
    where, revision = out.stdout.split()
    assert where.startswith(str(tmp_path / "unpacked")), where  # the wheel's copy, not the checkout's
    return revision


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git (the revision comes from the checkout)")
def test_a_wheel_carries_the_commit_it_was_built_from(tmp_path):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert wheel_revision(tmp_path / "git", {}) == head.strip()
    assert wheel_revision(tmp_path / "env", {"LXCWATCH_REVISION": "0123abc"}) == "0123abc"


# --- --web.systemd-socket

@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None, reason="needs systemd-socket-activate (systemd)")
def test_systemd_socket_activation_serves_on_the_passed_socket():
    """systemd-socket-activate listens, waits for a connection, then execs the agent with LISTEN_FDS=1 and
    LISTEN_PID set to it, as systemd does for a .socket unit. A --web.listen-address is ignored, as by
    node_exporter (the role writes one), and said so."""
    port, unused = free_port(), free_port()
    proc = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}", lxcwatch_binary(),
                             "--web.systemd-socket", f"--web.listen-address=127.0.0.1:{unused}", *TREE],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "Listening on" in proc.stdout.readline().decode(), "systemd-socket-activate to listen")
        headers, body = get(port, {})  # this connection starts the agent, and waits in the socket's backlog
        assert b"lxcwatch_build_info" in body
    finally:
        stop_process(proc)
    log = proc.stdout.read().decode()
    assert f"msg=listening addresses=127.0.0.1:{port} " in log, log
    assert f'msg="--web.listen-address ignored: --web.systemd-socket serves on the sockets systemd passed" ' \
           f"ignored=127.0.0.1:{unused}" in log, log


@pytest.mark.parametrize("env", [{}, {"LISTEN_FDS": "1", "LISTEN_PID": "1"}], ids=["none", "another-process"])
def test_systemd_socket_without_a_socket_is_one_line(env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    out = subprocess.run([lxcwatch_binary(), "--web.systemd-socket", *TREE], env={**clean, **env},
                         capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stderr) == (1, "lxcwatch: error: --web.systemd-socket: systemd passed no socket (no "
                                               "$LISTEN_FDS for this process); start lxcwatch.socket, or listen with "
                                               "--web.listen-address\n")


def test_a_reload_applies_disable_exporter_metrics(tmp_path):
    from test_service import write_args

    flags = tmp_path / "lxcwatch"
    write_args(flags, "")
    agent = Agent([*TREE, f"--config.file={flags}"])
    try:
        assert agent.scrape().find("process_cpu_seconds_total")
        write_args(flags, "--web.disable-exporter-metrics")
        agent.proc.send_signal(signal.SIGHUP)
        bare = agent.wait_for(lambda e: not e.find("process_cpu_seconds_total"), "process_* to be left out")
        assert not bare.find("lxcwatch_http_requests_total")
        assert bare.value("lxcwatch_config_last_reload_successful") == 1
    finally:
        agent.stop()


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None, reason="needs systemd-socket-activate (systemd)")
def test_systemd_socket_refuses_a_unix_socket(tmp_path):
    path = tmp_path / "lxcwatch.sock"
    proc = subprocess.Popen(["systemd-socket-activate", "-l", str(path), lxcwatch_binary(), "--web.systemd-socket",
                             *TREE], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "Listening on" in proc.stdout.readline().decode(), "systemd-socket-activate to listen")
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))  # starts the agent
            assert proc.wait(timeout=60) == 1
    finally:
        stop_process(proc)
    assert "lxcwatch: error: --web.systemd-socket: descriptor 3 from systemd is not a listening TCP socket (want " \
           "ListenStream=PORT or ADDRESS:PORT in the .socket unit)\n" in proc.stdout.read().decode()
