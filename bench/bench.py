"""Benchmark lxcwatch against prometheus-node-exporter on one synthetic 128-CPU, 1000-veth host tree."""

import argparse
import contextlib
import datetime
import http.client
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import synthetic_host  # noqa: E402  (sibling module, also usable on its own)

REPO = Path(__file__).resolve().parent.parent
RESULT = REPO / "bench" / "out" / "result.md"
DOCS = REPO / "docs" / "performance.md"
DOCS_START, DOCS_END = "<!-- bench:figures:start -->", "<!-- bench:figures:end -->"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
# What Prometheus 2.x sends on every scrape.
SCRAPE_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
              "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}
READY_TIMEOUT = 120.0
SCRAPE_TIMEOUT = 60.0
# Issue 16's targets on this tree (docs/performance.md says where they come from).
TARGET_SAMPLE, TARGET_SCRAPE, TARGET_RATIO, TARGET_P99, TARGET_RSS = 0.015, 0.005, 0.3, 0.025, 60 * 2**20


@dataclass
class Result:
    """What one exporter cost on the tree; CPU in seconds, latency in seconds, memory in bytes."""

    name: str
    version: str = ""
    sample_rounds: list[float] = field(default_factory=list)  # lxcwatch only: CPU per sample, nobody scraping
    scrape_rounds: list[float] = field(default_factory=list)  # scrapes paced at the sample interval, sampling removed
    latencies: list[float] = field(default_factory=list)
    rss_warm: int = 0
    rss_end: int = 0
    rss_peak: int = 0
    series: int = 0
    body_bytes: int = 0
    gzip_bytes: int = 0
    devices: int = 0  # distinct device labels seen (sanity check that the tree was read)
    concurrent: dict = field(default_factory=dict)  # lxcwatch only: "wrk" / "threads" (back to back), "paced"

    @property
    def cpu_per_sample(self) -> float | None:
        return statistics.median(self.sample_rounds) if self.sample_rounds else None

    @property
    def cpu_per_scrape(self) -> float | None:
        return statistics.median(self.scrape_rounds) if self.scrape_rounds else None

    @property
    def cpu_per_cycle(self) -> float:
        """lxcwatch: one sample plus one scrape; node_exporter: one scrape (it samples at scrape time)."""
        return (self.cpu_per_sample or 0.0) + (self.cpu_per_scrape or 0.0)


# ---- processes and probes -------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    progress("$ " + shlex.join(cmd))
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def stop(proc: subprocess.Popen | None) -> None:
    """SIGTERM, then SIGKILL after 10 s; only the process this script started."""
    if proc is None or proc.poll() is not None:
        return
    progress(f"stopping {proc.args[0]} (pid {proc.pid})")
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass
class Concurrent:
    """Scrapers at once, each on its own kept-alive connection: what they saw (seconds), and whether sampling kept
    up."""

    scrapers: int
    seconds: float
    client: str  # what made the load
    scrapes: int = 0
    p50: float = 0.0
    p99: float = 0.0
    max: float = 0.0
    errors: int = 0
    samples: float = 0.0
    overruns: float = 0.0


_connections = threading.local()  # per thread: "host:port" -> HTTPConnection, reused as Prometheus does


def scrape(url: str, gzip: bool = True) -> tuple[float, bytes]:
    """One scrape as Prometheus does it, on this thread's kept-alive connection to the exporter; returns (wall
    seconds, body as sent)."""
    headers = SCRAPE_HEADERS if gzip else {"Accept": "text/plain;version=0.0.4"}
    parts = urllib.parse.urlsplit(url)
    connections = _connections.__dict__.setdefault("by_host", {})
    conn = connections.get(parts.netloc)
    if conn is None:
        conn = connections[parts.netloc] = http.client.HTTPConnection(parts.hostname, parts.port, timeout=SCRAPE_TIMEOUT)
    t0 = time.perf_counter()
    try:
        conn.request("GET", parts.path, headers=headers)
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException):
        conn.close()
        del connections[parts.netloc]
        raise
    elapsed = time.perf_counter() - t0
    if response.will_close:
        conn.close()
        del connections[parts.netloc]
    if response.status != 200:
        raise RuntimeError(f"{url}: HTTP {response.status}")
    return elapsed, body


def hang_up(url: str) -> None:
    """Close this thread's kept-alive connection to the exporter at `url`, if it has one."""
    conn = _connections.__dict__.get("by_host", {}).pop(urllib.parse.urlsplit(url).netloc, None)
    if conn is not None:
        conn.close()


def wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{tail(log)}")
        try:
            scrape(url, gzip=False)
            return
        except (OSError, http.client.HTTPException, RuntimeError):
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {READY_TIMEOUT:.0f} s:\n{tail(log)}")


def tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the whole process (all its threads), not of its children."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def rss(pid: int) -> int:
    """Resident set size in bytes (VmRSS)."""
    return psutil.Process(pid).memory_info().rss


def peak_rss(pid: int) -> int:
    """Peak resident set size in bytes: VmHWM of /proc/PID/status (psutil has no peak RSS on Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def counter(url: str, name: str) -> float | None:
    """The value of an unlabelled sample in a plain-text scrape, None when absent."""
    text = scrape(url, gzip=False)[1].decode()
    match = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def describe_exposition(result: Result, url: str, device_metric: str) -> None:
    """Series count and sizes of one plain and one gzip scrape, and the device labels of one metric."""
    body = scrape(url, gzip=False)[1].decode()
    result.body_bytes = len(body.encode())
    result.gzip_bytes = len(scrape(url)[1])
    result.series = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
    pattern = re.compile(rf'^{device_metric}{{[^}}]*device="([^"]+)"', re.MULTILINE)
    result.devices = len(set(pattern.findall(body)))


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# ---- measurement windows ----------------------------------------------------------------------------------


def paced_scrapes(url: str, count: int, interval: float) -> None:
    """`count` scrapes, one per `interval`, the way Prometheus paces them."""
    start_time = time.monotonic()
    for i in range(count):
        scrape(url)
        time.sleep(max(0.0, start_time + (i + 1) * interval - time.monotonic()))


def burst(url: str, count: int) -> list[float]:
    """`count` back-to-back scrapes; returns their wall times."""
    return [scrape(url)[0] for _ in range(count)]


def concurrent_scrapes(url: str, scrapers: int, seconds: float, interval: float | None) -> Concurrent:
    """`scrapers` threads of this process scraping for `seconds`, back to back (interval None) or each once per
    `interval` from a random phase, as that many Prometheus servers would; samples and overruns the agent counted
    meanwhile."""
    result, stop = Concurrent(scrapers, seconds, f"{scrapers} Python threads"), threading.Event()
    latencies: list[float] = []
    errors: list[str] = []
    before = agent_counters(url)

    def scraper(phase: float) -> None:
        next_at = time.monotonic() + phase
        while not stop.wait(max(0.0, next_at - time.monotonic()) if interval else 0):
            try:
                latencies.append(scrape(url)[0])  # list.append: atomic under the GIL
            except (OSError, http.client.HTTPException, RuntimeError) as e:
                errors.append(f"{type(e).__name__}: {e}")
            next_at += interval or 0

    threads = [threading.Thread(target=scraper, args=((interval or 0) * synthetic_host.num("phase", i, hi=1000) / 1000,),
                                daemon=True) for i in range(scrapers)]
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(SCRAPE_TIMEOUT)
    if latencies:
        result.scrapes, result.max = len(latencies), max(latencies)
        result.p50, result.p99 = percentile(latencies, 50), percentile(latencies, 99)
    result.errors = len(errors)
    result.samples, result.overruns = (a - b for a, b in zip(agent_counters(url), before))
    return result


# wrk's Lua: Prometheus' headers, and the figures on one line at the end (latencies in microseconds)
WRK_SCRIPT = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in SCRAPE_HEADERS.items()) + """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("wrk-figures %d %d %d %d %d\\n", summary.requests, latency:percentile(50),
                         latency:percentile(99), latency.max, e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def wrk_scrapes(url: str, scrapers: int, seconds: float, workdir: Path) -> Concurrent:
    """`scrapers` connections scraping back to back from wrk, a load generator in C: one thread and an event loop,
    so that what is measured is the agent, not 50 Python threads waiting for their own interpreter's lock."""
    script = workdir / "scrape.lua"
    script.write_text(WRK_SCRIPT)
    before = agent_counters(url)
    out = subprocess.run(["wrk", "-t1", f"-c{scrapers}", f"-d{seconds:g}s", f"--timeout={SCRAPE_TIMEOUT:g}s",
                          "-s", str(script), url], capture_output=True, text=True, timeout=seconds + SCRAPE_TIMEOUT)
    figures = re.search(r"^wrk-figures (\d+) (\d+) (\d+) (\d+) (\d+)$", out.stdout, re.M)
    if out.returncode != 0 or figures is None:
        raise RuntimeError(f"wrk failed (exit {out.returncode}): {(out.stderr or out.stdout).strip()[-500:]}")
    requests, p50, p99, slowest, errors = map(int, figures.groups())
    result = Concurrent(scrapers, seconds, "wrk (C, one thread)", requests, p50 / 1e6, p99 / 1e6, slowest / 1e6, errors)
    result.samples, result.overruns = (a - b for a, b in zip(agent_counters(url), before))
    return result


def agent_counters(url: str) -> tuple[float, float]:
    return counter(url, "lxcwatch_samples_total") or 0.0, counter(url, "lxcwatch_sample_overruns_total") or 0.0


def cpu_over(pid: int, action: Callable[[], object]) -> float:
    """CPU seconds the process spent while `action` ran."""
    before = cpu_seconds(pid)
    action()
    return cpu_seconds(pid) - before


def sampled_cpu(url: str, pid: int, interval: float, action: Callable[[], object]) -> tuple[float, float]:
    """(CPU seconds, samples taken) while `action` ran; samples from lxcwatch_samples_total, read outside
    the CPU window, or from the elapsed time when the agent does not export it."""
    s0, t0 = counter(url, "lxcwatch_samples_total"), time.monotonic()
    cpu = cpu_over(pid, action)
    elapsed, s1 = time.monotonic() - t0, counter(url, "lxcwatch_samples_total")
    samples = s1 - s0 if s0 is not None and s1 is not None and s1 > s0 else elapsed / interval
    return cpu, samples


@dataclass
class Running:
    """An exporter started on the tree, warmed up, and what was measured of it so far."""

    result: Result
    proc: subprocess.Popen
    url: str


@contextlib.contextmanager
def running(name: str, cmd: list[str], flags: list[str], port: int, args: argparse.Namespace, workdir: Path,
            env: dict[str, str] | None = None) -> Iterator[Running]:
    """`cmd` + `flags` started and warmed up, listening on `port`; stopped on the way out."""
    log = workdir / f"{name}.log"
    version = subprocess.run(cmd + ["--version"], capture_output=True, text=True, env=env, timeout=60)
    proc = start(cmd + flags, log, env)
    try:
        first_line = (version.stdout + version.stderr).strip().splitlines()[0]
        yield warmed(Running(Result(name, first_line), proc, f"http://127.0.0.1:{port}/metrics"), log, args)
    finally:
        stop(proc)


def lxcwatch_running(cmd: list[str], tree: Path, args: argparse.Namespace, workdir: Path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    flags = [f"--path.procfs={tree / 'proc'}", f"--path.sysfs={tree / 'sys'}", f"--path.lxc={tree / 'var' / 'lib' / 'lxc'}",
             f"--web.listen-address=127.0.0.1:{port}", f"--sample.interval={args.interval:g}s",
             # all the concurrent scrapers at once are the load measured; the default (40) would answer some 503
             f"--web.max-requests={max(40, args.concurrent)}"]
    return running("lxcwatch", cmd, flags, port, args, workdir, env)


def node_exporter_running(tree: Path, args: argparse.Namespace, workdir: Path):
    port = free_port()
    flags = [f"--web.listen-address=127.0.0.1:{port}",
             f"--path.procfs={tree / 'proc'}", f"--path.sysfs={tree / 'sys'}", "--collector.disable-defaults",
             "--collector.softnet", "--collector.interrupts", "--collector.stat", "--collector.netclass",
             # 1.5 reads counters over netlink by default: that would be this machine's links, not the tree's.
             "--collector.netdev", "--no-collector.netdev.netlink"]
    return running("node_exporter", [args.node_exporter], flags, port, args, workdir)


def warmed(exporter: Running, log: Path, args: argparse.Namespace) -> Running:
    wait_ready(exporter.url, exporter.proc, log)
    warm_up(exporter.url, args.warmup)
    exporter.result.rss_warm = rss(exporter.proc.pid)
    return exporter


def measure(cmd: list[str], tree: Path, args: argparse.Namespace, workdir: Path) -> tuple[Result, Result]:
    """Both exporters run on the tree at once (node_exporter does nothing until scraped). Their CPU windows
    alternate in rounds; then lxcwatch's latency, concurrency and memory; then, lxcwatch stopped, node_exporter's."""
    with lxcwatch_running(cmd, tree, args, workdir) as lx, node_exporter_running(tree, args, workdir) as ne:
        cpu_rounds(lx, ne, args)
        lxcwatch_load(lx, args, workdir)
        stop(lx.proc)
        progress(f"node_exporter: {args.scrapes} scrapes")
        ne.result.latencies = burst(ne.url, args.scrapes)
        ne.result.rss_end, ne.result.rss_peak = rss(ne.proc.pid), peak_rss(ne.proc.pid)
        describe_exposition(ne.result, ne.url, "node_network_info")
    return lx.result, ne.result


def cpu_rounds(lx: Running, ne: Running, args: argparse.Namespace) -> None:
    """The CPU windows in --rounds rounds, each: lxcwatch with nobody scraping, lxcwatch scraped once per sample
    (sampling cost removed), node_exporter scraped at the same pace. This VM's speed drifts over minutes
    (node_exporter's scrape of the same tree took 724 to 1463 ms on different runs): a round compares the two
    within a minute or two, and each figure is the median of its rounds."""
    for r in range(1, args.rounds + 1):
        progress(f"round {r}/{args.rounds}: lxcwatch, {args.samples} samples, nobody scraping")
        cpu, samples = sampled_cpu(lx.url, lx.proc.pid, args.interval, lambda: time.sleep(args.samples * args.interval))
        per_sample = cpu / samples
        progress(f"round {r}/{args.rounds}: lxcwatch, {per_sample * 1000:.1f} ms CPU per sample; now one scrape per sample")
        cpu, samples = sampled_cpu(lx.url, lx.proc.pid, args.interval, lambda: paced_scrapes(lx.url, args.samples, args.interval))
        lx.result.sample_rounds.append(per_sample)
        lx.result.scrape_rounds.append(max(0.0, cpu - per_sample * samples) / args.samples)
        progress(f"round {r}/{args.rounds}: lxcwatch, {lx.result.scrape_rounds[-1] * 1000:.1f} ms CPU per scrape; "
                 f"node_exporter, {args.samples} scrapes, one per {args.interval:g} s")
        cpu = cpu_over(ne.proc.pid, lambda: paced_scrapes(ne.url, args.samples, args.interval))
        ne.result.scrape_rounds.append(cpu / args.samples)
        progress(f"round {r}/{args.rounds}: node_exporter, {ne.result.scrape_rounds[-1] * 1000:.1f} ms CPU per scrape")


def lxcwatch_load(lx: Running, args: argparse.Namespace, workdir: Path) -> None:
    """Latency of back-to-back scrapes, the concurrency windows, and the memory after them."""
    progress(f"lxcwatch: {args.scrapes} scrapes")
    result, url = lx.result, lx.url
    result.latencies = burst(url, args.scrapes)
    if args.concurrent:
        n, seconds = args.concurrent, args.concurrent_seconds
        progress(f"lxcwatch: {n} scrapers at once from wrk, back to back, {seconds:g} s")
        result.concurrent["wrk"] = wrk_scrapes(url, n, seconds, workdir)
        for name, interval in (("threads", None), ("paced", args.interval)):
            pace = name if interval else "back to back"
            progress(f"lxcwatch: {n} scrapers at once from Python threads, {pace}, {seconds:g} s")
            result.concurrent[name] = concurrent_scrapes(url, n, seconds, interval)
    result.rss_end, result.rss_peak = rss(lx.proc.pid), peak_rss(lx.proc.pid)
    describe_exposition(result, url, "lxcwatch_link_info")


def warm_up(url: str, seconds: float) -> None:
    """A few scrapes and some sampling before anything is measured (imports, caches, first GC cycles)."""
    deadline = time.monotonic() + seconds
    for _ in range(3):
        scrape(url)
    time.sleep(max(0.0, deadline - time.monotonic()))


# ---- report -------------------------------------------------------------------------------------------------


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def ratio(a: float, b: float) -> str:
    return decimal(a / b if b else None)


def decimal(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render(lx: Result, ne: Result, host: synthetic_host.Host, args: argparse.Namespace) -> str:
    """The figures as markdown: context, one table, the targets."""
    rows = [
        ("CPU per sample (nobody scraping)", ms(lx.cpu_per_sample), "- (samples only when scraped)", ""),
        ("CPU per scrape", ms(lx.cpu_per_scrape), ms(ne.cpu_per_scrape), ratio(lx.cpu_per_scrape, ne.cpu_per_scrape)),
        ("**CPU per sample+scrape** (node_exporter: per scrape)", ms(lx.cpu_per_cycle), ms(ne.cpu_per_cycle),
         ratio(lx.cpu_per_cycle, ne.cpu_per_cycle)),
    ]
    lx_load, ne_load = average_load(lx, args), average_load(ne, args)
    rows.append((f"Average CPU at {args.interval:g} s sampling, {args.scrape_interval:g} s scrapes (% of one core; "
                 "ratio: median of the rounds')", f"{lx_load:.1f} %", f"{ne_load:.1f} %", decimal(median_ratio(lx, ne, args))))
    rows.append(("Scrape interval above which node_exporter costs less CPU per hour", break_even(lx, ne, args), "", ""))
    for p in (50, 99):
        a, b = percentile(lx.latencies, p), percentile(ne.latencies, p)
        rows.append((f"Scrape latency p{p} ({args.scrapes} sequential scrapes)", ms(a), ms(b), ratio(a, b)))
    for name, c in lx.concurrent.items():
        pace = f"each once per {args.interval:g} s" if name == "paced" else "back to back"
        figures = (f"p50 {ms(c.p50)}, p99 {ms(c.p99)}, max {ms(c.max)}; {c.scrapes / c.seconds:.0f} scrapes/s"
                   if c.scrapes else "none")
        rows.append((f"{c.scrapers} scrapers at once, {pace}, {c.seconds:g} s, from {c.client}", figures,
                     f"{c.errors} errors; {c.samples:.0f} samples, {c.overruns:.0f} overruns", ""))
    rows += [
        ("RSS after warm-up (VmRSS)", mib(lx.rss_warm), mib(ne.rss_warm), ratio(lx.rss_warm, ne.rss_warm)),
        ("RSS at the end of the run (VmRSS)", mib(lx.rss_end), mib(ne.rss_end), ratio(lx.rss_end, ne.rss_end)),
        ("Peak RSS (VmHWM)", mib(lx.rss_peak), mib(ne.rss_peak), ratio(lx.rss_peak, ne.rss_peak)),
        ("Series per scrape", str(lx.series), str(ne.series), ratio(lx.series, ne.series)),
        ("Body per scrape, plain / gzip", f"{lx.body_bytes // 1024} KiB / {lx.gzip_bytes // 1024} KiB",
         f"{ne.body_bytes // 1024} KiB / {ne.gzip_bytes // 1024} KiB", ratio(lx.gzip_bytes, ne.gzip_bytes)),
        ("Devices seen (link_info / node_network_info)", str(lx.devices), str(ne.devices), ""),
    ]
    table = ["| | lxcwatch | node_exporter | lxcwatch / node_exporter |", "|---|---:|---:|---:|"]
    table += [f"| {name} | {a} | {b} | {r} |" for name, a, b, r in rows]
    return "\n".join(context(lx, ne, host, args) + [""] + table + [""] + verdict(lx, ne, args)) + "\n"


def average_load(result: Result, args: argparse.Namespace) -> float:
    return load(result.cpu_per_sample, result.cpu_per_scrape, args)


def load(per_sample: float | None, per_scrape: float | None, args: argparse.Namespace) -> float:
    """Percent of one core in steady state: lxcwatch samples every interval, both are scraped every
    --scrape-interval."""
    return 100 * ((per_sample or 0.0) / args.interval + (per_scrape or 0.0) / args.scrape_interval)


def median_ratio(lx: Result, ne: Result, args: argparse.Namespace) -> float | None:
    ratios = load_ratios(lx, ne, args)
    return statistics.median(ratios) if ratios else None


def load_ratios(lx: Result, ne: Result, args: argparse.Namespace) -> list[float]:
    """lxcwatch's average CPU over node_exporter's, round by round: both measured within the same minute or two."""
    return [load(sample, scrape, args) / load(None, other, args)
            for sample, scrape, other in zip(lx.sample_rounds, lx.scrape_rounds, ne.scrape_rounds) if other]


def break_even(lx: Result, ne: Result, args: argparse.Namespace) -> str:
    """lxcwatch pays its samples every interval, node_exporter only per scrape: the scrape interval at which
    both cost the same CPU per second."""
    sampling_per_second = (lx.cpu_per_sample or 0.0) / args.interval
    saved_per_scrape = (ne.cpu_per_scrape or 0.0) - (lx.cpu_per_scrape or 0.0)
    if sampling_per_second <= 0 or saved_per_scrape <= 0:
        return "-"
    return f"{saved_per_scrape / sampling_per_second:.0f} s"


def context(lx: Result, ne: Result, host: synthetic_host.Host, args: argparse.Namespace) -> list[str]:
    nics = sum(1 for link in host.links if link.kind == "physical")
    veths = sum(1 for link in host.links if link.kind == "veth")
    return [
        f"- Run of {args.started:%Y-%m-%d %H:%M} UTC on {machine()}.",
        f"- Tree: {host.cpus} CPUs, {nics} NICs x {args.queues} queues + 1 link vector, {veths} veths on 4 bridges, "
        f"{len(host.links)} links, {len(host.irqs)} numbered IRQ rows, {args.containers} running LXC containers. "
        f"{lx.version}; {ne.version}.",
        f"- Command: `{shlex.join(['make', 'bench', *(['ARGS=' + shlex.join(args.argv)] if args.argv else [])])}`.",
        f"- CPU windows of {args.samples} samples of {args.interval:g} s in {args.rounds} rounds, each: lxcwatch idle, "
        "lxcwatch scraped once per sample, node_exporter scraped once per interval; each CPU figure is the median of "
        "its rounds. Average-CPU ratio per round: " + ", ".join(f"{r:.2f}" for r in load_ratios(lx, ne, args)) + ".",
        f"- Latency: {args.scrapes} back-to-back scrapes of each exporter alone. Scrapes send Prometheus' Accept and "
        "gzip headers on a kept-alive connection, as Prometheus does.",
        "- Counters: static, as built." if args.static_counters else
        f"- Counters move every {args.interval / 2:g} s (bench/synthetic_host.py advance()): one column of each busy "
        "NIC queue's /proc/interrupts row (its home CPU) and every link's bytes and packets in /proc/net/dev.",
        f"- Load average at the start / end of the run: {args.load_start} / {load_average()} (other work on the "
        "machine shows in the latencies first).",
    ]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def verdict(lx: Result, ne: Result, args: argparse.Namespace) -> list[str]:
    """Issue 16's targets, each met or missed, with the figure."""
    def line(what: str, ok: bool, figure: str) -> str:
        return f"- {what}: **{'met' if ok else 'MISSED'}** ({figure})."

    lx_load, ne_load, load_ratio = average_load(lx, args), average_load(ne, args), median_ratio(lx, ne, args)
    rss = max(lx.rss_warm, lx.rss_end)
    out = [
        "Issue 16's targets, set for the default 128-CPU tree:",
        "",
        line(f"CPU per sample <= {ms(TARGET_SAMPLE)}", lx.cpu_per_sample <= TARGET_SAMPLE, ms(lx.cpu_per_sample)),
        line(f"CPU per scrape <= {ms(TARGET_SCRAPE)}", lx.cpu_per_scrape <= TARGET_SCRAPE, ms(lx.cpu_per_scrape)),
        line(f"average CPU <= {TARGET_RATIO:g} x node_exporter's", load_ratio is not None and load_ratio <= TARGET_RATIO,
             f"{lx_load:.2f} % vs {ne_load:.2f} %; median of the rounds' ratios {decimal(load_ratio)}"),
    ]
    back_to_back = lx.concurrent.get("wrk")
    if back_to_back and back_to_back.scrapes:
        out.append(line(f"{back_to_back.scrapers} concurrent scrapers (back to back, {back_to_back.client}), "
                        f"p99 <= {ms(TARGET_P99)}", back_to_back.p99 <= TARGET_P99 and not back_to_back.errors,
                        f"{ms(back_to_back.p99)}, {back_to_back.errors} errors"))
    out.append(line(f"RSS < {mib(TARGET_RSS)}", rss < TARGET_RSS, mib(rss)))
    return out


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} CPUs, Linux {platform.release()}, {distro()}, "
            f"Python {platform.python_version()}")


def distro() -> str:
    try:
        with open("/etc/os-release") as f:
            return dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)["PRETTY_NAME"].strip('"')
    except (OSError, KeyError):
        return "unknown distribution"


def write_docs(markdown: str, markers: tuple[str, str] = (DOCS_START, DOCS_END)) -> None:
    """Replace what lies between a pair of markers of docs/performance.md."""
    first, last = markers
    text = DOCS.read_text()
    head, start, rest = text.partition(first)
    _, end, foot = rest.partition(last)
    if not start or not end:
        raise SystemExit(f"{DOCS}: figure markers {first} ... {last} not found")
    DOCS.write_text(f"{head}{first}\n{markdown}{last}{foot}")


# ---- main -----------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=20, help="samples per CPU window (default 20)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of CPU windows, each lxcwatch idle, lxcwatch scraped, node_exporter (default 3)")
    parser.add_argument("--scrapes", type=int, default=100, help="back-to-back scrapes for latency (default 100)")
    parser.add_argument("--interval", type=float, default=1.0, help="lxcwatch --sample.interval in seconds")
    parser.add_argument("--scrape-interval", type=float, default=15.0,
                        help="Prometheus scrape interval assumed for the average-CPU row (default 15)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of warm-up before measuring")
    parser.add_argument("--cpus", type=int, default=128, help="CPUs of the tree (default 128)")
    parser.add_argument("--nics", type=int, default=8, help="physical NICs (default 8)")
    parser.add_argument("--queues", type=int, default=32, help="queue vectors per NIC (default 32)")
    parser.add_argument("--veths", type=int, default=1000, help="host-side veths, on four bridges (default 1000)")
    parser.add_argument("--containers", type=int, default=0, help="running LXC containers, one per veth (default 0)")
    parser.add_argument("--concurrent", type=int, default=50, help="scrapers at once for the concurrency rows (0: none)")
    parser.add_argument("--concurrent-seconds", type=float, default=20.0, help="length of each concurrency window")
    parser.add_argument("--lxcwatch", default=shlex.join([sys.executable, "-m", "lxcwatch"]),
                        help="command that starts lxcwatch (default: this Python with -m lxcwatch)")
    parser.add_argument("--node-exporter", default=NODE_EXPORTER, help="node_exporter binary")
    parser.add_argument("--static-counters", action="store_true",
                        help="leave the tree's counters as built (before 2026-12-02 evening every run did)")
    parser.add_argument("--tmpdir", help="where to build the tree (default: the system temp dir)")
    parser.add_argument("--write-docs", action="store_true", help="also rewrite the figures in docs/performance.md")
    parser.add_argument("--docs-section", default="figures", metavar="NAME",
                        help="with --write-docs: the section between <!-- bench:NAME:start/end --> (default figures)")
    args = parser.parse_args(argv)
    given = list(sys.argv[1:] if argv is None else argv)  # the measurement's arguments, for the record
    args.argv = [a for i, a in enumerate(given) if not a.startswith(("--write-docs", "--docs-section"))
                 and not (i and given[i - 1] == "--docs-section")]
    if args.containers > args.veths:
        parser.error("--containers must not exceed --veths (one veth per container)")
    if min(args.samples, args.scrapes, args.rounds) < 1 or min(args.interval, args.scrape_interval) <= 0:
        parser.error("--samples, --scrapes, --rounds, --interval and --scrape-interval must be positive")
    return args


class Counters:
    """Moves the tree's counters every `period` seconds while the exporters run (synthetic_host.advance), as a busy
    host's move: twice per sample interval, so that every sample reads new values. None: static counters."""

    def __init__(self, tree: str, host: synthetic_host.Host, period: float | None):
        self.tree, self.host, self.period = tree, host, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="counters", daemon=True)

    def _run(self) -> None:
        tick = 0
        while not self._stop.wait(self.period):
            tick += 1
            synthetic_host.advance(self.tree, self.host, tick)

    def __enter__(self) -> "Counters":
        if self.period:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def terminate_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so the finally blocks stop the exporters and remove the tree."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.started, args.load_start = datetime.datetime.now(datetime.timezone.utc), load_average()
    terminate_on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix="lxcwatch-bench-", dir=args.tmpdir))
    try:
        tree = workdir / "host"
        t0 = time.monotonic()
        host = synthetic_host.build(str(tree), args.cpus, args.nics, args.queues, args.veths, args.containers)
        progress(f"tree built in {time.monotonic() - t0:.1f} s: {tree}")
        with Counters(str(tree), host, None if args.static_counters else args.interval / 2):
            lx, ne = measure(shlex.split(args.lxcwatch), tree, args, workdir)
    except (RuntimeError, OSError, http.client.HTTPException) as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        progress(f"removing {workdir}")
        shutil.rmtree(workdir, ignore_errors=True)
    markdown = render(lx, ne, host, args)
    print(markdown)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(markdown)
    print(f"wrote {RESULT.relative_to(REPO)}", file=sys.stderr)
    if args.write_docs:
        write_docs(markdown, (f"<!-- bench:{args.docs_section}:start -->", f"<!-- bench:{args.docs_section}:end -->"))
        print(f"wrote {DOCS.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
