"""Alert rules and Alertmanager routing: promtool check/test rules, amtool check-config and routes test,
and the conventions every alert must keep (severity, annotations, runbook section, tests both ways)."""

import json
import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.support import lab
from tests.support.paths import REPO as ROOT

PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "lxcwatch.rules.yml"
RULE_TESTS = sorted(PROM.rglob("*.test.yml"))
RULE_FILES = sorted(p for p in PROM.rglob("*.yml") if not p.name.endswith(".test.yml")) + sorted(
    (ROOT / "deploy" / "mixin").glob("prometheus_*.yaml"))
MIXIN = ROOT / "deploy" / "mixin" / "mixin.py"
SHARDED = PROM / "sharded"
AM = ROOT / "deploy" / "alertmanager"
AM_CONFIG = AM / "alertmanager.yml"
ROUTES = AM / "routes.test"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RUNBOOK_PREFIX = "https://github.com/lxcwatch/lxcwatch/blob/main/docs/runbooks.md#"

needs_promtool = pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed (Debian: prometheus)")
needs_amtool = pytest.mark.skipif(
    not shutil.which("amtool"), reason="amtool not installed (Debian: prometheus-alertmanager)"
)
needs_alertmanager = pytest.mark.skipif(
    not os.access(lab.ALERTMANAGER, os.X_OK), reason=f"{lab.ALERTMANAGER} not installed (Debian: prometheus-alertmanager)"
)


def run(*args):
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def alerts():
    """{alertname: text of its rule} from the rule file (each rule runs to the next `- alert:`/`- record:`)."""
    text = RULES.read_text()
    parts = re.split(r"(?m)^(?=\s+- (?:alert|record): )", text)
    out = {}
    for part in parts:
        m = re.match(r"\s+- alert: (\w+)", part)
        if m:
            out[m.group(1)] = part
    return out


def anchors():
    """GitHub-style anchors of the runbook's headings."""
    result = set()
    for line in RUNBOOKS.read_text().splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            result.add(re.sub(r"[^a-z0-9 _-]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return result


def test_rule_files_exist():
    assert RULES.exists()
    assert RULE_TESTS, "no promtool test file beside the rules"


@needs_promtool
@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(rule_file):
    r = run("promtool", "check", "rules", str(rule_file))
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_test_rules(test_file):
    r = run("promtool", "test", "rules", str(test_file))
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_has_severity_and_annotations():
    found = alerts()
    assert "LxcwatchReplicasNapiHeavy" in found
    runbook_anchors = anchors()
    for name, text in found.items():
        assert name.startswith("Lxcwatch"), name
        m = re.search(r"severity: (\w+)", text)
        assert m and m.group(1) in {"critical", "warning", "info"}, name
        for key in ("summary", "description", "runbook_url"):
            assert re.search(rf"(?m)^\s+{key}: ", text), f"{name} has no {key}"
        summary = re.search(r"summary: (.*)", text).group(1).strip()
        assert summary.endswith("."), f"{name}: summary must be one sentence ending with a period"
        url = re.search(r"runbook_url: (\S+)", text).group(1)
        assert url == RUNBOOK_PREFIX + name.lower(), f"{name}: runbook_url {url}"
        assert name.lower() in runbook_anchors, f"docs/runbooks.md has no section for {name}"


def test_pair_page_labels_and_severity():
    text = alerts()["LxcwatchReplicasNapiHeavy"]
    assert "severity: critical" in text
    # one alert per replica group, whatever the number of NICs: the expression keeps only the group's identity
    assert re.search(r"expr: \|\n\s+count by \(cluster, replica_group\) \(\n"
                     r"\s+count by \(cluster, replica_group, replica\) \(\n"
                     r"\s+max by \(cluster, job, instance, replica_group, replica\) \(lxcwatch_replica_info\{[^}]*\}\)\n"
                     r"\s+and on \(cluster, job, instance\) \(lxcwatch_host_napi_heavy\{[^}]*\} == 1\)\n"
                     r"\s+\)\n\s+\) >= 2\n", text), text


def test_groups_are_cluster_and_replica_group():
    """Every aggregation or join over groups is by/on cluster too (the rule file's header says why)."""
    over_groups = [c for c in re.findall(r"\b(?:by|on) \(([^)]*)\)", RULES.read_text()) if "replica_group" in c]
    assert len(over_groups) > 10
    assert [c for c in over_groups if "cluster" not in c.split(", ")] == []


def test_time_squeeze_never_pages():
    assert "severity: info" in alerts()["LxcwatchSoftnetTimeSqueeze"]


def _alert_tests():
    """[(file, alertname, fires)] for every alert_rule_test case of every test file."""
    cases = []
    for path in RULE_TESTS:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"(\s+)alertname: (\w+)", line)
            if not m:
                continue
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            assert nxt.startswith("exp_alerts:"), f"{path.name}:{i + 2}: exp_alerts must follow alertname"
            cases.append((path.name, m.group(2), nxt != "exp_alerts: []"))
    return cases


def _defined_alerts(test_file: Path) -> set[str]:
    """Alert names of the rule files a promtool test file loads."""
    import yaml
    files = yaml.safe_load(test_file.read_text())["rule_files"]
    return {rule["alert"] for f in files for group in yaml.safe_load((test_file.parent / f).read_text())["groups"]
            for rule in group["rules"] if "alert" in rule}


def test_every_alert_tested_firing_and_not_firing():
    cases = _alert_tests()
    for name in alerts():
        assert (name, True) in {(n, f) for _, n, f in cases}, f"{name}: no case where it fires"
        assert (name, False) in {(n, f) for _, n, f in cases}, f"{name}: no case where it does not fire"
    for path in RULE_TESTS:
        names = {n for f, n, _ in cases if f == path.name}
        defined = _defined_alerts(path)
        for name in names:
            fired = {fires for f, n, fires in cases if f == path.name and n == name}
            if name in defined:
                assert fired == {True, False}, f"{path.name}: {name} needs a firing and a not-firing case"
            else:  # a group alert on a shard: the layout guarantees it never fires there
                assert fired == {False}, f"{path.name}: {name} is not in its rule files and cannot fire"


def test_shipped_rule_files_and_dashboards_are_the_generated_defaults():
    venv_python = ROOT / ".venv" / "bin" / "python"
    r = run(str(venv_python if venv_python.exists() else "python3"), str(MIXIN), "--check")
    assert r.returncode == 0, r.stderr


def test_the_role_rewrites_the_runbook_url_the_mixin_writes():
    """The Ansible role points the rules' runbook URLs at lxcwatch_runbook_url by replacing the config's base."""
    import yaml
    base = yaml.safe_load((MIXIN.parent / "config.yml").read_text())["runbook_url"]
    role = (ROOT / "deploy" / "ansible" / "roles" / "lxcwatch" / "tasks" / "monitoring.yml").read_text()
    assert f'lxcwatch_runbook_prefix: "{base}#"' in role
    assert (ROOT / "deploy" / "ansible" / "roles" / "lxcwatch" / "files" / "lxcwatch.rules.yml").resolve() == RULES


def test_mixin_check_detects_a_stale_file(tmp_path):
    assert run("python3", str(MIXIN), "--no-dashboards", "--out", str(tmp_path)).returncode == 0
    assert run("python3", str(MIXIN), "--no-dashboards", "--out", str(tmp_path), "--check").returncode == 0
    (tmp_path / "lxcwatch.global.rules.yml").write_text("groups: []\n")
    r = run("python3", str(MIXIN), "--no-dashboards", "--out", str(tmp_path), "--check")
    assert r.returncode == 1 and "lxcwatch.global.rules.yml" in r.stderr


def test_mixin_rejects_a_group_without_replica_group(tmp_path):
    import yaml
    config = yaml.safe_load((MIXIN.parent / "config.yml").read_text())
    config["group_labels"] = ["cluster"]
    (tmp_path / "c.yml").write_text(yaml.safe_dump(config))
    r = run("python3", str(MIXIN), "--no-dashboards", "--config", str(tmp_path / "c.yml"), "--out", str(tmp_path))
    assert r.returncode == 2 and "group_labels must contain replica_group" in r.stderr and "Traceback" not in r.stderr


@needs_promtool
def test_mixin_with_another_job_and_no_cluster_pages_that_job(tmp_path):
    """A config for a fleet whose job is `agents` and that has no cluster label: its pair pages, job="lxcwatch"
    is nowhere, and the groups are the names alone."""
    import yaml
    config = yaml.safe_load((MIXIN.parent / "config.yml").read_text())
    config.update(selector='job="agents"', cluster_label="", group_labels=["replica_group"],
                  host_labels=["job", "instance"])
    (tmp_path / "c.yml").write_text(yaml.safe_dump(config))
    r = run("python3", str(MIXIN), "--no-dashboards", "--config", str(tmp_path / "c.yml"), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    rules = (tmp_path / "lxcwatch.rules.yml").read_text()
    assert 'job="lxcwatch"' not in rules and "cluster" not in rules.split("groups:", 1)[1]
    series = "".join(
        f"      - series: '{s}'\n        values: '1x20'\n" for h, rep in (("h1", "a"), ("h2", "b")) for s in (
            f'up{{job="agents", instance="{h}"}}',
            f'lxcwatch_replica_info{{job="agents", instance="{h}", replica_group="web", replica="{rep}"}}',
            f'lxcwatch_host_napi_heavy{{job="agents", instance="{h}"}}'))
    (tmp_path / "t.yml").write_text(
        "rule_files: [lxcwatch.rules.yml]\nevaluation_interval: 15s\ntests:\n  - interval: 15s\n"
        f"    input_series:\n{series}    alert_rule_test:\n      - eval_time: 2m\n"
        "        alertname: LxcwatchReplicasNapiHeavy\n        exp_alerts:\n"
        "          - exp_labels: {severity: critical, replica_group: web}\n")
    r = run("promtool", "test", "rules", str(tmp_path / "t.yml"))
    out = r.stdout + r.stderr
    # the case gives no annotations, so promtool prints what fired: the page, with these labels only
    assert r.returncode != 0
    assert out.count('Labels:{alertname="LxcwatchReplicasNapiHeavy", replica_group="web", severity="critical"}') == 2, out
    assert "2 replicas of replica group web are in NAPI" in out and "var-replica_group=web" in out, out
    assert "var-cluster" not in out


def _series_labels(text: str) -> set[str]:
    return {re.sub(r"\s", "", m) for m in re.findall(r"(?:series|labels): '([^']+)'", text)}


def test_global_test_inputs_are_what_the_shards_record():
    """The global view's promtool inputs are exactly series the shard tests assert their partials to be, or the agent
    series the shards scrape (the page reads lxcwatch_replica_info and lxcwatch_host_napi_heavy itself)."""
    import yaml
    shard_tests = yaml.safe_load((SHARDED / "lxcwatch.shards.test.yml").read_text())["tests"]
    shard_outputs = {re.sub(r"\s", "", s["labels"])
                     for test in shard_tests for e in test.get("promql_expr_test", []) for s in e["exp_samples"]}
    shard_outputs |= {re.sub(r"\s", "", s["series"]) for test in shard_tests for s in test["input_series"]
                      if s["series"].startswith(("lxcwatch_replica_info{", "lxcwatch_host_napi_heavy{"))}
    global_inputs = {re.sub(r"\s", "", s["series"])
                     for test in yaml.safe_load((SHARDED / "lxcwatch.global.test.yml").read_text())["tests"]
                     for s in test["input_series"]}
    eu = {s for s in global_inputs if 'cluster="eu"' in s}  # the split pair; us/web stands in for other groups
    assert eu and eu <= shard_outputs, sorted(eu - shard_outputs)


def test_inhibit_rules_name_real_alerts():
    names = set(alerts())
    text = AM_CONFIG.read_text()
    for line in re.findall(r"alertname=~?\"([^\"]+)\"", text):
        for name in line.split("|"):
            assert name in names, f"alertmanager.yml names unknown alert {name}"


@needs_amtool
def test_amtool_check_config():
    r = run("amtool", "check-config", str(AM_CONFIG))
    assert r.returncode == 0, r.stdout + r.stderr


def _routes():
    rows = []
    for line in ROUTES.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            receiver, *labels = line.split()
            rows.append((receiver, labels))
    return rows


def test_routes_cover_every_alert_and_severity():
    rows = _routes()
    routed = {lab.split("=", 1)[1] for _, labels in rows for lab in labels if lab.startswith("alertname=")}
    assert set(alerts()) <= routed, f"routes.test misses {set(alerts()) - routed}"
    by_severity = {}
    for receiver, labels in rows:
        for lab in labels:
            if lab.startswith("severity="):
                by_severity.setdefault(lab.split("=", 1)[1], set()).add(receiver)
    assert by_severity["critical"] == {"pager"}
    assert by_severity["warning"] == {"ticket"}
    assert by_severity["info"] <= {"ticket", "null"}
    # the rule file's severities agree with what routes.test claims for each alert
    for receiver, labels in rows:
        d = dict(lab.split("=", 1) for lab in labels)
        if d.get("alertname") in alerts():
            assert f"severity: {d['severity']}" in alerts()[d["alertname"]], d["alertname"]


@needs_amtool
@pytest.mark.parametrize("receiver,labels", _routes(), ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_amtool_routes(receiver, labels):
    r = run("amtool", "config", "routes", "test", f"--config.file={AM_CONFIG}", f"--verify.receivers={receiver}", *labels)
    assert r.returncode == 0, f"expected {receiver}, got: {r.stdout.strip()} {r.stderr.strip()}"


@needs_amtool
def test_amtool_routes_detects_a_wrong_expectation():
    r = run("amtool", "config", "routes", "test", f"--config.file={AM_CONFIG}", "--verify.receivers=ticket",
            "severity=critical", "alertname=LxcwatchReplicasNapiHeavy")
    assert r.returncode != 0


@needs_alertmanager
def test_inhibition_stays_inside_one_group(tmp_path):
    """The shipped Alertmanager, given a pair page in cluster eu: it silences eu's web tickets only."""
    page = {"alertname": "LxcwatchReplicasNapiHeavy", "severity": "critical", "replica_group": "web"}
    ticket = {"alertname": "LxcwatchReplicaNapiHeavy", "severity": "warning", "job": "lxcwatch", "instance": "h1:12243",
              "replica_group": "web", "replica": "a"}
    sent = {
        "page eu": page | {"cluster": "eu"},
        "page, no cluster": page | {"replica_group": "db"},
        "eu web": ticket | {"cluster": "eu"},
        "us web": ticket | {"cluster": "us"},
        "db, no cluster": ticket | {"replica_group": "db"},
        "no group": {k: v for k, v in ticket.items() if k not in ("replica_group", "replica")} | {"instance": "u1:12243"},
    }
    webhook = lab.Webhook()
    try:
        am = lab.Alertmanager(tmp_path, webhook)
        try:
            api = f"http://{am.address}/api/v2/alerts"
            body = json.dumps([{"labels": labels} for labels in sent.values()]).encode()
            urllib.request.urlopen(urllib.request.Request(api, body, {"Content-Type": "application/json"}), timeout=5)

            def state():
                return {name: bool(a["status"]["inhibitedBy"]) for a in lab.get_json(api)
                        for name, labels in sent.items() if a["labels"] == labels}
            def both_pages_inhibit():  # the inhibitor learns of the pages asynchronously
                s = state()
                return s.get("eu web") and s.get("db, no cluster")
            lab.wait_until(both_pages_inhibit, "both pages to inhibit their group's ticket", 30, diagnose=am.output)
            assert state() == {"page eu": False, "page, no cluster": False, "eu web": True, "us web": False,
                               "db, no cluster": True, "no group": False}
        finally:
            am.stop()
    finally:
        webhook.close()
