"""The Ansible side (deploy/ansible): ansible-lint at the production profile, syntax checks, the example
inventory, the role built by `make dist` and installed with ansible-galaxy into a temporary directory, a real run
of the monitoring playbook with that role into a temporary tree holding an operator's own prometheus.yml and
alertmanager.yml (checked with promtool and amtool, run twice for idempotence), and the agent's files rendered
from the role's own templates and defaults."""

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest
import yaml

import lxcwatch
from tests.support import systemd_hosts
from tests.support.paths import REPO as ROOT
from lxcwatch.core import probe_spec
from lxcwatch import cli, config, daemon

ANSIBLE = ROOT / "deploy" / "ansible"
ROLE = ANSIBLE / "roles" / "lxcwatch"
INVENTORY = ANSIBLE / "inventory.example.yml"
OPERATOR = ROOT / "tests" / "fixtures" / "operator"  # prometheus.yml and alertmanager.yml from before lxcwatch
RUNBOOK_PREFIX = "https://github.com/lxcwatch/lxcwatch/blob/main/docs/runbooks.md#"  # in the repository's rules
BIN = Path(sys.executable).parent  # the venv's bin: ansible-core and ansible-lint come from the test extra

needs_promtool = pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed (Debian: prometheus)")
needs_amtool = pytest.mark.skipif(not shutil.which("amtool"),
                                  reason="amtool not installed (Debian: prometheus-alertmanager)")


def run(tool, *args, cwd=ANSIBLE, home=None, timeout=300, roles=None):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0", NO_COLOR="1",
               ANSIBLE_ROLES_PATH=str(roles or ANSIBLE / "roles"))  # for the playbooks written into tmp_path
    if roles is None:  # the role's filters, for playbooks that use its templates without the role
        env["ANSIBLE_FILTER_PLUGINS"] = str(ROLE / "filter_plugins")
    if home:  # keep Ansible's own state (~/.ansible) out of the real home
        env["ANSIBLE_HOME"] = str(home)
        env["ANSIBLE_LOCAL_TEMP"] = str(Path(home) / "tmp")
    return subprocess.run([str(BIN / tool), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def recap(output):
    """{host: {ok, changed, failed, ...}} from the PLAY RECAP of ansible-playbook's output."""
    result = {}
    for m in re.finditer(r"^(\S+)\s*:\s*((?:\w+=\d+\s*)+)$", output.split("PLAY RECAP", 1)[-1], re.MULTILINE):
        result[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return result


def local_inventory(path, extra=""):
    """An inventory putting this machine, over the local connection, in the monitoring group."""
    path.write_text(
        "monitoring:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n{extra}"
    )
    return path


# ---------------------------------------------------------------------------------------------------
# Lint and syntax


@pytest.mark.slow
def test_ansible_lint_production_clean():
    r = run("ansible-lint", "--offline", "--profile", "production")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Profile 'production' was required, and it passed" in r.stdout + r.stderr


@pytest.mark.slow
def test_ansible_lint_sees_the_role(tmp_path):
    """The lint configuration leaves nothing out: a task it must reject in a copy of the tree fails it."""
    copy = tmp_path / "ansible"
    shutil.copytree(ANSIBLE, copy)
    with open(copy / "roles" / "lxcwatch" / "tasks" / "run.yml", "a") as f:
        f.write("\n- name: not idempotent\n  shell: echo hi\n")
    r = run("ansible-lint", "--offline", "--profile", "production", cwd=copy)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "no-changed-when" in r.stdout + r.stderr


@pytest.mark.parametrize("playbook", ["lxcwatch.yml", "monitoring.yml", "site.yml"])
def test_playbook_syntax(playbook, tmp_path):
    r = run("ansible-playbook", "--syntax-check", "-i", INVENTORY, playbook, home=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("tag, first, last", [
    ("lxcwatch_install", "Read the artifact's checksum", "Install the runbooks"),
    ("lxcwatch_configure", "Write /etc/default/lxcwatch", "Reload systemd's units"),
    ("lxcwatch_run", "Enable and start lxcwatch", "Scrape over plain HTTP"),
])
def test_tags_select_one_part_and_the_preflight(tmp_path, tag, first, last):
    """As in prometheus.prometheus.node_exporter: install, configure and run each alone, the checks with each."""
    r = run("ansible-playbook", "--list-tasks", "--tags", tag, "-i", INVENTORY, "lxcwatch.yml", home=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    tasks = re.findall(r"^\s+lxcwatch : (.+?)\tTAGS: \[(.*)\]$", r.stdout, re.MULTILINE)
    names = [name for name, _ in tasks]
    part = names[names.index("Note the service's state") + 1:]
    assert names[1] == "Assert a Debian-family host with systemd and Python 3.11 or later", names
    assert (part[0], part[-1]) == (first, last), part
    assert all(tag in tags.split(", ") for _, tags in tasks[1:]), tasks


def test_example_inventory_replica_groups(tmp_path):
    r = run("ansible-inventory", "-i", INVENTORY, "--list", home=tmp_path)
    assert r.returncode == 0, r.stderr
    inv = json.loads(r.stdout)
    groups = {}
    for child in inv["lxcwatch"]["children"]:
        hosts = inv[child]["hosts"]
        names = {inv["_meta"]["hostvars"][h]["lxcwatch_replica_group"] for h in hosts}
        assert len(names) == 1, f"{child}: one replica group per inventory group, got {names}"
        replicas = sorted(inv["_meta"]["hostvars"][h]["lxcwatch_replica_name"] for h in hosts)
        groups[names.pop()] = replicas
    assert groups == {"web": ["a", "b"], "db": ["a", "b"]}
    assert inv["monitoring"]["hosts"] == ["prometheus.example.internal"]


def test_defaults_are_documented():
    """Every role default is an option of an entry point in meta/argument_specs.yml, with the same default."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    documented = {}
    for entry in specs.values():
        for name, option in entry["options"].items():
            assert option.get("description"), f"{name} has no description"
            assert option.get("type"), f"{name} has no type"
            if "default" in option:
                documented[name] = option["default"]
    for name, value in defaults.items():
        assert name in documented, f"{name} is not in meta/argument_specs.yml"
        assert documented[name] == value, f"{name}: default {value!r} but documented {documented[name]!r}"
    main = specs["main"]["options"]
    assert main["lxcwatch_replica_group"]["required"] and "lxcwatch_replica_group" not in defaults
    assert defaults["lxcwatch_version"] == lxcwatch.__version__


def test_role_files_are_the_repository_files():
    """The role carries no copy: each of its files is a link to the repository's own, and every dashboard is there."""
    files = ROLE / "files"
    expected = {
        "lxcwatch.service": ROOT / "packaging" / "systemd" / "lxcwatch.service",
        "lxcwatch.rules.yml": ROOT / "deploy" / "prometheus" / "lxcwatch.rules.yml",
        "alertmanager.yml": ROOT / "deploy" / "alertmanager" / "alertmanager.yml",
        "runbooks.md": ROOT / "docs" / "runbooks.md",
        "grafana-provider.yml": ROOT / "grafana" / "provisioning" / "dashboards" / "lxcwatch.yml",
        "grafana-datasource.yml": ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml",
    }
    expected |= {f"dashboards/{p.name}": p for p in (ROOT / "grafana" / "dashboards").glob("*.json")}
    found = {str(p.relative_to(files)): p for p in files.rglob("*") if not p.is_dir()}
    assert set(found) == set(expected)
    for name, path in found.items():
        assert path.is_symlink() and path.resolve() == expected[name].resolve(), name


# ---------------------------------------------------------------------------------------------------
# The role's preflight checks, with the facts of a good host given as extra vars (no fact gathering)

PREFLIGHT = """
- name: Preflight only
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Preflight
      ansible.builtin.import_role:
        name: lxcwatch
        tasks_from: preflight
"""
GOOD_HOST = {"os_family": "Debian", "service_mgr": "systemd", "python_version": "3.11.2"}


@pytest.mark.slow
@pytest.mark.parametrize("variables, refusal", [
    ({}, None),
    ({"lxcwatch_web_listen_address": "[::1]:12250",
      "lxcwatch_probes": [{"container": "db1", "name": "pg", "address": "[fd42::12]:5432", "timeout": "1m30s"}]}, None),
    ({"lxcwatch_replica_name": "a b"}, "lxcwatch_replica_name must be non-empty"),
    ({"lxcwatch_replica_group": "we'b"}, "lxcwatch_replica_group must be non-empty"),
    ({"lxcwatch_web_listen_address": "12243"}, "lxcwatch_web_listen_address must be [HOST]:PORT"),
    ({"lxcwatch_web_listen_address": ":70000"}, "lxcwatch_web_listen_address must be [HOST]:PORT"),
    ({"lxcwatch_probes": [{"container": "db1", "name": "pg", "address": "db1"}]}, "bad probe"),
    ({"ansible_facts": dict(GOOD_HOST, python_version="3.9.2")}, "Python >= 3.11"),
    ({"ansible_facts": dict(GOOD_HOST, service_mgr="sysvinit")}, "run by systemd"),
    ({"lxcwatch_artifact": ""}, "lxcwatch_artifact must name the wheelhouse tarball"),
    ({"lxcwatch_web_tls_cert": "CERT"}, "lxcwatch_web_tls_cert and lxcwatch_web_tls_key go together"),
    ({"lxcwatch_web_basic_auth_users": ["prometheus"]}, "lxcwatch_web_basic_auth_users is a mapping"),
], ids=["good", "good-ipv6-probe", "space", "quote", "no-port", "bad-port", "probe-address", "python", "init",
        "no-artifact", "cert-without-key", "users-list"])
def test_preflight(tmp_path, variables, refusal):
    (tmp_path / "preflight.yml").write_text(PREFLIGHT)
    (tmp_path / "vars.json").write_text(json.dumps({"ansible_facts": GOOD_HOST, "lxcwatch_replica_group": "web",
                                                    "lxcwatch_replica_name": "a",
                                                    "lxcwatch_artifact": "/srv/lxcwatch.tar.gz", **variables}))
    r = run("ansible-playbook", "-i", local_inventory(tmp_path / "inventory.yml"), "--limit", "localhost",
            "-e", f"@{tmp_path / 'vars.json'}", tmp_path / "preflight.yml", home=tmp_path / "home")
    if refusal is None:
        assert r.returncode == 0, r.stdout + r.stderr
    else:
        assert r.returncode != 0 and refusal in r.stdout, r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------------
# The monitoring playbook, run for real into a temporary tree


@pytest.fixture(scope="module")
def installed_role(tmp_path_factory):
    """The role as `make dist` builds it, installed with ansible-galaxy into a directory of its own: {role: path}."""
    tmp = tmp_path_factory.mktemp("galaxy")
    dist = systemd_hosts.build_dist(tmp / "dist")
    (tmp / "requirements.yml").write_text(yaml.safe_dump([{"src": str(dist["role"]), "name": "lxcwatch"}]))
    installed = run("ansible-galaxy", "role", "install", "-p", tmp / "roles", "-r", tmp / "requirements.yml",
                    cwd=tmp, home=tmp / "home")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return tmp / "roles"


@pytest.mark.slow
def test_installed_role_holds_real_files(installed_role):
    role = installed_role / "lxcwatch"
    found = sorted(str(p.relative_to(role)) for p in role.rglob("*") if not p.is_dir() and p.name != ".galaxy_install_info")
    assert found == sorted(str(p.relative_to(ROLE)) for p in ROLE.rglob("*") if not p.is_dir() and
                           "__pycache__" not in p.parts)
    for name in found:
        assert not (role / name).is_symlink() and (role / name).read_bytes() == (ROLE / name).read_bytes(), name


def run_monitoring(tmp, roles, runs=2, **variables):
    """Runs of monitoring.yml with the role in `roles` against this machine, every destination under `tmp`, where the
    operator's prometheus.yml and alertmanager.yml are already: (destinations, [each run's result])."""
    dest = {
        "lxcwatch_prometheus_config_file": tmp / "prometheus" / "prometheus.yml",
        "lxcwatch_prometheus_rules_dir": tmp / "prometheus" / "rules",
        "lxcwatch_prometheus_file_sd_dir": tmp / "prometheus" / "file_sd",
        "lxcwatch_alertmanager_config_file": tmp / "prometheus" / "alertmanager.yml",
        "lxcwatch_grafana_provisioning_dir": tmp / "grafana" / "provisioning",
        "lxcwatch_grafana_dashboards_dir": tmp / "grafana" / "dashboards" / "lxcwatch",
        "lxcwatch_docs_dir": tmp / "doc",
    }
    (tmp / "prometheus").mkdir()
    for name in ("prometheus.yml", "alertmanager.yml"):
        shutil.copy(OPERATOR / name, tmp / "prometheus" / name)
    extra = {k: str(v) for k, v in dest.items()}
    extra["lxcwatch_alertmanager_pager_url"] = "http://127.0.0.1:9/page"
    extra["lxcwatch_alertmanager_ticket_url"] = "http://127.0.0.1:9/ticket"
    extra.update(variables)
    (tmp / "vars.json").write_text(json.dumps(extra))
    # One agent listens on its own port: the target must follow it.
    local = local_inventory(tmp / "local.yml", "lxcwatch:\n  hosts:\n    lxc-web-2.example.internal:\n"
                                                "      lxcwatch_web_listen_address: '[::]:12250'\n")
    shutil.copy(ANSIBLE / "monitoring.yml", tmp / "monitoring.yml")  # beside no roles/: the installed role serves
    args = ("-i", INVENTORY, "-i", local, "--limit", "localhost", "-e", f"@{tmp / 'vars.json'}", tmp / "monitoring.yml")
    return dest, [run("ansible-playbook", *args, cwd=tmp, home=tmp / "home", roles=roles) for _ in range(runs)]


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory, installed_role):
    """Two runs of monitoring.yml with the installed role, scraping the agents over TLS."""
    dest, (first, second) = run_monitoring(
        tmp_path_factory.mktemp("monitoring"), installed_role,
        lxcwatch_prometheus_scrape_config_extra={"scheme": "https", "tls_config": {"insecure_skip_verify": True}})
    return dest, first, second


@pytest.fixture(scope="module")
def renamed_job_role(tmp_path_factory, installed_role):
    """The installed role with the rules `make mixin` generates for a mixin whose selector is job="lxc-hosts"."""
    tmp = tmp_path_factory.mktemp("renamed")
    shutil.copytree(installed_role, tmp / "roles")
    config = yaml.safe_load((ROOT / "deploy" / "mixin" / "config.yml").read_text())
    (tmp / "config.yml").write_text(yaml.safe_dump({**config, "selector": 'job="lxc-hosts"'}))
    made = subprocess.run([sys.executable, ROOT / "deploy" / "mixin" / "mixin.py", "--config", tmp / "config.yml",
                           "--out", tmp / "mixin", "--no-dashboards"], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    shutil.copy(tmp / "mixin" / "lxcwatch.rules.yml", tmp / "roles" / "lxcwatch" / "files" / "lxcwatch.rules.yml")
    return tmp / "roles"


@pytest.mark.slow
def test_the_scrape_job_is_named_as_the_rules_select_it(tmp_path, renamed_job_role):
    dest, (result,) = run_monitoring(tmp_path, renamed_job_role, runs=1)
    assert result.returncode == 0, result.stdout + result.stderr
    prom = yaml.safe_load(dest["lxcwatch_prometheus_config_file"].read_text())
    assert [j["job_name"] for j in prom["scrape_configs"]] == ["prometheus", "node", "blackbox", "lxc-hosts"]
    rules = (dest["lxcwatch_prometheus_rules_dir"] / "lxcwatch.rules.yml").read_text()
    assert 'job="lxc-hosts"' in rules and 'job="lxcwatch"' not in rules


@pytest.mark.slow
def test_a_scrape_job_name_the_rules_do_not_select_is_refused(tmp_path, renamed_job_role):
    dest, (result,) = run_monitoring(tmp_path, renamed_job_role, runs=1,
                                     lxcwatch_prometheus_scrape_config_extra={"job_name": "lxcwatch"})
    assert result.returncode != 0
    assert ("names the scrape job lxcwatch, but the rules select job=\"lxc-hosts\": set the selector in "
            "deploy/mixin/config.yml") in result.stdout, result.stdout
    assert dest["lxcwatch_prometheus_config_file"].read_text() == (OPERATOR / "prometheus.yml").read_text()


@pytest.mark.slow
def test_monitoring_playbook_runs_and_is_idempotent(monitoring):
    _, first, second = monitoring
    assert first.returncode == 0, first.stdout + first.stderr
    assert recap(first.stdout)["localhost"]["changed"] > 0, first.stdout
    assert second.returncode == 0, second.stdout + second.stderr
    assert recap(second.stdout)["localhost"]["changed"] == 0, second.stdout
    assert recap(second.stdout)["localhost"]["failed"] == 0


def backups(path):
    return list(path.parent.glob(f"{path.name}.*~"))


@pytest.mark.slow
@needs_promtool
def test_prometheus_config_keeps_the_operators_and_adds_lxcwatch(monitoring):
    dest, first, _ = monitoring
    assert first.returncode == 0, first.stdout
    path = dest["lxcwatch_prometheus_config_file"]
    r = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    before, after = yaml.safe_load((OPERATOR / "prometheus.yml").read_text()), yaml.safe_load(path.read_text())
    # Everything the operator had, as it was; lxcwatch's job and rule file after it.
    assert {k: v for k, v in after.items() if k not in ("scrape_configs", "rule_files")} == \
        {k: v for k, v in before.items() if k not in ("scrape_configs", "rule_files")}
    assert after["scrape_configs"][:-1] == before["scrape_configs"]
    assert [j["job_name"] for j in before["scrape_configs"]] == ["prometheus", "node", "blackbox"]
    assert after["rule_files"] == before["rule_files"] + [str(dest["lxcwatch_prometheus_rules_dir"] / "lxcwatch.rules.yml")]
    job = after["scrape_configs"][-1]
    assert job == {"job_name": "lxcwatch", "scrape_interval": "15s", "scheme": "https",
                   "tls_config": {"insecure_skip_verify": True},
                   "file_sd_configs": [{"files": [str(dest["lxcwatch_prometheus_file_sd_dir"] / "lxcwatch.yml")]}]}
    (backup,) = backups(path)  # the first run kept the file as it was; the second had nothing to change
    assert backup.read_text() == (OPERATOR / "prometheus.yml").read_text()


@pytest.mark.slow
@needs_promtool
def test_rule_file_has_runbook_urls_that_resolve(monitoring):
    dest, first, _ = monitoring
    assert first.returncode == 0, first.stdout
    rules = (dest["lxcwatch_prometheus_rules_dir"] / "lxcwatch.rules.yml").read_text()
    source = (ROOT / "deploy" / "prometheus" / "lxcwatch.rules.yml").read_text()
    runbooks = dest["lxcwatch_docs_dir"] / "runbooks.md"
    assert rules == source.replace(RUNBOOK_PREFIX, f"file://{runbooks}#")
    assert runbooks.read_text() == (ROOT / "docs" / "runbooks.md").read_text()
    headings = {re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
                for line in runbooks.read_text().splitlines() if line.startswith("## ")}
    urls = re.findall(r"runbook_url: (\S+)", rules)
    assert urls
    for url in urls:
        path, _, anchor = url.removeprefix("file://").partition("#")
        assert Path(path) == runbooks and anchor in headings, url


@pytest.mark.slow
def test_scrape_config_has_one_lxcwatch_job_with_the_inventory_targets(monitoring):
    dest, first, _ = monitoring
    assert first.returncode == 0, first.stdout
    prom = yaml.safe_load(dest["lxcwatch_prometheus_config_file"].read_text())
    jobs = [j for j in prom["scrape_configs"] if j["job_name"] == "lxcwatch"]
    assert len(jobs) == 1
    files = [f for sd in jobs[0]["file_sd_configs"] for f in sd["files"]]
    groups = [g for f in files for g in yaml.safe_load(Path(f).read_text())]
    targets = sorted(t for g in groups for t in g["targets"])
    assert targets == sorted([
        "lxc-web-1.example.internal:12243",
        "lxc-web-2.example.internal:12250",
        "lxc-db-1.example.internal:12243",
        "192.0.2.12:12243",  # ansible_host wins over the inventory name
    ])
    assert len(groups) == 2, "one target group per replica group"
    # The agents export replica_group and replica: target labels of those names would collide.
    for group in groups:
        assert not {"replica_group", "replica"} & set(group.get("labels", {})), group
    assert not {"replica_group", "replica"} & set(jobs[0].get("labels", {}))


def routes_test(config, *labels):
    r = subprocess.run(["amtool", "config", "routes", "test", f"--config.file={config}", *labels],
                       capture_output=True, text=True, timeout=60, check=False)
    return r.stdout.strip()


@pytest.mark.slow
@needs_amtool
def test_alertmanager_config_keeps_the_operators_and_adds_lxcwatch(monitoring):
    dest, first, _ = monitoring
    assert first.returncode == 0, first.stdout
    path = dest["lxcwatch_alertmanager_config_file"]
    r = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    before, after = yaml.safe_load((OPERATOR / "alertmanager.yml").read_text()), yaml.safe_load(path.read_text())
    ours = {"lxcwatch-pager", "lxcwatch-ticket", "lxcwatch-null"}
    assert [rcv for rcv in after["receivers"] if rcv["name"] not in ours] == before["receivers"]
    receivers = {rcv["name"]: rcv for rcv in after["receivers"]}
    assert receivers["lxcwatch-pager"]["webhook_configs"][0]["url"] == "http://127.0.0.1:9/page"
    assert receivers["lxcwatch-ticket"]["webhook_configs"][0]["url"] == "http://127.0.0.1:9/ticket"
    assert {k: v for k, v in after["route"].items() if k != "routes"} == \
        {k: v for k, v in before["route"].items() if k != "routes"}
    assert after["route"]["routes"][1:] == before["route"]["routes"]
    assert after["inhibit_rules"][:len(before["inhibit_rules"])] == before["inhibit_rules"]
    assert {k: v for k, v in after.items() if k not in ("receivers", "route", "inhibit_rules")} == \
        {k: v for k, v in before.items() if k not in ("receivers", "route", "inhibit_rules")}
    # Routing: lxcwatch's alerts by severity to its receivers, the operator's alerts where they went before.
    assert routes_test(path, "alertname=LxcwatchReplicasNapiHeavy", "severity=critical") == "lxcwatch-pager"
    assert routes_test(path, "alertname=LxcwatchAgentDown", "severity=warning") == "lxcwatch-ticket"
    assert routes_test(path, "alertname=LxcwatchSoftnetTimeSqueeze", "severity=info") == "lxcwatch-null"
    for labels in (["service=database", "owner=team-X"], ["service=files", "severity=critical"], ["alertname=Other"]):
        assert routes_test(path, *labels) == routes_test(OPERATOR / "alertmanager.yml", *labels), labels
    (backup,) = backups(path)
    assert backup.read_text() == (OPERATOR / "alertmanager.yml").read_text()


@pytest.mark.slow
def test_grafana_dashboards_installed_and_no_data_source_unless_asked(monitoring):
    dest, first, _ = monitoring
    assert first.returncode == 0, first.stdout
    dashboards = dest["lxcwatch_grafana_dashboards_dir"]
    shipped = sorted(p.name for p in (ROOT / "grafana" / "dashboards").glob("*.json"))
    assert sorted(p.name for p in dashboards.iterdir()) == shipped
    provisioning = dest["lxcwatch_grafana_provisioning_dir"]
    provider = yaml.safe_load((provisioning / "dashboards" / "lxcwatch.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == str(dashboards)
    assert not (provisioning / "datasources").exists()


def merge_filters():
    spec = importlib.util.spec_from_file_location("lxcwatch_merge", ROLE / "filter_plugins" / "lxcwatch_merge.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prometheus_merge_replaces_an_earlier_lxcwatch_job_in_place():
    merge = merge_filters()
    old = {"scrape_configs": [{"job_name": "a"}, {"job_name": "lxcwatch", "scrape_interval": "1m"}, {"job_name": "b"}],
           "rule_files": ["x.yml", "/r/lxcwatch.rules.yml"]}
    job = {"job_name": "lxcwatch", "scrape_interval": "15s"}
    new = merge.lxcwatch_prometheus_config(old, job, "/r/lxcwatch.rules.yml", {})
    assert new == {"scrape_configs": [{"job_name": "a"}, job, {"job_name": "b"}],
                   "rule_files": ["x.yml", "/r/lxcwatch.rules.yml"]}
    assert old["scrape_configs"][1]["scrape_interval"] == "1m"  # the input is not modified
    assert merge.lxcwatch_prometheus_config(None, job, "/r.yml", {"global": {}}) == \
        {"global": {}, "scrape_configs": [job], "rule_files": ["/r.yml"]}


def test_alertmanager_merge_without_a_file_routes_everything_of_lxcwatch():
    merge = merge_filters()
    example = yaml.safe_load((ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    new = merge.lxcwatch_alertmanager_config(None, example, "lw", {"pager": "http://p", "ticket": "http://t"})
    assert new["route"]["receiver"] == "lw-ticket"
    assert [r["name"] for r in new["receivers"]] == ["lw-pager", "lw-ticket", "lw-null"]
    assert new["route"]["routes"][0]["matchers"] == ['alertname=~"Lxcwatch.+"']
    assert merge.lxcwatch_alertmanager_config(new, example, "lw", {"pager": "http://p", "ticket": "http://t"}) == new


# ---------------------------------------------------------------------------------------------------
# The agent's files, rendered from the role's templates and defaults (nothing outside tmp_path)

RENDER = """
- name: Render the lxcwatch role's templates
  hosts: localhost
  gather_facts: false
  vars_files:
    - {role}/defaults/main.yml
    - {role}/vars/main.yml
  tasks:
    - name: Render
      ansible.builtin.template:
        src: {role}/templates/{{{{ item }}}}.j2
        dest: {out}/{{{{ item }}}}
        mode: "0644"
      loop: [lxcwatch.default, probes, ansible.conf, web-config.yml]
"""


def render(tmp_path, variables):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "render.yml").write_text(RENDER.format(role=ROLE, out=out))
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    r = run("ansible-playbook", "-i", local_inventory(tmp_path / "inventory.yml"), "--limit", "localhost",
            "-e", f"@{tmp_path / 'vars.json'}", tmp_path / "render.yml", home=tmp_path / "home")
    assert r.returncode == 0, r.stdout + r.stderr
    return {name: (out / name).read_text() for name in ("lxcwatch.default", "probes", "ansible.conf", "web-config.yml")}


def args_value(text):
    """The flags of the ARGS="..." line, read as a shell would: the line, then its value."""
    (line,) = [line for line in text.splitlines() if line.startswith("ARGS=")]
    (word,) = shlex.split(line)
    return shlex.split(word.removeprefix("ARGS="))


ODD = "--web.telemetry-path=/a \"b\" 'c' $d\\e"  # every quoting hazard in one argument


@pytest.mark.slow
def test_agent_config_flags(tmp_path):
    files = render(tmp_path, {
        "lxcwatch_replica_group": "web",
        "lxcwatch_replica_name": "a",
        "lxcwatch_web_listen_address": "[::]:12250",
        "lxcwatch_lxc_paths": ["/var/lib/lxc", "/srv/lxc two"],
        "lxcwatch_probes": [
            {"container": "web1", "name": "http", "address": "10.0.3.11:80", "timeout": "500ms"},
            {"container": "db1", "name": "pg", "address": "[fd42::12]:5432"},
        ],
        "lxcwatch_log_level": "debug",
        "lxcwatch_extra_args": ["--log.format=json", "--sample.interval=2s", ODD],
        "lxcwatch_install_dir": "/srv/lxcwatch",
        "lxcwatch_ip_address_allow": ["127.0.0.0/8", "192.0.2.0/24"],
    })
    expected = [
        "--replica.group=web", "--replica.name=a", "--web.listen-address=[::]:12250",
        "--path.lxc=/var/lib/lxc", "--path.lxc=/srv/lxc two", "--probes.file=/etc/lxcwatch/probes",
        "--log.level=debug", "--log.format=json", "--sample.interval=2s", ODD,
    ]
    default = files["lxcwatch.default"]
    assert "Ansible managed" in default
    assert args_value(default) == expected
    # The agent's own reader of --config.file agrees, and its parser takes every flag.
    path = tmp_path / "out" / "lxcwatch.default"
    assert config.read_args_file(str(path)) == expected
    args = cli.agent_parser().parse_args(expected)
    assert args.telemetry_path == ODD.split("=", 1)[1]

    specs = probe_spec.parse_file(files["probes"], "probes")
    assert [(s.container, s.name, s.host, s.port, s.timeout) for s in specs] == [
        ("web1", "http", "10.0.3.11", 80, 0.5), ("db1", "pg", "fd42::12", 5432, 1.0)]

    dropin = files["ansible.conf"]
    service = dropin.split("[Service]\n", 1)[1].splitlines()
    assert service == [
        "ExecStart=",
        "ExecStart=/srv/lxcwatch/bin/lxcwatch --config.file=/etc/default/lxcwatch",
        "LimitNOFILE=65536",
        "IPAddressAllow=localhost 127.0.0.0/8 192.0.2.0/24",
        "IPAddressDeny=any",
    ]
    # The flags a reload cannot change are recorded in the drop-in, so changing them restarts the agent.
    assert "#   --web.listen-address=[::]:12250\n" in dropin and "#   --sample.interval=2s\n" in dropin
    assert "--log.format" not in dropin


@pytest.mark.slow
def test_agent_config_defaults(tmp_path):
    files = render(tmp_path, {"lxcwatch_replica_group": "db", "lxcwatch_replica_name": "b"})
    assert args_value(files["lxcwatch.default"]) == [
        "--replica.group=db", "--replica.name=b", "--web.listen-address=:12243", "--path.lxc=/var/lib/lxc",
        "--log.level=info",
    ]
    assert probe_spec.parse_file(files["probes"], "probes") == ()
    assert files["ansible.conf"].split("[Service]\n", 1)[1] == "LimitNOFILE=65536\n"


@pytest.mark.slow
def test_every_flag_a_reload_cannot_apply_restarts_the_agent(tmp_path):
    """The drop-in records each flag of daemon.RESTART_ONLY, so a change of one restarts the agent."""
    parser = cli.agent_parser()
    options = [a for a in parser._actions if any(a.dest in dests for dests in daemon.RESTART_ONLY.values())]
    flags = [o if a.nargs == 0 else f"{o}=x" for a in options for o in a.option_strings]
    assert {"--web.config.file=x", "--kernel.events", "--no-recorder", "--recorder.size=x"} <= set(flags)
    files = render(tmp_path, {"lxcwatch_replica_group": "g", "lxcwatch_extra_args": flags + ["--log.format=json"]})
    recorded = [line.removeprefix("#   ") for line in files["ansible.conf"].splitlines() if line.startswith("#   ")]
    assert recorded == ["--web.listen-address=:12243"] + flags


@pytest.mark.slow
def test_web_config_from_role_variables(tmp_path):
    users = {"prometheus": "s3cret pass", "ops": 12345}
    variables = {"lxcwatch_replica_group": "g", "lxcwatch_web_tls_cert": "CERT", "lxcwatch_web_tls_key": "KEY",
                 "lxcwatch_web_tls_client_ca": "CA", "lxcwatch_web_basic_auth_users": users}
    files = render(tmp_path, variables)
    web = yaml.safe_load(files["web-config.yml"])
    assert web["tls_server_config"] == {"cert_file": "/etc/lxcwatch/tls/cert.pem", "key_file": "/etc/lxcwatch/tls/key.pem",
                                        "client_ca_file": "/etc/lxcwatch/tls/client-ca.pem",
                                        "client_auth_type": "RequireAndVerifyClientCert"}
    assert set(web["basic_auth_users"]) == set(users)
    for name, password in users.items():
        hashed = web["basic_auth_users"][name]
        assert hashed.startswith("$2b$10$") and bcrypt.checkpw(str(password).encode(), hashed.encode()), name
    assert "--web.config.file=/etc/lxcwatch/web-config.yml" in args_value(files["lxcwatch.default"])
    assert "#   --web.config.file=/etc/lxcwatch/web-config.yml\n" in files["ansible.conf"]
    # The same hashes on the next run: nothing changes, nothing restarts.
    again = tmp_path / "again"
    again.mkdir()
    assert render(again, variables)["web-config.yml"] == files["web-config.yml"]
    # No web config: no flag, and the file is empty of settings.
    off = tmp_path / "off"
    off.mkdir()
    files = render(off, {"lxcwatch_replica_group": "g"})
    assert yaml.safe_load(files["web-config.yml"]) is None
    assert not any(a.startswith("--web.config") for a in args_value(files["lxcwatch.default"]))
