"""The Grafana dashboards: generated JSON up to date, provisioning conventions, only documented metrics."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"

import queries  # grafana/queries.py (tests/conftest.py puts it on the path)
from queries import dashboards, panel_queries, walk_panels

UIDS = {"lxcwatch-fleet", "lxcwatch-host", "lxcwatch-containers"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "inf", "nan", "sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile", "stddev", "stdvar",
    "count_values", "group",
}


def documented_metrics() -> set[str]:
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `(\w+)` \|", text, re.M)) | {"up"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside strings, label sets, ranges, functions and clauses."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][\w:]*", e):
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or m.group(0).lower() in PROMQL_WORDS:
            continue  # a function or aggregation, or a keyword
        names.add(m.group(0))
    return names


def targets(d):
    for panel in walk_panels(d.get("panels", [])):
        for t in panel.get("targets", []):
            yield panel, t


def variables(d):
    return {v["name"]: v for v in d["templating"]["list"]}


def test_regenerating_changes_nothing():
    venv_python = ROOT / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    r = subprocess.run([python, str(GRAFANA / "generate.py"), "--check"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr


def test_check_detects_a_stale_file(tmp_path, monkeypatch):
    import generate
    monkeypatch.setattr(generate, "OUT", tmp_path)
    assert generate.main([]) == 0
    assert generate.main(["--check"]) == 0
    (tmp_path / "lxcwatch-host.json").write_text("{}\n")
    assert generate.main(["--check"]) == 1


def test_files_are_stably_formatted():
    import json
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        text = path.read_text(encoding="utf-8")
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n", path


def test_uids_fixed_and_unique():
    ds = dashboards()
    assert sorted(d["uid"] for d in ds) == sorted(UIDS)
    for d in ds:
        assert (GRAFANA / "dashboards" / f'{d["uid"]}.json').exists()
        assert d["id"] is None
        ids = [p["id"] for p in walk_panels(d["panels"])]
        assert len(ids) == len(set(ids)) and all(ids), d["uid"]


@pytest.mark.parametrize("uid", sorted(UIDS))
def test_variables(uid):
    d = next(d for d in dashboards() if d["uid"] == uid)
    v = variables(d)
    assert v["datasource"]["type"] == "datasource" and v["datasource"]["query"] == "prometheus"
    sources = {"cluster": "lxcwatch_build_info", "job": "lxcwatch_build_info", "replica_group": "lxcwatch_replica_info"}
    for name, metric in sources.items():
        assert v[name]["type"] == "query"
        assert v[name]["datasource"]["uid"] == "${datasource}"
        query = v[name]["query"]["query"]
        assert re.fullmatch(rf"label_values\({metric}(\{{.*\}})?, {name}\)", query), query
    # instance: the hosts of the chosen cluster, job and group (ungrouped hosts only under "All" groups)
    instance = v["instance"]["query"]["query"]
    assert instance.startswith("query_result(") and v["instance"]["regex"] == '/instance="([^"]+)"/'
    for matcher in ('cluster=~"$cluster"', 'job=~"$job"', 'replica_group=~"$replica_group"'):
        assert matcher in instance, matcher
    assert metric_names(instance[len("query_result"):]) <= documented_metrics()
    for var in v.values():
        if var["type"] == "query" and var["name"] != "instance":
            assert var["query"]["query"].startswith("label_values(")
            assert metric_names(var["query"]["query"][len("label_values"):].rsplit(",", 1)[0] + ")") \
                <= documented_metrics()


@pytest.mark.parametrize("uid", sorted(UIDS))
def test_targets(uid):
    d = next(d for d in dashboards() if d["uid"] == uid)
    known = documented_metrics()
    n = 0
    for panel, t in targets(d):
        n += 1
        expr = t["expr"]
        where = f'{uid} / {panel["title"]}: {expr}'
        assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel["datasource"]["uid"] == "${datasource}", where
        names = metric_names(expr)
        assert names and names <= known, f"{where}: undocumented {names - known}"
        # every range selector is $__rate_interval, and every rate/increase has one
        assert set(re.findall(r"\[[^\]]*\]", expr)) <= {"[$__rate_interval]"}, where
        assert len(re.findall(r"\b(?:rate|irate|increase)\(", expr)) == expr.count("[$__rate_interval]"), where
        # every selector is limited to the chosen cluster, job and instance (the instance list follows the group)
        for sel in re.findall(r"\b\w+\{[^}]*\}", expr):
            for matcher in ('cluster=~"$cluster"', 'job=~"$job"', 'instance=~"$instance"'):
                assert matcher in sel, f"{where}: no {matcher}"
    assert n > 0
    for panel in walk_panels(d["panels"]):
        if panel["type"] != "row":
            assert panel.get("targets"), f'{uid} / {panel["title"]}: no target'


def test_views_have_what_the_issue_asks_for():
    by_uid = {d["uid"]: d for d in dashboards()}
    def exprs(uid):
        return " ".join(t["expr"] for _, t in targets(by_uid[uid]))
    fleet = by_uid["lxcwatch-fleet"]
    rows = [p for p in fleet["panels"] if p["type"] == "row" and p.get("repeat") == "replica_group"]
    assert rows, "fleet: a row repeated per replica group"
    timelines = [p for p in walk_panels(fleet["panels"]) if p["type"] == "state-timeline"]
    assert any("lxcwatch_host_napi_heavy" in t["expr"] and "lxcwatch_replica_info" in t["expr"]
               and t["legendFormat"] == "{{replica}}" for p in timelines for t in p["targets"])
    for name in ("lxcwatch_nic_napi_heavy", "lxcwatch_host_napi_reason"):
        assert name in exprs("lxcwatch-fleet")
    for name in ("lxcwatch_link_receive_packets_total", "lxcwatch_nic_interrupts_total",
                 "lxcwatch_nic_packets_per_interrupt", "lxcwatch_softnet_processed_total",
                 "lxcwatch_softnet_dropped_total", "lxcwatch_softnet_times_squeezed_total", 'vector="NET_RX"',
                 "lxcwatch_link_promiscuous", "group_left (master) lxcwatch_link_info", 'driver!=""'):
        assert name in exprs("lxcwatch-host"), name
    for name in ("lxcwatch_container_state", "lxcwatch_container_running", "lxcwatch_container_cpu_seconds_total",
                 "lxcwatch_container_memory_bytes", "lxcwatch_container_memory_limit_bytes",
                 "lxcwatch_container_veth_attached", "lxcwatch_container_probe_success"):
        assert name in exprs("lxcwatch-containers"), name


RUNBOOK = "https://github.com/lxcwatch/lxcwatch/blob/main/docs/runbooks.md#"
PACKET_RATES = re.compile(r"rate\(lxcwatch_(?:softnet_processed|softnet_dropped|link_\w+_dropped|"
                          r"container_receive_packets|link_receive_packets)_total")


@pytest.mark.parametrize("uid", sorted(UIDS))
def test_an_on_call_person_can_navigate(uid):
    """UTC, a description on every panel, pps for packet rates, runbook links that resolve, and annotations."""
    d = next(d for d in dashboards() if d["uid"] == uid)
    assert d["timezone"] == "utc"
    anchors = {re.sub(r"[^a-z0-9 _-]", "", line[3:].strip().lower()).replace(" ", "-")
               for line in (ROOT / "docs" / "runbooks.md").read_text().splitlines() if line.startswith("## ")}
    links = 0
    for panel in walk_panels(d["panels"]):
        if panel["type"] == "row":
            continue
        assert panel.get("description"), f'{uid} / {panel["title"]}: no description'
        if panel["type"] == "timeseries" and PACKET_RATES.search(panel["targets"][0]["expr"]):
            assert panel["fieldConfig"]["defaults"]["unit"] == "pps", panel["title"]
        for link in panel.get("links", []):
            assert link["url"].startswith(RUNBOOK) and link["url"][len(RUNBOOK):] in anchors, link["url"]
            links += 1
    assert links, f"{uid}: no panel links to a runbook"
    exprs = [a["expr"] for a in d["annotations"]["list"]]
    assert any(e.startswith('ALERTS{alertstate="firing"') for e in exprs)
    assert any("changes(lxcwatch_host_napi_heavy{" in e for e in exprs)


def test_metric_names_parser():
    assert metric_names('sum by (a) (rate(x_total{a="b{c}"}[$__rate_interval]) * on (i) group_left (m) y) == 1') \
        == {"x_total", "y"}
    assert metric_names("count(up == 0)") == {"up"}


def test_panel_queries_substitutes_every_variable():
    qs = panel_queries(instance="host1:12243", job="lxcwatch", replica_group="web", datasource="prom")
    assert queries.variable_queries(replica_group="web") and all(
        "$" not in e and 'replica_group=~"web"' in e for _, _, e in queries.variable_queries(replica_group="web"))
    assert {uid for uid, _, _ in qs} == UIDS
    assert len(qs) == sum(1 for d in dashboards() for _ in targets(d))
    for uid, title, expr in qs:
        assert "$" not in expr and "$" not in title, (uid, title, expr)
        assert "[1m]" in expr or "rate(" not in expr
    assert any('instance=~"host1:12243"' in e for _, _, e in qs)
    assert any('replica_group=~"web"' in e for _, _, e in qs)
    one = panel_queries(instance="h", device="eth0", container="c1")
    assert any('device=~"eth0"' in e for _, _, e in one) and any('container=~"c1"' in e for _, _, e in one)
    assert queries.substitute("${x:regex} $x $y", {"x": "1"}) == "1 1 $y"


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_provisioning_dashboards_yaml():
    text = _read(GRAFANA / "provisioning" / "dashboards" / "lxcwatch.yml")
    assert re.search(r"^apiVersion: 1\s*$", text, re.M)
    assert re.search(r"^providers:\s*$", text, re.M)
    assert re.search(r"^\s+type: file\s*$", text, re.M)
    path = re.search(r"^\s+path: (\S+)\s*$", text, re.M).group(1)
    assert path in (GRAFANA / "README.md").read_text(encoding="utf-8")
    assert "\t" not in text


def test_provisioning_datasource_yaml():
    text = _read(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    assert re.search(r"^apiVersion: 1\s*$", text, re.M)
    assert re.search(r"^\s+type: prometheus\s*$", text, re.M)
    assert "\t" not in text
