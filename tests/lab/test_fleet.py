"""docs/fleet.md's commands, as written: the small fleet (24 hosts, every scenario of bench/fleet.py once per
cluster, backfilled into Debian's Prometheus with the shipped rules), where the page fires for exactly the two pairs
heavy together; the Thanos variant of the global tier."""

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMMAND = 'make bench-fleet ARGS="--hosts 24 --history 70m --seconds 120"'



@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/promtool").exists(), reason="needs /usr/bin/promtool (Debian: prometheus)")
def test_the_documented_small_fleet_pages_exactly_the_pairs_heavy_together():
    assert COMMAND in (ROOT / "docs" / "fleet.md").read_text()
    out = subprocess.run(["make", "bench-fleet", "ARGS=--hosts 24 --history 70m --seconds 120"], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    # Per cluster: g00000 heavy together (pages); g00001 one replica heavy; g00002 heavy at different times;
    # g00003 east's a and west's b heavy (same name, two clusters); g00004 known-bad NICs; one heavy host in no group.
    assert "LxcwatchReplicasNapiHeavy firing for 2 groups: exactly the expected groups (east/g00000, west/g00000)" \
        in out.stdout, out.stdout
    groups = re.findall(r"^\| (lxcwatch-[a-z-]+) \| (\d+) \| (\d+) \|", out.stdout, re.M)
    assert groups and all(int(evaluations) > 0 and missed == "0" for _, evaluations, missed in groups), out.stdout
    assert "17,060 input series" in out.stdout  # 24 hosts x 711 rule inputs, 4 hosts in no group without replica_info


def test_the_documented_thanos_variant_is_the_global_tier_with_abort_in_every_group():
    docs = (ROOT / "docs" / "fleet.md").read_text()
    command = re.search(r"^(sed .*partial_response_strategy: abort.*)$", docs, re.M).group(1)
    out = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    thanos = yaml.safe_load(out.stdout)["groups"]
    shipped = yaml.safe_load((ROOT / "deploy/prometheus/sharded/lxcwatch.global.rules.yml").read_text())["groups"]
    assert [g.pop("partial_response_strategy") for g in thanos] == ["abort"] * len(shipped)
    assert thanos == shipped


def test_every_documented_bench_command_is_accepted():
    """The long runs of docs/fleet.md (10-20 min each): their arguments parse, and the `git show` runs."""
    from bench import fleet
    docs = (ROOT / "docs" / "fleet.md").read_text()
    runs = re.findall(r'^make bench-fleet(?: ARGS="([^"]*)")?', docs, re.M)
    assert len(runs) == 5, runs
    before = re.search(r"^(git show \S+ > (\S+))$", docs, re.M)
    done = subprocess.run(before.group(1), shell=True, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    try:
        for args in runs:
            assert fleet.parse_args(shlex.split(args)).hosts
    finally:
        Path(before.group(2)).unlink()
