"""--web.config.file read again under a running agent: a rotated certificate is served from the next handshake on,
basic auth users change without a restart, and a bad change keeps the config in force and says so."""

import base64
import os
import socket
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from agent import Agent, wait_until
from test_web_config import PASSWORD, hashed, issue, pki, tree_args, write_config  # noqa: F401 (fixtures)


def served_certificate(port: int, pki: Path) -> bytes:
    """The certificate the agent presents to a new connection (DER), verified against the test CA."""
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.getpeercert(binary_form=True)


def der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def rotate(directory: Path, pki: Path, name: str) -> None:
    """A new key and certificate from the test CA, renamed over server.key and server.crt as certbot and
    cert-manager replace them (the key first: for a moment the pair does not match)."""
    issue(pki, "ca", name, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    for suffix in ("key", "crt"):
        os.replace(pki / f"{name}.{suffix}", directory / f"server.{suffix}.new")
        os.replace(directory / f"server.{suffix}.new", directory / f"server.{suffix}")


@pytest.fixture
def tls_dir(pki, tmp_path) -> Path:
    """server.crt and server.key, the agent's own copies, with the web config naming them."""
    for suffix in ("crt", "key"):
        (tmp_path / f"server.{suffix}").write_bytes((pki / f"server.{suffix}").read_bytes())
    write_config(tmp_path, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
    return tmp_path


def reload_ok(agent: Agent) -> float | None:
    return agent.scrape().value("lxcwatch_web_config_last_reload_successful")


def test_a_rotated_certificate_is_served_without_a_restart(pki, tls_dir, tmp_path_factory):
    lxc = tmp_path_factory.mktemp("lxc")
    agent = Agent([f"--web.config.file={tls_dir / 'web.yml'}", *tree_args(lxc)],
                  ssl_context=ssl.create_default_context(cafile=str(pki / "ca.crt")))
    try:
        first = served_certificate(agent.port, pki)
        assert first == der(pki / "server.crt")
        pid = agent.proc.pid

        rotate(tls_dir, pki, "rotated")
        rotated = der(tls_dir / "server.crt")
        assert rotated != first
        assert served_certificate(agent.port, pki) == rotated  # the very next handshake, as with exporter-toolkit
        assert agent.proc.pid == pid and agent.proc.poll() is None
        agent.wait_for(lambda e: e.value("lxcwatch_web_config_last_reload_successful") == 1, "reload reported ok")
        assert "web config reloaded" in agent.output()

        # A broken certificate keeps the rotated one in force, and the agent says so.
        (tls_dir / "server.crt").write_text("not a certificate\n")
        agent.wait_for(lambda e: e.value("lxcwatch_web_config_last_reload_successful") == 0, "reload reported failed")
        assert served_certificate(agent.port, pki) == rotated
        assert "web config not reloaded" in agent.output() and "no PEM certificate" in agent.output()

        rotate(tls_dir, pki, "fixed")
        assert served_certificate(agent.port, pki) == der(tls_dir / "server.crt")
        agent.wait_for(lambda e: e.value("lxcwatch_web_config_last_reload_successful") == 1, "reload reported ok")
    finally:
        agent.stop()


def test_basic_auth_users_change_without_a_restart(tmp_path, hashed):  # noqa: F811 (the fixture)
    config = write_config(tmp_path, "basic_auth_users: {}\n")
    lxc = tmp_path / "lxc"
    lxc.mkdir()
    agent = Agent([f"--web.config.file={config}", *tree_args(lxc)])
    try:
        assert agent.scrape().find("lxcwatch_build_info")  # no users: no auth
        config.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")

        def refused() -> bool:
            try:
                agent.scrape_text()
            except urllib.error.HTTPError as e:
                return e.code == 401
            return False

        wait_until(refused, "a scrape without credentials to be refused")
        agent.headers = {"Authorization": "Basic " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()}
        assert agent.scrape().value("lxcwatch_web_config_last_reload_successful") == 1
    finally:
        agent.stop()


def test_turning_tls_on_needs_a_restart(tmp_path, pki):
    config = write_config(tmp_path, "basic_auth_users: {}\n")
    lxc = tmp_path / "lxc"
    lxc.mkdir()
    agent = Agent([f"--web.config.file={config}", *tree_args(lxc)])
    try:
        config.write_text(f"tls_server_config:\n  cert_file: {pki / 'server.crt'}\n  key_file: {pki / 'server.key'}\n")
        agent.wait_for(lambda e: e.value("lxcwatch_web_config_last_reload_successful") == 0, "reload reported failed")
        assert "TLS turned on; restart needed" in agent.output()
        with urllib.request.urlopen(agent.url, timeout=5) as response:  # still plain HTTP
            assert response.status == 200
    finally:
        agent.stop()
