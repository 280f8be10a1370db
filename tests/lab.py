"""The alerting lab (tests/test_lab.py): lxcwatch agents on replayed traces, Debian's Prometheus with the shipped
rules, Debian's Alertmanager with the shipped routing, and a webhook receiver standing in for the pager, all on
127.0.0.1 and all in one temporary directory.

Derived configs (written into the temporary directory, never into deploy/):
- the rules file with every group's `interval: 15s` turned into LAB_INTERVAL (the only change);
- the Alertmanager config with the two receivers' URLs pointed at the webhook (/pager, /ticket);
- a Prometheus config scraping every agent every LAB_INTERVAL as job "lxcwatch".
Every `for`, group_wait, group_interval and repeat_interval is the shipped one.

Replica groups named in `shipped_groups` are watched by a second stack instead, with nothing changed at all: the
rules as shipped, the 15 s scrape and evaluation interval of the monitoring playbook's prometheus.yml, and a
second Alertmanager whose receivers post to /shipped/pager and /shipped/ticket.
"""

import functools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import agent
import tracegen
from agent import Agent, free_port, lxcwatch_binary, stop_process

ROOT = Path(__file__).resolve().parent.parent
HOSTS = ROOT / "tests" / "fixtures" / "hosts"
RULES = ROOT / "deploy" / "prometheus" / "lxcwatch.rules.yml"
AM_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
PROMETHEUS_TEMPLATE = ROOT / "deploy" / "ansible" / "roles" / "lxcwatch" / "tasks" / "monitoring.yml"  # job, new file
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
SHIPPED_INTERVAL = 15.0  # scrape and evaluation interval the shipped rules and prometheus.yml say
LAB_INTERVAL = 1.0  # the main stack's scrape and evaluation interval
POLL = 0.2
PAGER_URL = "http://pager.example.internal/lxcwatch"
TICKET_URL = "http://tickets.example.internal/lxcwatch"


def unavailable() -> str:
    """Why the lab cannot run here, or ''."""
    missing = [p for p in (PROMETHEUS, ALERTMANAGER) if not os.access(p, os.X_OK)]
    if missing:
        return f"needs {' and '.join(missing)} (Debian: prometheus, prometheus-alertmanager)"
    return ""


wait_until = functools.partial(agent.wait_until, poll=POLL)  # Prometheus is asked less often than an agent


# --- the pager -------------------------------------------------------------------------------------------------


@dataclass
class Notification:
    receiver: str  # path of the POST: "pager" or "ticket"
    received: float  # time.time()
    payload: dict


class Webhook:
    """Records every POSTed Alertmanager notification."""

    def __init__(self):
        self.notifications: list[Notification] = []
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hook._lock:
                    hook.notifications.append(Notification(self.path.strip("/"), time.time(), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self, receiver: str, **group_labels: str) -> list[Notification]:
        with self._lock:
            return [n for n in self.notifications if n.receiver == receiver
                    and all(n.payload.get("groupLabels", {}).get(k) == v for k, v in group_labels.items())]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --- processes ------------------------------------------------------------------------------------------------


class Process:
    """A child process whose output goes to a log file in the lab directory."""

    def __init__(self, name: str, args: list[str], directory: Path):
        self.name = name
        self.log_path = directory / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115  (lives as long as the process)
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)

    def output(self, tail: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def wait_ready(self, url: str) -> None:
        """Until `url` (a /-/ready endpoint) answers 200; fails at once if the process exits."""
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False
        wait_until(ready, f"{self.name} to be ready", 30, diagnose=self.output)

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.proc, timeout)
        self._log.close()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


class Prometheus(Process):
    def __init__(self, directory: Path, targets: list[str], alertmanager: str, interval: float = LAB_INTERVAL,
                 name: str = "prometheus"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        rules = RULES.read_text()
        assert rules.count("interval: 15s") == 5, "the shipped 15 s rule groups are no longer five"
        assert PROMETHEUS_TEMPLATE.read_text().count("interval: 15s") == 3, \
            "the playbook's prometheus.yml no longer says 15 s for scrape and evaluation"
        rules_path = directory / f"{name}.rules.yml"
        rules_path.write_text(rules.replace("interval: 15s", f"interval: {interval:g}s"))
        config = {  # JSON is YAML
            "global": {"scrape_interval": f"{interval:g}s", "scrape_timeout": f"{min(interval, 10):g}s",
                       "evaluation_interval": f"{interval:g}s"},
            "rule_files": [str(rules_path)],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
            "scrape_configs": [{"job_name": "lxcwatch", "static_configs": [{"targets": targets}]}],
        }
        config_path = directory / f"{name}.yml"
        config_path.write_text(json.dumps(config, indent=1))
        super().__init__(name, [
            PROMETHEUS, f"--config.file={config_path}", f"--storage.tsdb.path={directory / name / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}"], directory)
        self.wait_ready(f"{self.url}/-/ready")

    def alerts(self) -> list[dict]:
        return get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return get_json(f"{self.url}/api/v1/query_range?" + urllib.parse.urlencode(params))["data"]["result"]

    def query(self, expr: str) -> list[dict]:
        return get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))["data"]["result"]


class Alertmanager(Process):
    def __init__(self, directory: Path, webhook: Webhook, name: str = "alertmanager", prefix: str = ""):
        """Its receivers post to the webhook's /{prefix}pager and /{prefix}ticket."""
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        config = AM_CONFIG.read_text()
        for url, path in ((PAGER_URL, "pager"), (TICKET_URL, "ticket")):
            assert config.count(url) == 1, f"{url} is not in {AM_CONFIG} exactly once"
            config = config.replace(url, f"http://127.0.0.1:{webhook.port}/{prefix}{path}")
        config_path = directory / f"{name}.yml"
        config_path.write_text(config)
        super().__init__(name, [
            ALERTMANAGER, f"--config.file={config_path}", f"--storage.path={directory / name}",
            f"--web.listen-address={self.address}", "--cluster.listen-address="], directory)
        self.wait_ready(f"http://{self.address}/-/ready")


# --- replicas -------------------------------------------------------------------------------------------------


@dataclass
class Replica:
    """One host: a generated trace replayed at speed 1 into a tree, a static fixture tree (`fixture`) or this
    machine's own kernel (`live`), and the agent reading it."""

    group: str
    name: str
    scenario: str = ""
    seed: int = 1
    seconds: int = 0
    fixture: str = ""  # a tree under tests/fixtures/hosts, read as it is (its LXC path included)
    live: bool = False  # /proc and /sys of this machine (kernel threads, netlink): what no tree has
    probes: str = ""  # a --probes.file for the agent; {alertmanager} is the lab Alertmanager's address
    heavy: list[float] = field(default_factory=list)  # t of the records labelled host-heavy
    started: float = 0.0  # time.time() at which the replay applied record t = 0 (within a poll)
    replay: Process | None = None
    agent: Agent | None = None

    @property
    def label(self) -> str:
        return f"{self.group}-{self.name}"

    def start_replay(self, directory: Path) -> None:
        if self.fixture or self.live:
            self.root = Path("/") if self.live else HOSTS / self.fixture
            return
        trace = directory / f"{self.label}.trace.gz"
        tracegen.write(str(trace), self.scenario, self.seed, self.seconds)
        _, records = tracegen.generate(self.scenario, self.seed, self.seconds)
        self.heavy = [r.t for r in records if r.label and r.label.get("host")]
        self.root = directory / self.label
        self.replay = Process(f"replay-{self.label}", [
            lxcwatch_binary(), "replay", str(trace), f"--out-root={self.root}", "--speed=1"], directory)

    def wait_tree(self) -> None:
        if self.replay:
            netdev = self.root / "proc" / "net" / "dev"
            wait_until(lambda: netdev.exists() or self.replay.proc.poll() is not None,
                       f"the replay of {self.label} to write its first record", 30, poll=0.02)
            assert self.replay.proc.poll() is None, self.replay.output()
        self.started = time.time()

    def start_agent(self, directory: Path, alertmanager: str) -> None:
        lxc = self.root / "var" / "lib" / "lxc"  # replayed trees have none: no containers
        if self.live:  # not this machine's containers: other tests' come and go
            lxc = directory / f"{self.label}-lxc"
            lxc.mkdir()
        args = [f"--path.procfs={self.root / 'proc'}", f"--path.sysfs={self.root / 'sys'}", f"--path.lxc={lxc}",
                f"--replica.group={self.group}", f"--replica.name={self.name}", "--sample.interval=1s"]
        if self.probes:
            probes = directory / f"{self.label}.probes"
            probes.write_text(self.probes.format(alertmanager=alertmanager))
            args += [f"--probes.file={probes}", "--probes.interval=1s"]
        self.agent = Agent(args)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.agent.port}"

    def heavy_span(self) -> tuple[float, float]:
        """(first, last) t labelled host-heavy; the labels must be one unbroken run."""
        assert self.heavy, f"{self.label}: no record is labelled heavy"
        assert len(self.heavy) == self.heavy[-1] - self.heavy[0] + 1, f"{self.label}: heavy labels are not contiguous"
        return self.heavy[0], self.heavy[-1]

    def stop(self) -> None:
        if self.agent:
            self.agent.stop()
        if self.replay:
            self.replay.stop()


# --- the whole lab --------------------------------------------------------------------------------------------


class Observer:
    """Polls Prometheus' /api/v1/alerts in a thread and keeps, per alert (name and labels), the first time it was
    seen in each state. A poll every 0.25 s cannot miss a state that lasts an evaluation (1 s); when polls fail for
    longer than that the observer was blind, and `matching` (and Lab.close) fail the test instead of reporting
    "not seen"."""

    POLL = 0.25
    BLIND = 1.0  # seconds without a successful poll that could hide an alert state

    def __init__(self, prometheus: Prometheus):
        self.prometheus = prometheus
        self.seen: dict[frozenset, dict[str, float]] = {}
        self.blind: list[str] = []  # each gap longer than BLIND, with the error that caused it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_ok = time.time()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.wait(self.POLL):
            try:
                alerts = self.prometheus.alerts()
            except Exception as e:  # a refused connection, a timeout, a half-written answer: all leave us blind
                gap = time.time() - self._last_ok
                if gap > self.BLIND:
                    with self._lock:
                        self.blind.append(f"no alerts read for {gap:.1f} s: {type(e).__name__}: {e}")
                    self._last_ok = time.time()  # one report per gap of BLIND seconds
                continue
            now = self._last_ok = time.time()
            with self._lock:
                for a in alerts:
                    self.seen.setdefault(frozenset(a["labels"].items()), {}).setdefault(a["state"], now)

    def check(self) -> None:
        with self._lock:
            if self.blind:
                raise AssertionError("the observer could not observe Prometheus' alerts: " + "; ".join(self.blind[:3]))

    def matching(self, **labels: str) -> dict[frozenset, dict[str, float]]:
        self.check()
        with self._lock:
            return {k: dict(v) for k, v in self.seen.items() if all((n, val) in k for n, val in labels.items())}

    def close(self):
        self._stop.set()
        self.thread.join(timeout=5)


class Lab:
    def __init__(self, replicas: list[Replica], shipped_groups: tuple[str, ...] = ()):
        self.directory = Path(tempfile.mkdtemp(prefix="lxcwatch-lab-"))
        self.replicas = replicas
        self.webhook = self.alertmanager = self.prometheus = self.observer = None
        self.shipped_alertmanager = self.shipped_prometheus = None
        try:
            self.webhook = Webhook()
            self.alertmanager = Alertmanager(self.directory, self.webhook)
            if shipped_groups:
                self.shipped_alertmanager = Alertmanager(self.directory, self.webhook, "alertmanager-shipped",
                                                         "shipped/")
            for r in replicas:
                r.start_replay(self.directory)
            for r in replicas:
                r.wait_tree()
            for r in replicas:
                r.start_agent(self.directory, self.alertmanager.address)
            self.prometheus = Prometheus(self.directory, [r.target for r in replicas if r.group not in shipped_groups],
                                         self.alertmanager.address)
            if shipped_groups:
                self.shipped_prometheus = Prometheus(
                    self.directory, [r.target for r in replicas if r.group in shipped_groups],
                    self.shipped_alertmanager.address, SHIPPED_INTERVAL, "prometheus-shipped")
            self.observer = Observer(self.prometheus)
        except BaseException:
            self.close()
            raise

    def replica(self, group: str, name: str) -> Replica:
        return next(r for r in self.replicas if (r.group, r.name) == (group, name))

    def diagnose(self) -> str:
        lines = ["notifications:"]
        lines += [f"  {n.receiver} {n.received:.1f} {json.dumps(n.payload)[:400]}" for n in self.webhook.notifications]
        lines.append("alerts seen by Prometheus:")
        lines += [f"  {dict(k)} {v}" for k, v in self.observer.seen.items()] if self.observer else []
        for p in (self.prometheus, self.alertmanager, self.shipped_prometheus, self.shipped_alertmanager):
            if p:
                lines.append(f"--- {p.name} log tail:\n{p.output(1500)}")
        return "\n".join(lines)

    def close(self) -> None:
        """Stops everything, removes the directory, then raises the first error met on the way."""
        errors = []
        for part in (self.observer, *self.replicas, self.prometheus, self.alertmanager, self.shipped_prometheus,
                     self.shipped_alertmanager, self.webhook):
            if part is None:
                continue
            try:
                part.close() if hasattr(part, "close") else part.stop()
            except (OSError, subprocess.SubprocessError) as e:  # keep stopping the rest
                errors.append(e)
        shutil.rmtree(self.directory, ignore_errors=True)
        if errors:
            raise errors[0]
        if self.observer:
            self.observer.check()
