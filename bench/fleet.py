"""Fleet scale of the shipped rules: synthetic history of N hosts in replica pairs, templated from real agents'
expositions, backfilled with promtool into a real Prometheus that scrapes the fleet on and evaluates the rules
(docs/fleet.md).

How it measures. Every rule input of every host is written at 15 s steps up to an end time E and imported with
`promtool tsdb create-blocks-from openmetrics`; just after E a Prometheus starts on those blocks with the rule files
and scrapes every host from a loopback server that answers with the host's exposition as at E. So at live time the
series go on, each [5m] or [1h] window the rules read is full, and the rule groups evaluate on their own schedule
exactly as on a server that has scraped this fleet for hours: group durations, missed iterations, per-rule times,
samples read and memory are measured there, and ALERTS is read at the end."""

import argparse
import gzip
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import threading
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "bench"), str(REPO)]  # the sibling generators, and the tests' agent runner
import synthetic_containers  # noqa: E402  (sibling modules)
import synthetic_host  # noqa: E402
import yaml  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tests.support.agent import Agent, free_port, stop_process  # noqa: E402

RULES = [REPO / "deploy" / "prometheus" / "lxcwatch.rules.yml"]
PROMETHEUS, PROMTOOL = "/usr/bin/prometheus", "/usr/bin/promtool"
STEP = 15  # seconds: the shipped scrape interval
JOB, PORT = "lxcwatch", 12243
CLUSTERS = ("east", "west")
PAGE = "LxcwatchReplicasNapiHeavy"
# A typical host (issue 14): 32 CPUs, 2 NICs x 8 queues, 100 containers (one veth each on four bridges).
CPUS, NICS, QUEUES, CONTAINERS = 32, 2, 8, 100
# Scenario of a pair, by its index within its cluster modulo SCENARIOS (so a 24-host fleet has each once).
TOGETHER, ONE, APART, SPLIT_NAME, KNOWN_BAD = range(5)
SCENARIOS = 50
HEAVY_NOW = (8 * 60, 0)  # heavy from 8 min before E to E
PARTIALS = r"\binstance(?:_device|_container)?:lxcwatch_[a-z_]+:[a-z0-9_]+"  # per-host partials (host tier)
MIN = 60
SLICE_SAMPLES = 20_000_000
IMPORT_RATE = 120_000  # samples/s through write_openmetrics + promtool, measured here at load 5 on 2 cores


# ---- the template: one real agent's exposition -----------------------------------------------------------------


def rule_inputs(rule_files: list[Path]) -> set[str]:
    """Names of the exported series the rules select (recorded series have colons, so they are left out)."""
    text = "\n".join(p.read_text() for p in rule_files)
    return set(re.findall(r"(?<![\w:])([a-z_][a-z0-9_]*)\{job=", text))


def template(workdir: Path, names: set[str]) -> list[tuple[str, dict, float]]:
    """The rule inputs of a typical host as the agent exports them: its links, CPUs and collectors from an agent on
    a synthetic host tree, its containers from an agent on a synthetic LXC tree (the two generators make separate
    trees). `up` is Prometheus' own and is added per host."""
    host, lxc = workdir / "host", workdir / "lxc"
    synthetic_host.build(str(host), CPUS, NICS, QUEUES, CONTAINERS)
    synthetic_containers.build(str(lxc), CONTAINERS)
    common = ["--replica.group=g", "--replica.name=a", "--no-recorder", "--no-kernel.events"]
    texts = {}
    for name, args in (("host", [f"--path.procfs={host}/proc", f"--path.sysfs={host}/sys", "--no-collector.lxc"]),
                       ("lxc", [f"--path.procfs={lxc}/proc", f"--path.sysfs={lxc}/sys", f"--path.lxc={lxc}/var/lib/lxc"])):
        agent = Agent(args + common)
        try:  # the first sample has no rates yet: the second one has every family
            agent.wait_for(lambda e: (e.value("lxcwatch_samples_total") or 0) >= 2, "two samples", 30)
            texts[name] = agent.scrape_text()
        finally:
            agent.stop()
    series = []
    for source, text in texts.items():
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                from_lxc = s.name.startswith("lxcwatch_container_") or s.labels.get("collector") == "lxc"
                if s.name in names and from_lxc == (source == "lxc"):
                    series.append((s.name, dict(s.labels), s.value))
    missing = names - {"up"} - {n for n, _, _ in series}
    if missing:
        raise RuntimeError(f"the agent exports no {', '.join(sorted(missing))}: not every rule input is templated")
    return series


# ---- the fleet --------------------------------------------------------------------------------------------------


@dataclass
class Host:
    cluster: str
    instance: str
    group: str = ""  # "" for a host in no replica group
    replica: str = ""
    heavy: list[tuple[int, int]] = field(default_factory=list)  # (from, to) in seconds before E, inclusive
    known_bad: bool = False  # eth1 is a promiscuous tg3 3.119 (the seed incident)


def plan(hosts: int) -> list[Host]:
    """`hosts` split over two clusters; per cluster 5 % (at least one) in no group, the rest in pairs named g00000,
    g00001, ... in both clusters. Scenarios by pair index: heavy together for the last 8 min (the only ones that
    page); one replica heavy; heavy at different times (a 9-5 min before E, b the last 3 min); same-named groups
    split over the clusters (east's a and west's b heavy); both replicas known-bad promiscuous. The first host in
    no group is heavy."""
    fleet = []
    for cluster in CLUSTERS:
        count = hosts // len(CLUSTERS)
        ungrouped = max(1, count // 20)
        pairs = (count - ungrouped) // 2
        for k in range(pairs):
            a, b = (Host(cluster, f"{cluster}-{k:05d}{r}:{PORT}", f"g{k:05d}", r) for r in "ab")
            scenario = k % SCENARIOS
            if scenario == TOGETHER:
                a.heavy = b.heavy = [HEAVY_NOW]
            elif scenario == ONE:
                a.heavy = [HEAVY_NOW]
            elif scenario == APART:
                a.heavy, b.heavy = [(9 * MIN, 5 * MIN)], [(3 * MIN, 0)]
            elif scenario == SPLIT_NAME:
                (a if cluster == "east" else b).heavy = [HEAVY_NOW]
            elif scenario == KNOWN_BAD:
                a.known_bad = b.known_bad = True
            fleet += [a, b]
        for u in range(count - 2 * pairs):
            fleet.append(Host(cluster, f"{cluster}-u{u:04d}:{PORT}", heavy=[HEAVY_NOW] if u == 0 else []))
    return fleet


def expected_pages(fleet: list[Host]) -> set[tuple[str, str]]:
    """(cluster, replica_group) of the pairs heavy together at E."""
    return {(h.cluster, h.group) for h in fleet if h.group and h.replica == "a" and h.heavy == [HEAVY_NOW]
            and any(o.cluster == h.cluster and o.group == h.group and o.replica == "b" and o.heavy == h.heavy
                    for o in fleet)}


def _labels(labels: dict) -> str:
    def quote(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return "{" + ",".join(f'{k}="{quote(v)}"' for k, v in labels.items()) + "}"


@dataclass
class HostLines:
    """One host's series as OpenMetrics line prefixes ("name{labels} value"): the constant ones, joined with the
    timestamp in one go per step, and the heavy gauge, whose value follows the host's windows."""

    static: list[str]  # series of the whole history (up, replica membership)
    recent: list[str]  # every other series, for the recent history only
    heavy: str
    windows: list[tuple[int, int]]
    target: dict  # the target labels a scrape adds
    exposition: bytes  # what the host answers a scrape after E: its series as at E, without the target labels
    slow: bytes = b""  # of a global tier's input: the partials the host tier records once a minute, scraped as often


def host_lines(host: Host, series: list[tuple[str, dict, float]]) -> HostLines:
    target = {"cluster": host.cluster, "instance": host.instance, "job": JOB}
    static, recent, heavy, scraped = [f"up{_labels(target)} 1"], [], "", []
    for name, labels, value in series:
        labels = dict(labels)
        if name == "lxcwatch_replica_info":
            if not host.group:
                continue
            labels.update(replica_group=host.group, replica=host.replica)
        if host.known_bad and labels.get("device") == "eth1":
            if name == "lxcwatch_link_info":
                labels.update(driver="tg3", driver_version="3.119")
            if name == "lxcwatch_link_promiscuous":
                value = 1
        prefix = f"{name}{_labels({**labels, **target})}"
        if name == "lxcwatch_host_napi_heavy":
            heavy = prefix
            value = 1 if any(hi == 0 for _, hi in host.heavy) else 0
            scraped.append(f"{name}{_labels(labels)} {value}\n")
            continue
        elif name == "lxcwatch_replica_info":
            static.append(f"{prefix} {value:g}")
        else:
            recent.append(f"{prefix} {value:g}")
        scraped.append(f"{name}{_labels(labels)} {value:g}\n")
    return HostLines(static, recent, heavy, host.heavy, target, "".join(scraped).encode())


class Agents:
    """The whole fleet's agents after E: one loopback HTTP server answering /metrics/INSTANCE with that host's
    exposition as at E, so the series go on at live time and every window the rules read stays full."""

    def __init__(self, fleet: list[HostLines], honor_labels: bool = False):
        pages = {f"/metrics/{h.target['instance']}": gzip.compress(h.exposition, 1) for h in fleet}
        pages |= {f"/slow/{h.target['instance']}": gzip.compress(h.slow, 1) for h in fleet if h.slow}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # Prometheus keeps one connection per target

            def do_GET(self):
                body = pages.get(self.path, b"")
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 4096  # a thousand targets connect at once when Prometheus starts
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a scrape Prometheus gave up on: counted in the report (failed scrapes)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

        def job(name: str, interval: str, path: str, hosts: list[HostLines]) -> dict:
            return {"job_name": name, "scrape_interval": interval, "honor_labels": honor_labels, "static_configs": [
                {"targets": [f"127.0.0.1:{self.port}"], "labels": {
                    "cluster": h.target["cluster"], "instance": h.target["instance"],
                    "__metrics_path__": f"/{path}/{h.target['instance']}"}} for h in hosts]}

        self.scrape_configs = [job(JOB, f"{STEP}s", "metrics", fleet)]
        if slow := [h for h in fleet if h.slow]:
            self.scrape_configs.append(job(f"{JOB}-slow", "1m", "slow", slow))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_openmetrics(path: Path, fleet: list[HostLines], end: int, first: int, last: int, recent_from: int) -> int:
    """Steps t = first, first + STEP, ... <= last (Unix seconds) of every host; returns the number of samples."""
    samples = 0
    with open(path, "w", buffering=16 << 20) as out:
        for t in range(first, last + 1, STEP):
            sep = f" {t}\n"
            for h in fleet:
                lines = h.static + h.recent if t >= recent_from else h.static
                if lines:
                    out.write(sep.join(lines) + sep)
                    samples += len(lines)
                if t >= recent_from and h.heavy:
                    before = end - t
                    value = 1 if any(lo >= before >= hi for lo, hi in h.windows) else 0
                    out.write(f"{h.heavy} {value}{sep}")
                    samples += 1
        out.write("# EOF\n")
    return samples


def backfill(fleet: list[HostLines], tsdb: Path, scratch: Path, end: int, history: int, recent: int,
             slice_seconds: int) -> tuple[int, int]:
    """History of `history` seconds up to `end` (the rule inputs read over an hour: up and replica_info) and of
    `recent` seconds (every other input), imported slice by slice: disjoint time ranges give disjoint blocks, which
    no compaction merges while the rules are measured. Returns the samples and promtool's peak RSS in KiB."""
    first, recent_from, samples, rss = end - history, end - recent, 0, 0
    bounds = sorted({first, *range(recent_from, end + STEP, slice_seconds), end + STEP})
    for lo, hi in zip(bounds, bounds[1:]):
        text = scratch / "slice.om"
        samples += write_openmetrics(text, fleet, end, lo, hi - 1, recent_from)
        promtool = subprocess.Popen([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(text), str(tsdb)],
                                    stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(promtool.pid, 0)
        promtool.returncode = os.waitstatus_to_exitcode(status)
        if promtool.returncode:
            raise RuntimeError(f"promtool failed on {text} ({promtool.returncode})")
        rss = max(rss, usage.ru_maxrss)
        text.unlink()
    return samples, rss


# ---- Prometheus -------------------------------------------------------------------------------------------------


def get(url: str, timeout: float = 300) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def metrics(url: str) -> dict[tuple[str, str], float]:
    """(name, rule_group) -> value of Prometheus' own rule-group and process figures."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("prometheus_rule_group_") or s.name == "process_resident_memory_bytes":
                out[(s.name, s.labels.get("rule_group", "").rpartition(";")[2])] = s.value
    return out


class Server:
    """Debian's Prometheus on the backfilled TSDB with the rule files, scraping the fleet, on a free loopback port."""

    def __init__(self, workdir: Path, tsdb: Path, rule_files: list[Path], scrape_configs: list[dict]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(json.dumps({"global": {"evaluation_interval": f"{STEP}s"},
                                      "rule_files": [str(p) for p in rule_files], "scrape_configs": scrape_configs}))
        self.log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115  (lives as long as the process)
        self.proc = subprocess.Popen([
            PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tsdb}", "--storage.tsdb.retention.time=1y",
            "--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=2h",  # no compaction
            f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not start:\n{(workdir / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.5)

    def query(self, expr: str, at: float, stats: bool = False) -> dict:
        params = {"query": expr, "time": f"{at:.3f}", **({"stats": "all"} if stats else {})}
        return get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode(params))["data"]

    def stop(self) -> None:
        stop_process(self.proc, 30)
        self.log.close()


@dataclass
class Measurement:
    hosts: int
    series: int  # input series written
    samples: int
    generate_seconds: float
    groups: dict = field(default_factory=dict)  # group -> {"durations": [...], "iterations", "missed"}
    rules: dict = field(default_factory=dict)  # (group, rule) -> [evaluation seconds seen]
    rss_max: float = 0.0
    load: list[tuple[float, float, float]] = field(default_factory=list)
    pages: set = field(default_factory=set)
    expected: set = field(default_factory=set)
    samples_read: dict = field(default_factory=dict)  # (group, rule) -> totalQueryableSamples
    late_start: float = 0.0  # seconds Prometheus' first evaluation came after E
    promtool_rss: float = 0.0
    rule_files: list = field(default_factory=list)
    failed_scrapes: int = 0  # targets with at least one failed scrape during the measurement


def observe(server: Server, m: Measurement, end: int, seconds: float, poll: float = 5.0) -> None:
    """Rule-group and per-rule figures every `poll` seconds while the rules evaluate."""
    start = metrics(server.url)
    seen_at: dict[str, float] = {}
    stop_at = time.time() + seconds
    while time.time() < stop_at:
        time.sleep(poll)
        now = metrics(server.url)
        m.rss_max = max(m.rss_max, now.get(("process_resident_memory_bytes", ""), 0.0))
        for group in get(f"{server.url}/api/v1/rules")["data"]["groups"]:
            g = m.groups.setdefault(group["name"], {"durations": []})
            if group["lastEvaluation"] != seen_at.get(group["name"]) and not group["lastEvaluation"].startswith("0001"):
                seen_at[group["name"]] = group["lastEvaluation"]
                g["durations"].append(group["evaluationTime"])
                for rule in group["rules"]:
                    m.rules.setdefault((group["name"], rule["name"]), []).append(rule["evaluationTime"])
        m.load.append(os.getloadavg())
    final = metrics(server.url)
    for name, g in m.groups.items():
        g["iterations"] = final.get(("prometheus_rule_group_iterations_total", name), 0) - start.get(
            ("prometheus_rule_group_iterations_total", name), 0)
        g["missed"] = final.get(("prometheus_rule_group_iterations_missed_total", name), 0)
        g["missed_total"] = g["missed"]


def samples_read(server: Server, m: Measurement, rule_files: list[Path], at: float) -> None:
    """Samples each rule's expression reads at one evaluation (Prometheus' query statistics)."""
    for path in rule_files:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                name = rule.get("record") or rule.get("alert")
                try:
                    data = server.query(rule["expr"], at, stats=True)
                except OSError as e:  # a timeout under load: that rule's figure is missing, not the others'
                    progress(f"samples read by {name}: {e}")
                    continue
                m.samples_read[(group["name"], name)] = data.get("stats", {}).get("samples", {}).get(
                    "totalQueryableSamples", 0)


@contextlib.contextmanager
def serving(lines: list[HostLines], history: int, recent: int, workdir: Path, rule_files: list[Path],
            honor_labels: bool = False):
    """The fleet's history backfilled up to E, then Prometheus with the rule files scraping it on from E: yields
    (server, end, samples, seconds the backfill took, promtool's peak RSS in bytes)."""
    per_host = len(lines[0].static) + len(lines[0].recent) + 1
    slice_seconds = max(1, SLICE_SAMPLES // (per_host * len(lines))) * STEP  # text files of ~3 GB
    tsdb, scratch = workdir / "tsdb", workdir / "scratch"
    scratch.mkdir()
    # E is set ahead by the time the backfill should take at IMPORT_RATE; if it ends early, Prometheus waits for E.
    expected = len(lines) * ((per_host - len(lines[0].static)) * (recent // STEP + 1)
                             + len(lines[0].static) * (history // STEP + 1))
    end = int(time.time() + expected / IMPORT_RATE + 20) // STEP * STEP
    progress(f"{len(lines)} hosts, {per_host} input series each; history ends at E = now + {end - time.time():.0f} s")
    started = time.monotonic()
    samples, rss = backfill(lines, tsdb, scratch, end, history, recent, slice_seconds)
    took = time.monotonic() - started
    progress(f"backfilled {samples:,} samples in {took:.0f} s")
    if time.time() < end:
        time.sleep(end - time.time())  # Prometheus rejects rule results older than the newest block
    agents = Agents(lines, honor_labels)
    server = Server(workdir, tsdb, rule_files, agents.scrape_configs)
    try:
        yield server, end, samples, took, rss * 1024
    finally:
        server.stop()
        agents.close()


def wait_evaluations(server: Server, count: int, timeout: float = 300) -> None:
    """Until every rule group has evaluated `count` times (a 1 m group takes up to `count` minutes)."""
    deadline = time.monotonic() + timeout
    while True:
        done = metrics(server.url)
        groups = [v for (name, _), v in done.items() if name == "prometheus_rule_group_iterations_total"]
        if groups and min(groups) >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"rule groups did not evaluate {count} times in {timeout:.0f} s")
        time.sleep(5)


def copy_rules(rule_files: list[Path], workdir: Path) -> list[Path]:
    """The rule files as they are now (a checkout may change while this runs)."""
    copies = workdir / "rules"
    copies.mkdir(exist_ok=True)
    return [Path(shutil.copy(p, copies / f"{len(list(copies.iterdir()))}-{p.name}")) for p in rule_files]


def kind(host: Host) -> tuple[bool, bool, bool]:
    return bool(host.group), any(hi == 0 for _, hi in host.heavy), host.known_bad


def partials(workdir: Path, host_rules: list[Path], series: list[tuple[str, dict, float]], read: set[str]) -> dict:
    """kind(host) -> the partials the host tier records for such a host (name, labels without the host's and group's,
    value) of the names in `read`: what the global tier reads of a shard's output, from a Prometheus evaluating the
    host tier on 24 templated hosts."""
    small = plan(24)
    by_instance = {h.instance: h for h in small}
    work = workdir / "host-tier"
    work.mkdir()
    rules = copy_rules(host_rules, work)
    with serving([host_lines(h, series) for h in small], 70 * MIN, 10 * MIN, work, rules) as (server, *_):
        wait_evaluations(server, 2)
        found = server.query(f'{{__name__=~"{"|".join(sorted(read))}"}}', time.time())["result"]
    kinds: dict[tuple, list] = {}
    for r in found:
        labels = dict(r["metric"])
        name, host = labels.pop("__name__"), by_instance[labels.pop("instance")]
        for label in ("cluster", "job"):
            labels.pop(label)
        kinds.setdefault((kind(host), host.instance), []).append((name, labels, float(r["value"][1])))
    out = {}
    for (k, _), rows in sorted(kinds.items()):
        out.setdefault(k, rows)  # one representative host per kind
    return out


def partial_lines(host: Host, kinds: dict, slow: set[str]) -> HostLines:
    """A host's input to the global tier; the partials named in `slow` come once a minute after E, as the host tier
    records them (remote write sends each recorded sample once)."""
    target = {"cluster": host.cluster, "instance": host.instance, "job": JOB}
    lines, scraped = [], {True: [], False: []}
    for name, labels, value in kinds.get(kind(host), []):
        labels = {**labels, **target}
        if "replica_group" in labels:
            labels.update(replica_group=host.group, replica=host.replica)
        lines.append(f"{name}{_labels(labels)} {value:g}")
        scraped[name in slow].append(lines[-1] + "\n")
    return HostLines([], lines, "", host.heavy, target, "".join(scraped[False]).encode(), "".join(scraped[True]).encode())


def slow_records(rule_files: list[Path]) -> set[str]:
    """Series recorded by rule groups evaluated less often than every scrape."""
    return {r["record"] for p in rule_files for g in yaml.safe_load(p.read_text())["groups"]
            if g.get("interval", f"{STEP}s") != f"{STEP}s" for r in g["rules"] if "record" in r}


def run(hosts: int, history: int, recent: int, seconds: float, workdir: Path, rule_files: list[Path],
        read_stats: bool = True, global_tier_of: list[Path] | None = None) -> Measurement:
    """With `global_tier_of` (the host tier's rule files), `rule_files` is a global tier: its inputs are the partials
    that host tier records and the agent series it reads itself (the page's), templated per host from a real
    evaluation of the host tier (`partials`)."""
    names = [str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p) for p in rule_files]
    rule_files = copy_rules(rule_files, workdir)
    series = template(workdir, rule_inputs(global_tier_of or rule_files))
    fleet = plan(hosts)
    if global_tier_of:
        read = set(re.findall(PARTIALS, "\n".join(p.read_text() for p in rule_files))) | rule_inputs(rule_files)
        kinds = partials(workdir, global_tier_of, series, read)
        slow = slow_records(global_tier_of)
        lines = [partial_lines(h, kinds, slow) for h in fleet]
        history = recent  # the global tier reads no window
    else:
        lines = [host_lines(h, series) for h in fleet]
    with serving(lines, history, recent, workdir, rule_files, honor_labels=bool(global_tier_of)) as (
            server, end, samples, took, rss):
        m = Measurement(hosts, sum(len(h.static) + len(h.recent) + bool(h.heavy) for h in lines), samples, took,
                        expected=expected_pages(fleet), promtool_rss=rss, rule_files=names)
        m.late_start = time.time() - end
        observe(server, m, end, seconds)
        result = server.query(f'ALERTS{{alertname="{PAGE}", alertstate="firing"}}', time.time())["result"]
        m.pages = {(r["metric"].get("cluster", ""), r["metric"]["replica_group"]) for r in result}
        failed = server.query(f"count(min_over_time(up[{int(seconds)}s]) == 0)", time.time())["result"]
        m.failed_scrapes = int(failed[0]["value"][1]) if failed else 0
        if read_stats:
            samples_read(server, m, rule_files, time.time())
    return m


# ---- report -----------------------------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} fleet: {message}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    s = sorted(values)
    return s[len(s) // 2] if s else math.nan


def render(m: Measurement) -> str:
    loads = " ".join(f"{lo[0]:.2f}" for lo in m.load[:: max(1, len(m.load) // 6)])
    lines = [f"### {m.hosts:,} hosts: {', '.join(m.rule_files)}", "",
             f"{m.series:,} input series, {m.samples:,} samples backfilled in {m.generate_seconds:.0f} s; "
             f"(promtool peak RSS {m.promtool_rss / 2**20:,.0f} MiB); first evaluation {m.late_start:.0f} s after E; "
             f"Prometheus peak RSS {m.rss_max / 2**20:,.0f} MiB; targets with a failed scrape: {m.failed_scrapes}; "
             f"load (1 min) during the measurement: {loads}", "",
             "| rule group | evaluations | missed | duration median | duration max |", "|---|---|---|---|---|"]
    for name, g in m.groups.items():
        lines.append(f"| {name} | {len(g['durations'])} | {g.get('missed', 0):.0f} | {median(g['durations']):.2f} s "
                     f"| {max(g['durations'], default=math.nan):.2f} s |")
    lines += ["", "| rule | median | max | samples read |", "|---|---|---|---|"]
    total = sum(m.samples_read.values()) or 1
    for (group, rule), times in sorted(m.rules.items(), key=lambda kv: -median(kv[1])):
        read = m.samples_read.get((group, rule))
        share = f"{read:,} ({100 * read / total:.0f} %)" if read is not None else "-"
        lines.append(f"| {group} / {rule} | {median(times):.3f} s | {max(times):.3f} s | {share} |")
    verdict = "exactly the expected groups" if m.pages == m.expected else (
        f"WRONG: missing {sorted(m.expected - m.pages)}, extra {sorted(m.pages - m.expected)}")
    lines += ["", f"{PAGE} firing for {len(m.pages)} groups: {verdict} "
                  f"({', '.join(f'{c}/{g}' for c, g in sorted(m.pages))})"]
    return "\n".join(lines)


def parse_duration(text: str) -> int:
    unit = {"s": 1, "m": 60, "h": 3600}[text[-1]]
    return int(float(text[:-1]) * unit)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, nargs="+", default=[1000])
    parser.add_argument("--history", default="2h", help="history of up and replica_info (read over 1 h windows)")
    parser.add_argument("--recent", default="10m", help="history of every other input (read over 5 min at most)")
    parser.add_argument("--seconds", type=float, default=300, help="evaluation time measured")
    parser.add_argument("--rules", type=Path, nargs="+", default=RULES)
    parser.add_argument("--global-tier-of", type=Path, nargs="+", default=None, metavar="HOST_RULES",
                        help="--rules is a global tier: feed it the partials these host-tier rules record")
    parser.add_argument("--tmpdir", default=None, help="where the TSDB and the text slices go")
    parser.add_argument("--no-samples-read", action="store_true", help="skip the per-rule query statistics")
    args = parser.parse_args(argv)
    for path in args.rules + (args.global_tier_of or []):
        if not path.is_file():
            parser.error(f"no rule file {path}")
    return args


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # finally: stop, clean up
    args = parse_args(argv)
    for hosts in args.hosts:
        workdir = Path(tempfile.mkdtemp(prefix="lxcwatch-fleet-", dir=args.tmpdir))
        try:
            m = run(hosts, parse_duration(args.history), parse_duration(args.recent), args.seconds, workdir,
                    [p.resolve() for p in args.rules],
                    not args.no_samples_read,
                    global_tier_of=[p.resolve() for p in args.global_tier_of] if args.global_tier_of else None)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(render(m) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
