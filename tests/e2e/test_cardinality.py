"""Series counts of the real agent against docs/metrics.md#cardinality, and the flags that choose what is exported:
device include/exclude (rendering only: a NIC left out still counts for the verdict) and the lxc detail switches."""

import re
import signal
import subprocess

import pytest

from tests.support.agent import Agent, lxcwatch_binary
from tests.e2e.test_e2e_golden import tree_args
from tests.support.paths import CORPUS, REPO

from bench import cardinality  # the documented measurement

# Expected series per unit, from the families of docs/metrics.md's tables (not from the agent):
PER_UNIT = {
    # softnet's 7 columns (the synthetic tree has them all), softirqs_total for NET_RX and NET_TX,
    # cpu_softirq_seconds_total. ksoftirqd_cpu_seconds_total adds 1 on a live host (the tree has no threads).
    "cpu": 7 + 2 + 1,
    "queue": 1,  # nic_interrupts_total: one series per IRQ vector
    # its link (below) + napi_threaded, defer_hard_irqs, gro_flush_timeout + its control vector + the verdict's
    # verdict_known, napi_heavy, mode_changes_total and napi_reason's 8 reasons
    "nic": 11 + 3 + 1 + (3 + 8),
    "link": 8 + 3,  # netdev's 8 counters + link_up, link_info, link_promiscuous (promiscuity: live host only)
    # info, 6 states, running, state_changes, autostart, read_success, init_pid, start_time; cgroup 5;
    # one interface inside (eth0; lo is left out) 6; one veth 3
    "container": 13 + 5 + 6 + 3,
}
LEAST = {"link": 0, "container": 13}  # veths excluded from the link collectors; every lxc switch off


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    return cardinality.per_unit(str(tmp_path_factory.mktemp("trees")), interval="100ms")


def documented() -> dict[str, tuple[int, int]]:
    section = (REPO / "docs" / "metrics.md").read_text().split("## Cardinality", 1)[1]
    rows = re.findall(r"^\| (cpu|queue|nic|link|container) \| (\d+) \| (\d+) \|", section, re.M)
    return {unit: (int(n), int(least)) for unit, n, least in rows}


def test_series_per_unit_are_the_formula_and_the_doc(measured):
    for unit, want in PER_UNIT.items():
        assert measured[unit] == want, unit
        assert measured.get(f"{unit}_min", measured[unit]) == LEAST.get(unit, want), unit
    assert documented() == {u: (PER_UNIT[u], LEAST.get(u, PER_UNIT[u])) for u in PER_UNIT}


# --- device include/exclude: rendering only

def test_an_excluded_nic_still_makes_the_host_heavy():
    """The corpus trace of two heavy NICs, rendered with both NICs left out of the link collectors: their link_*
    series are gone, the verdict that pages is not (the classifier sees the snapshot, never the view)."""
    from tests.support import detection
    from lxcwatch.collectors import DeviceFilter, View
    from lxcwatch.export import exposition, metrics

    view = View({"netdev": DeviceFilter(exclude=re.compile("^eth")), "links": DeviceFilter(exclude=re.compile("^eth"))})
    agent = metrics.Agent("test", "", "node", view=view)
    trace = str(CORPUS / "both_nics_heavy-1.trace.gz")
    texts = [exposition.render(metrics.families(step.snapshot, agent, 0, step.verdict), False).decode()
             for step in detection.steps(trace)]
    heavy = [t for t in texts if "\nlxcwatch_host_napi_heavy 1\n" in t]
    assert heavy, "the host never turned heavy with its NICs left out of the exposition"
    assert 'lxcwatch_nic_napi_heavy{device="eth0"} 1' in heavy[-1]
    assert 'lxcwatch_link_info{device="eth0"' not in heavy[-1] and 'lxcwatch_link_up{device="eth0"}' not in heavy[-1]
    assert 'lxcwatch_link_receive_packets_total{device="eth0"}' not in heavy[-1]


def test_include_and_exclude_on_the_real_agent():
    agent = Agent([*tree_args("tg3-pair"), "--collector.netdev.device-include=^eth0$",
                   "--collector.links.device-exclude=^eth"])
    try:
        e = agent.wait_for(lambda e: e.value("lxcwatch_samples_total") >= 3, "three samples")
        netdev = {s.labels["device"] for s in e.find("lxcwatch_link_receive_packets_total")}
        links = {s.labels["device"] for s in e.find("lxcwatch_link_info")}
        assert netdev == {"eth0"}
        assert links and not any(d.startswith("eth") for d in links), links
        assert e.value("lxcwatch_bridge_ports", bridge="br0") == 4  # eth0, eth1, vethA, vethB: excluded ones count
        assert e.value("lxcwatch_host_napi_verdict_known") == 1
        assert {s.labels["device"] for s in e.find("lxcwatch_nic_napi_verdict_known")} == {"eth0", "eth1"}
    finally:
        agent.stop()


def test_a_reload_applies_the_filters(tmp_path):
    flags = tmp_path / "lxcwatch"
    flags.write_text('ARGS="--collector.netdev.device-exclude=^eth0$ --no-collector.lxc.veths"\n')
    agent = Agent([*tree_args("lxc-hybrid"), f"--config.file={flags}"])
    try:
        e = agent.wait_for(lambda e: e.find("lxcwatch_link_receive_packets_total"), "link counters")
        assert not e.find("lxcwatch_link_receive_packets_total", device="eth0") and not e.find("lxcwatch_container_veth_up")
        flags.write_text('ARGS="--collector.netdev.device-include=^eth0$"\n')
        agent.proc.send_signal(signal.SIGHUP)
        e = agent.wait_for(lambda e: e.find("lxcwatch_link_receive_packets_total", device="eth0")
                           and e.find("lxcwatch_container_veth_up"), "the reloaded flags")
        assert {s.labels["device"] for s in e.find("lxcwatch_link_receive_packets_total")} == {"eth0"}
        assert e.value("lxcwatch_config_last_reload_successful") == 1
    finally:
        agent.stop()


@pytest.mark.parametrize("flags, message", [
    (["--collector.netdev.device-include=a", "--collector.netdev.device-exclude=b"],
     "--collector.netdev.device-include and --collector.netdev.device-exclude are mutually exclusive"),
    (["--collector.links.device-exclude=("], "invalid --collector.links.device-exclude '('"),
])
def test_bad_filter_flags_are_refused_in_one_line(flags, message):
    out = subprocess.run([lxcwatch_binary(), *flags], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


# --- the lxc detail switches

def rule_container_metrics() -> set[str]:
    rules = (REPO / "deploy" / "prometheus" / "lxcwatch.rules.yml").read_text()
    return set(re.findall(r"\b(lxcwatch_container_\w+)\{", rules))


def test_least_detail_keeps_every_rule_input():
    agent = Agent([*tree_args("lxc-hybrid"), "--no-collector.lxc.cgroup", "--no-collector.lxc.interfaces",
                   "--no-collector.lxc.veths"])
    try:
        e = agent.wait_for(lambda e: e.value("lxcwatch_samples_total") >= 3, "three samples")
    finally:
        agent.stop()
    names = {s.name for s in e.samples}
    containers = {s.labels["container"] for s in e.find("lxcwatch_container_info")}
    assert len(containers) >= 5
    assert rule_container_metrics() >= {"lxcwatch_container_running", "lxcwatch_container_autostart"}
    for metric in rule_container_metrics():
        assert metric in names, metric
    for gone in ("lxcwatch_container_cpu_seconds_total", "lxcwatch_container_memory_bytes",
                 "lxcwatch_container_receive_packets_total", "lxcwatch_container_veth_info",
                 "lxcwatch_container_veth_attached", "lxcwatch_container_veth_up"):
        assert gone not in names, gone
    assert {s.labels["container"] for s in e.find("lxcwatch_container_running")} == containers


@pytest.mark.slow
def test_the_documented_command_prints_the_documented_tables():
    """docs/metrics.md's command, run as written: every table row it prints is in the doc (~5 min: the big host)."""
    doc = (REPO / "docs" / "metrics.md").read_text()
    command = re.search(r"^\.venv/bin/python bench/cardinality\.py --hosts$", doc, re.M).group(0).split()
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and not line.startswith("| unit")
            and not line.startswith("| host")]
    assert len(rows) == 5 + 3, out.stdout
    for row in rows:
        assert f"\n{row}\n" in doc, row
