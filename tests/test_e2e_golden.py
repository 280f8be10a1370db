"""The real agent against fixture trees: full exposition diffed against golden files, and promtool on it."""

import difflib
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from agent import Agent

HOSTS = Path(__file__).parent / "fixtures" / "hosts"
GOLDEN = Path(__file__).parent / "golden"
TREES = ["tg3-pair", "mlx5-256", "arm64-igb", "virtio-live", "lxc-hybrid", "lxc-v2"]
# Values that differ from run to run; their series must still be there.
VOLATILE = re.compile(r"^(lxcwatch_scrape_collector_duration_seconds\{.*\}|lxcwatch_last_sample_timestamp_seconds|lxcwatch_last_sample_age_seconds|lxcwatch_config_last_reload_success_timestamp_seconds|"
                      r"lxcwatch_samples_total|lxcwatch_sample_overruns_total|process_\w+|"
                      r"lxcwatch_http_requests_total\{code=\"200\"\}) \S+$")


def tree_args(host: str) -> list[str]:
    # Trees without containers have no var/lib/lxc: no containers, rather than this machine's /var/lib/lxc.
    return [f"--path.procfs={HOSTS / host / 'proc'}", f"--path.sysfs={HOSTS / host / 'sys'}",
            f"--path.lxc={HOSTS / host / 'var' / 'lib' / 'lxc'}",
            "--replica.group=golden", "--replica.name=fixture", "--sample.interval=100ms"]


def normalise(text: str) -> str:
    text = text.replace(str(HOSTS), "<hosts>")  # lxcwatch_container_info{lxc_path}: wherever the checkout is
    text = text.replace(f'pythonversion="{platform.python_version()}"', 'pythonversion="<python>"')  # the venv's
    return "".join(VOLATILE.sub(r"\1 <volatile>", line) + "\n" for line in text.splitlines())


@pytest.fixture
def agent_on():
    agents = []

    def start(args):
        agents.append(Agent(args))
        return agents[-1]

    yield start
    for a in agents:
        a.stop()


@pytest.mark.parametrize("host", TREES)
def test_exposition_matches_golden(host, agent_on, request):
    # Rates and verdicts need two samples; on a static tree every sample after that is the same.
    settled = agent_on(tree_args(host)).wait_for(lambda e: e.value("lxcwatch_samples_total") >= 3, "three samples")
    got = normalise(settled.text)
    golden = GOLDEN / f"{host}.prom"
    if request.config.getoption("--update-golden"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(got)
    want = golden.read_text()
    diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), str(golden), "agent"))
    assert not diff, f"exposition differs from {golden} (make golden rewrites it):\n{diff}"


@pytest.mark.parametrize("host", TREES)
def test_promtool_accepts_exposition(host, agent_on):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    text = agent_on(tree_args(host)).scrape_text()
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_golden_files_carry_the_incident_facts():
    """The seed host as the golden file records it: promiscuous tg3 3.119 bridge ports."""
    text = (GOLDEN / "tg3-pair.prom").read_text()
    assert 'lxcwatch_link_promiscuous{device="eth0"} 1' in text
    assert re.search(r'lxcwatch_link_info\{device="eth0",kind="physical",master="br0",[^}]*driver="tg3",'
                     r'driver_version="3.119"', text)


def test_every_exported_family_is_documented():
    documented = set(re.findall(r"^\| `(lxcwatch_\w+)`", (Path(__file__).parents[1] / "docs" / "metrics.md").read_text(), re.M))
    exported = set()
    for golden in GOLDEN.glob("*.prom"):
        exported |= set(re.findall(r"^# TYPE (lxcwatch_\w+) ", golden.read_text(), re.M))
    assert exported - documented == set()


# --- the exposition while the host is heavy: a corpus trace replayed through the agent's own sampling and
# rendering (detection.steps: the Sampler on a replayed tree, stamped with the trace's clock), so every value is
# the same on every run. A static fixture tree has no rates, so only these goldens ever show a heavy verdict.
HEAVY = {"heavy-counters": "both_nics_heavy-1", "heavy-poll-counts": "both_nics_heavy-4"}
SETTLED = 10  # samples after the host and both NICs turned heavy


def heavy_exposition(trace_name: str) -> str:
    import detection
    from lxcwatch.export import exposition, metrics

    agent = metrics.Agent("0.1.0", "golden", "fixture")
    heavy_for = 0
    for step in detection.steps(str(Path(__file__).parent / "corpus" / f"{trace_name}.trace.gz")):
        v = step.verdict
        heavy_for = heavy_for + 1 if v.host.heavy and len(v.nics) == 2 and all(n.mode.heavy for n in v.nics.values()) else 0
        if heavy_for == SETTLED:
            return exposition.render(metrics.families(step.snapshot, agent, 0, step.verdict), False).decode()
    raise AssertionError(f"{trace_name}: the host and both NICs are never heavy for {SETTLED} samples")


@pytest.mark.parametrize("golden_name", list(HEAVY))
def test_heavy_exposition_matches_golden(golden_name, request):
    got = normalise(heavy_exposition(HEAVY[golden_name]))
    assert "\nlxcwatch_host_napi_heavy 1\n" in got and "\nlxcwatch_host_napi_verdict_known 1\n" in got
    assert 'lxcwatch_nic_napi_heavy{device="eth0"} 1' in got and 'lxcwatch_nic_napi_heavy{device="eth1"} 1' in got
    reason = "full_polls" if golden_name == "heavy-poll-counts" else "time_squeeze"
    assert f'lxcwatch_nic_napi_reason{{device="eth0",reason="{reason}"}} 1' in got
    assert 'lxcwatch_host_napi_reason{reason="nic"} 1' in got
    golden = GOLDEN / f"{golden_name}.prom"
    if request.config.getoption("--update-golden"):
        golden.write_text(got)
    want = golden.read_text()
    diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), str(golden), "agent"))
    assert not diff, f"exposition differs from {golden} (make golden rewrites it):\n{diff}"


@pytest.mark.parametrize("golden_name", list(HEAVY))
def test_promtool_accepts_a_heavy_exposition(golden_name):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    out = subprocess.run([promtool, "check", "metrics"], input=heavy_exposition(HEAVY[golden_name]),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
