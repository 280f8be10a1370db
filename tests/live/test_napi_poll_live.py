"""The napi_poll collector on the live kernel: its counts against the same tracepoint read through tracefs, full
polls under a flood and none after it, coalescing against `ethtool -c`, unavailability, and its descriptors."""

import gzip
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import sysconfig
import zlib

import pytest
from tests.support.agent import Agent, lxcwatch_binary, wait_until
from tests.support.napi_flood import FloodLab, Tracefs, TraceWindow
from tests.live.test_unprivileged import AS_NOBODY, ROOT, SYSTEM_PYTHON, system_python_matches

from tests.support import netlab
from lxcwatch.sources import ethtool, nics
from lxcwatch.sources.root import Root
from lxcwatch.kernel import cpu_list
from lxcwatch.sources.perf_napi_poll import MAX_WEIGHT, PerfNapiPolls

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: perf_event_open of a tracepoint, tracefs, namespaces"),
    pytest.mark.skipif(not shutil.which("ethtool"), reason="needs ethtool (scripts/debian-packages)"),
]
NO_CAPABILITIES = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]  # still uid 0, without CAP_PERFMON


@pytest.fixture(scope="module")
def tracefs():
    mount = Tracefs()
    yield
    mount.close()


@pytest.fixture
def flood_lab(tracefs):
    reason = netlab.unavailable()
    if reason:
        pytest.skip(reason)
    lab = FloodLab(threaded=True)
    yield lab
    lab.cleanup()
    assert not netlab.leftovers(lab.lab.suffix), "lab links or namespaces left behind"


def judged(events: list[tuple[str, int, int]]) -> tuple[int, int, int]:
    """(polls, full, large-budget) counted from tracefs' own lines: full is work == budget, as the kernel says."""
    return (len(events), sum(1 for _, work, budget in events if work == budget and 0 < budget <= MAX_WEIGHT),
            sum(1 for _, _, budget in events if budget > MAX_WEIGHT))


def delta(before, after) -> tuple[int, int, int]:
    return after.polls - before.polls, after.full - before.full, after.large_budget - before.large_budget


@pytest.mark.slow
def test_counts_agree_with_tracefs_and_full_polls_come_and_go_with_the_flood(flood_lab):
    device = flood_lab.device
    counter = PerfNapiPolls()
    agent = Agent([f"--collector.napi_poll.device-include=^{device}$", "--sample.interval=200ms", "--path.lxc=/nonexistent"])
    try:
        polls = lambda e: e.value("lxcwatch_nic_napi_polls_total", device=device)  # noqa: E731
        full = lambda e: e.value("lxcwatch_nic_napi_full_polls_total", device=device)  # noqa: E731
        quiet = agent.wait_for(lambda e: polls(e) is not None and e, f"the agent counting {device}")
        assert quiet.value("lxcwatch_napi_poll_available") == 1
        start = counter.read([device]).counts[device]

        window = TraceWindow(device)
        flood_lab.flood(2.0)
        traced = judged(window.stop())
        flooded = counter.read([device]).counts[device]
        assert delta(start, flooded) == traced  # the module, exactly as tracefs saw the tracepoint
        assert traced[1] > 0, f"no full poll in {traced[0]} polls of the flood"
        agent.wait_for(lambda e: (polls(e), full(e)) == (polls(quiet) + traced[0], full(quiet) + traced[1]),
                       f"the agent's counts to grow by tracefs' {traced[:2]}", timeout=20)

        window = TraceWindow(device)
        flood_lab.trickle(300)
        trickled = judged(window.stop())
        after = counter.read([device]).counts[device]
        assert delta(flooded, after) == trickled and trickled[0] >= 150 and trickled[1] == 0, trickled
        agent.wait_for(lambda e: (polls(e), full(e)) == (polls(quiet) + traced[0] + trickled[0], full(quiet) + traced[1]),
                       "the agent's polls to grow by the trickle's and its full polls to stay", timeout=20)
    finally:
        agent.stop()
        counter.close()


def ethtool_c(device: str) -> dict[str, str] | None:
    """`ethtool -c DEVICE` as {field: value}; None when the driver does not support it."""
    out = subprocess.run(["ethtool", "-c", device], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        assert "Operation not supported" in out.stderr, out.stderr
        return None
    fields = dict(re.findall(r"^([\w-]+):\s+(\S+)$", out.stdout, re.M))
    fields["adaptive-rx"] = re.search(r"^Adaptive RX:\s+(\w+)", out.stdout, re.M).group(1)
    return fields


def test_coalescing_is_what_ethtool_shows(lab):
    veth, _ = lab.veth("c", "d")
    physical = sorted(nics.find(Root("/sys"), os.listdir("/sys/class/net")))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ours = {name: ethtool.coalesce(sock, name) for name in [*physical, veth]}
    for name, mine in ours.items():
        theirs = ethtool_c(name)
        if theirs is None:
            assert mine is None, name
        else:
            assert (str(mine.rx_usecs), str(mine.rx_frames), "on" if mine.adaptive_rx else "off") == (
                theirs["rx-usecs"], theirs["rx-frames"], theirs["adaptive-rx"]), name
    assert ours[veth] is None  # veth has no coalescing ops: EOPNOTSUPP

    supported = [n for n in physical if ours[n] is not None]
    if not supported:
        pytest.skip(f"no physical NIC here supports ETHTOOL_GCOALESCE ({physical})")
    agent = Agent(["--path.lxc=/nonexistent"])
    try:
        seen = agent.scrape()
    finally:
        agent.stop()
    for name in supported:
        theirs = ethtool_c(name)
        assert seen.value("lxcwatch_link_coalesce_rx_delay_seconds", device=name) == int(theirs["rx-usecs"]) / 1e6
        assert seen.value("lxcwatch_link_coalesce_rx_max_frames", device=name) == int(theirs["rx-frames"])
        assert seen.value("lxcwatch_link_coalesce_rx_adaptive", device=name) == (theirs["adaptive-rx"] == "on")


def test_unavailable_says_why_and_the_collector_still_succeeds(tmp_path, tracefs):
    assert PerfNapiPolls(tracefs=(str(tmp_path),)).read(["eth0"]).unavailable.startswith("tracefs not mounted")
    (tmp_path / "events").mkdir()
    assert PerfNapiPolls(tracefs=(str(tmp_path),)).read(["eth0"]).unavailable.startswith("no tracepoint napi:napi_poll")

    few = subprocess.run([sys.executable, "-c", "from lxcwatch.sources.perf_napi_poll import PerfNapiPolls; "
                          "print(PerfNapiPolls().read([f'lxwnic{i}' for i in range(20)]).unavailable)"],
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)),
                         capture_output=True, text=True, timeout=60)
    assert few.stdout.startswith("perf_event_open: too many open files"), few.stdout + few.stderr  # 120 needed

    agent = Agent(["--sample.interval=200ms", "--path.lxc=/nonexistent"], command=[*NO_CAPABILITIES, lxcwatch_binary()])
    try:
        seen = agent.wait_for(lambda e: e.value("lxcwatch_samples_total") >= 3 and e, "three samples")
    finally:
        agent.stop()
    assert seen.value("lxcwatch_napi_poll_available") == 0
    assert seen.value("lxcwatch_scrape_collector_success", collector="napi_poll") == 1
    [why] = seen.find("lxcwatch_napi_poll_unavailable")
    assert why.labels["reason"].startswith("perf_event_open: permission denied: run as root or with CAP_PERFMON")
    warnings = [line for line in agent.output().splitlines() if "NAPI poll counts unavailable" in line]
    assert len(warnings) == 1 and "CAP_PERFMON" in warnings[0], agent.output()


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_descriptors_follow_the_devices_and_totals_survive_a_reopen(flood_lab):
    with open("/sys/devices/system/cpu/online") as f:
        cpus = len(cpu_list.parse(f.read()))
    counter = PerfNapiPolls()
    baseline = open_descriptors()
    try:
        eight = [f"lxwnic{i}" for i in range(7)] + [flood_lab.device]
        counter.read(eight)
        assert counter.descriptors() == cpus * 8 * 3 == open_descriptors() - baseline
        flood_lab.trickle(100)
        counted = counter.read(eight).counts[flood_lab.device]
        assert counted.polls >= 50

        counter.read([flood_lab.device, "lxwnic0"])  # a device left: everything is opened again
        assert counter.descriptors() == cpus * 2 * 3 == open_descriptors() - baseline
        assert counter.read([flood_lab.device]).counts[flood_lab.device].polls >= counted.polls  # no reset

        counter.read([])
        assert counter.descriptors() == 0 == open_descriptors() - baseline
    finally:
        counter.close()
    assert open_descriptors() == baseline


def test_a_failing_read_is_a_failure_then_counting_resumes(tracefs):
    counter = PerfNapiPolls()
    try:
        assert not counter.read(["lxwnic0"]).unavailable
        os.close(counter.groups[0][0])  # the descriptors closed behind the collector's back
        with pytest.raises(OSError):
            counter.read(["lxwnic0"])
        assert counter.read(["lxwnic0"]).counts == {"lxwnic0": counter.last["lxwnic0"]}
    finally:
        counter.close()


def test_record_writes_the_counts_and_the_coalescing(flood_lab, tmp_path):
    out = tmp_path / "live.trace.gz"
    recorder = subprocess.Popen([lxcwatch_binary(), "record", f"--out={out}", "--duration=3s",
                                 f"--collector.napi_poll.device-include=^{flood_lab.device}$"],
                                stderr=subprocess.PIPE, text=True)
    wait_until(lambda: out.exists() and zlib.decompressobj(31).decompress(out.read_bytes()).count(b"\n") >= 2,
               "the trace's first sample")  # flushed after each line
    flood_lab.trickle(200)
    assert recorder.wait(timeout=60) == 0, recorder.stderr.read()
    counts, coalescing = [], []
    with gzip.open(out, "rt") as f:
        for record in map(json.loads, list(f)[1:]):
            files = record.get("files", {})
            counts += [files["proc/lxcwatch/napi_poll"]] if "proc/lxcwatch/napi_poll" in files else []
            coalescing += [files["proc/lxcwatch/ethtool_coalesce"]] if "proc/lxcwatch/ethtool_coalesce" in files else []
    polls = [int(re.search(rf"^{flood_lab.device} (\d+) ", text, re.M).group(1)) for text in counts]
    assert len(polls) >= 2 and polls[-1] > polls[0], counts
    physical = nics.find(Root("/sys"), os.listdir("/sys/class/net"))
    for name in physical:
        theirs = ethtool_c(name)
        if theirs is not None:
            line = f"{name} {theirs['rx-usecs']} {theirs['rx-frames']} {int(theirs['adaptive-rx'] == 'on')}"
            assert line in coalescing[0].splitlines(), coalescing[0]


@pytest.mark.skipif(not system_python_matches(), reason=f"needs {SYSTEM_PYTHON} of Python {sys.version_info[:2]}")
def test_the_units_capabilities_are_enough_as_an_unprivileged_user(tracefs):
    """As `nobody` with exactly the unit's AmbientCapabilities (packaging/systemd/lxcwatch.service) the collector
    counts; without CAP_PERFMON it says why."""
    unit = (ROOT / "packaging" / "systemd" / "lxcwatch.service").read_text()
    caps = re.search(r"^AmbientCapabilities=(.*)$", unit, re.M).group(1).split()
    assert "CAP_PERFMON" in caps
    env = {"PYTHONPATH": f"{ROOT}:{sysconfig.get_paths()['purelib']}", "PYTHONDONTWRITEBYTECODE": "1"}
    for granted, available in ((caps, 1), ([c for c in caps if c != "CAP_PERFMON"], 0)):
        names = ",".join("+" + c.removeprefix("CAP_").lower() for c in granted)
        command = [*AS_NOBODY, f"--inh-caps={names}", f"--ambient-caps={names}", SYSTEM_PYTHON, "-m", "lxcwatch"]
        agent = Agent(["--sample.interval=200ms", "--path.lxc=/nonexistent"], env=env, cwd="/", command=command)
        try:
            seen = agent.wait_for(lambda e: e.value("lxcwatch_samples_total") >= 2 and e, "two samples")
        finally:
            agent.stop()
        assert seen.value("lxcwatch_napi_poll_available") == available, (granted, seen.find("lxcwatch_napi_poll_unavailable"))


@pytest.mark.slow
def test_the_documented_bench_command_runs():
    """docs/performance.md's `make bench-napi-poll ARGS=--no-write-docs`, as written (~2.5 min)."""
    docs = (ROOT / "docs" / "performance.md").read_text()
    assert "make bench-napi-poll ARGS=--no-write-docs" in docs
    out = subprocess.run(["make", "bench-napi-poll", "ARGS=--no-write-docs"], cwd=ROOT, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"**{128 * 8 * 3} descriptors**" in out.stdout  # 128 CPUs x 8 devices x 3 events
    rows = re.findall(r"^\| (none|1 device|8 devices)\b.*\| ([\d.]+) µs \|", out.stdout, re.M)
    assert [r[0] for r in rows] == ["none", "1 device", "8 devices"], out.stdout
