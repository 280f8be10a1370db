"""Debian's Prometheus scrapes the agent over TLS with basic auth, as tests/e2e/test_web_config.py configures it."""

import json
import shutil
import urllib.parse
from pathlib import Path

import pytest

from tests.support.agent import Agent, free_port
from tests.support.lab import PROMETHEUS, Process, get_json, wait_until
from tests.e2e.test_web_config import PASSWORD, client_context, hashed, pki, tree_args, write_config  # noqa: F401 (fixtures)


class Scraper(Process):
    """Debian's Prometheus scraping one agent as two jobs: the right password and a wrong one."""

    def __init__(self, directory: Path, target: str, pki: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        tls = {"ca_file": str(pki / "ca.crt"), "cert_file": str(pki / "client.crt"), "key_file": str(pki / "client.key")}
        jobs = [{"job_name": job, "scheme": "https", "tls_config": tls,
                 "basic_auth": {"username": "alice", "password": password}, "static_configs": [{"targets": [target]}]}
                for job, password in (("right", PASSWORD), ("wrong", "not " + PASSWORD))]
        config = directory / "prometheus.yml"
        config.write_text(json.dumps({"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                                      "scrape_configs": jobs}))
        super().__init__("prometheus", [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={directory / 'tsdb'}",
                                        f"--web.listen-address=127.0.0.1:{self.port}"], directory)

    def up(self) -> dict[str, float]:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.output()}")
        try:
            result = get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": "up"}))["data"]["result"]
        except OSError:
            return {}
        return {r["metric"]["job"]: float(r["value"][1]) for r in result}

    def targets(self) -> str:
        try:
            return json.dumps([(t["labels"]["job"], t["health"], t["lastError"])
                               for t in get_json(f"{self.url}/api/v1/targets")["data"]["activeTargets"]])
        except OSError as e:
            return str(e)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which(PROMETHEUS), reason="needs Debian's prometheus")
def test_prometheus_scrapes_over_tls_with_basic_auth(pki, tmp_path, hashed):
    config = write_config(tmp_path, f"tls_server_config:\n  cert_file: {pki / 'server.crt'}\n"
                                    f"  key_file: {pki / 'server.key'}\n  client_auth_type: RequireAndVerifyClientCert\n"
                                    f"  client_ca_file: {pki / 'ca.crt'}\nbasic_auth_users:\n  alice: '{hashed}'\n")
    agent = Agent([f"--web.config.file={config}", *tree_args(tmp_path)], ssl_context=client_context(pki),
                  auth=("alice", PASSWORD))
    prometheus = Scraper(tmp_path, f"127.0.0.1:{agent.port}", pki)
    try:
        up = wait_until(lambda: len(prometheus.up()) == 2 and prometheus.up(), "both jobs to be scraped", 60,
                        diagnose=lambda: prometheus.targets() + "\n" + prometheus.output())
        assert up == {"right": 1.0, "wrong": 0.0}, prometheus.targets()
        assert "401" in prometheus.targets()
        # lxcwatch's own series came through the authenticated scrape
        found = get_json(f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode(
            {"query": 'lxcwatch_link_info{job="right",device="eth0"}'}))["data"]["result"]
        assert len(found) == 1
    finally:
        prometheus.stop()
        agent.stop()
