"""The Ansible side (deploy/ansible): ansible-lint at the production profile, syntax checks, the example
inventory, a real run of the monitoring playbook into a temporary tree (checked with promtool and amtool,
run twice for idempotence), and the agent's files rendered from the role's own templates and defaults."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import lxcwatch
from lxcwatch import cli, config, probes

ROOT = Path(__file__).resolve().parent.parent
ANSIBLE = ROOT / "deploy" / "ansible"
ROLE = ANSIBLE / "roles" / "lxcwatch"
INVENTORY = ANSIBLE / "inventory.example.yml"
BIN = Path(sys.executable).parent  # the venv's bin: ansible-core and ansible-lint come from the test extra

needs_promtool = pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed (Debian: prometheus)")
needs_amtool = pytest.mark.skipif(not shutil.which("amtool"),
                                  reason="amtool not installed (Debian: prometheus-alertmanager)")


def run(tool, *args, cwd=ANSIBLE, home=None, timeout=300):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0", NO_COLOR="1",
               ANSIBLE_ROLES_PATH=str(ANSIBLE / "roles"))  # for the playbooks written into tmp_path
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


def test_unit_source_is_the_repository_unit():
    """The role installs packaging/systemd/lxcwatch.service itself: no copy of it in the role."""
    defaults = (ROLE / "defaults" / "main.yml").read_text()
    assert 'lxcwatch_unit_source: "{{ lxcwatch_source_dir }}/packaging/systemd/lxcwatch.service"' in defaults
    assert (ROLE / "../../../..").resolve() == ROOT  # what lxcwatch_source_dir's default points at
    assert not any(p.name.endswith(".service") or p.name.endswith(".service.j2") for p in ROLE.rglob("*"))


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
], ids=["good", "good-ipv6-probe", "space", "quote", "no-port", "bad-port", "probe-address", "python", "init"])
def test_preflight(tmp_path, variables, refusal):
    (tmp_path / "preflight.yml").write_text(PREFLIGHT)
    (tmp_path / "vars.json").write_text(json.dumps({"ansible_facts": GOOD_HOST, "lxcwatch_replica_group": "web",
                                                    "lxcwatch_replica_name": "a", **variables}))
    r = run("ansible-playbook", "-i", local_inventory(tmp_path / "inventory.yml"), "--limit", "localhost",
            "-e", f"@{tmp_path / 'vars.json'}", tmp_path / "preflight.yml", home=tmp_path / "home")
    if refusal is None:
        assert r.returncode == 0, r.stdout + r.stderr
    else:
        assert r.returncode != 0 and refusal in r.stdout, r.stdout + r.stderr


# ---------------------------------------------------------------------------------------------------
# The monitoring playbook, run for real into a temporary tree


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory):
    """Two runs of monitoring.yml against this machine; every destination in a temporary directory."""
    tmp = tmp_path_factory.mktemp("monitoring")
    dest = {
        "lxcwatch_prometheus_config_file": tmp / "prometheus" / "prometheus.yml",
        "lxcwatch_prometheus_rules_dir": tmp / "prometheus" / "rules",
        "lxcwatch_prometheus_file_sd_dir": tmp / "prometheus" / "file_sd",
        "lxcwatch_alertmanager_config_file": tmp / "prometheus" / "alertmanager.yml",
        "lxcwatch_grafana_provisioning_dir": tmp / "grafana" / "provisioning",
        "lxcwatch_grafana_dashboards_dir": tmp / "grafana" / "dashboards" / "lxcwatch",
    }
    extra = {k: str(v) for k, v in dest.items()}
    extra["lxcwatch_alertmanager_pager_url"] = "http://127.0.0.1:9/page"
    extra["lxcwatch_alertmanager_ticket_url"] = "http://127.0.0.1:9/ticket"
    extra["lxcwatch_prometheus_extra_scrape_configs"] = [
        {"job_name": "prometheus", "static_configs": [{"targets": ["localhost:9090"]}]}]
    (tmp / "vars.json").write_text(json.dumps(extra))
    # One agent listens on its own port: the target must follow it.
    local = local_inventory(tmp / "local.yml", "lxcwatch:\n  hosts:\n    lxc-web-2.example.internal:\n"
                                                "      lxcwatch_web_listen_address: '[::]:12250'\n")
    args = ("-i", INVENTORY, "-i", local, "--limit", "localhost", "-e", f"@{tmp / 'vars.json'}", "monitoring.yml")
    first = run("ansible-playbook", *args, home=tmp / "home")
    second = run("ansible-playbook", *args, home=tmp / "home")
    return dest, first, second


@pytest.mark.slow
def test_monitoring_playbook_runs_and_is_idempotent(monitoring):
    _, first, second = monitoring
    assert first.returncode == 0, first.stdout + first.stderr
    assert recap(first.stdout)["localhost"]["changed"] > 0, first.stdout
    assert second.returncode == 0, second.stdout + second.stderr
    assert recap(second.stdout)["localhost"]["changed"] == 0, second.stdout
    assert recap(second.stdout)["localhost"]["failed"] == 0


@pytest.mark.slow
@needs_promtool
def test_generated_prometheus_config_is_valid(monitoring):
    dest, first, _ = monitoring
    assert first.returncode == 0, first.stdout
    r = subprocess.run(["promtool", "check", "config", str(dest["lxcwatch_prometheus_config_file"])],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 1 rule files found" in r.stdout + r.stderr
    rules = dest["lxcwatch_prometheus_rules_dir"] / "lxcwatch.rules.yml"
    assert rules.read_text() == (ROOT / "deploy" / "prometheus" / "lxcwatch.rules.yml").read_text()


@pytest.mark.slow
def test_scrape_config_has_one_lxcwatch_job_with_the_inventory_targets(monitoring):
    dest, first, _ = monitoring
    assert first.returncode == 0, first.stdout
    prom = yaml.safe_load(dest["lxcwatch_prometheus_config_file"].read_text())
    assert [j["job_name"] for j in prom["scrape_configs"]] == ["lxcwatch", "prometheus"]  # and the extra one
    jobs = [j for j in prom["scrape_configs"] if j["job_name"] == "lxcwatch"]
    assert [str(dest["lxcwatch_prometheus_rules_dir"] / "lxcwatch.rules.yml")] == prom["rule_files"]
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


@pytest.mark.slow
@needs_amtool
def test_generated_alertmanager_config_is_valid(monitoring):
    dest, first, _ = monitoring
    assert first.returncode == 0, first.stdout
    path = dest["lxcwatch_alertmanager_config_file"]
    r = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    receivers = {rcv["name"]: rcv for rcv in yaml.safe_load(path.read_text())["receivers"]}
    assert receivers["pager"]["webhook_configs"][0]["url"] == "http://127.0.0.1:9/page"
    assert receivers["ticket"]["webhook_configs"][0]["url"] == "http://127.0.0.1:9/ticket"
    assert "example.internal" not in path.read_text()


@pytest.mark.slow
def test_grafana_files_installed(monitoring):
    dest, first, _ = monitoring
    assert first.returncode == 0, first.stdout
    dashboards = dest["lxcwatch_grafana_dashboards_dir"]
    shipped = sorted(p.name for p in (ROOT / "grafana" / "dashboards").glob("*.json"))
    assert sorted(p.name for p in dashboards.iterdir()) == shipped
    provisioning = dest["lxcwatch_grafana_provisioning_dir"]
    provider = yaml.safe_load((provisioning / "dashboards" / "lxcwatch.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == str(dashboards)
    datasource = yaml.safe_load((provisioning / "datasources" / "lxcwatch-prometheus.yml").read_text())
    assert datasource["datasources"][0]["type"] == "prometheus"


# ---------------------------------------------------------------------------------------------------
# The agent's files, rendered from the role's templates and defaults (nothing outside tmp_path)

RENDER = """
- name: Render the lxcwatch role's templates
  hosts: localhost
  gather_facts: false
  vars_files:
    - {role}/defaults/main.yml
  tasks:
    - name: Render
      ansible.builtin.template:
        src: {role}/templates/{{{{ item }}}}.j2
        dest: {out}/{{{{ item }}}}
        mode: "0644"
      loop: [lxcwatch.default, probes, ansible.conf]
"""


def render(tmp_path, variables):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "render.yml").write_text(RENDER.format(role=ROLE, out=out))
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    r = run("ansible-playbook", "-i", local_inventory(tmp_path / "inventory.yml"), "--limit", "localhost",
            "-e", f"@{tmp_path / 'vars.json'}", tmp_path / "render.yml", home=tmp_path / "home")
    assert r.returncode == 0, r.stdout + r.stderr
    return {name: (out / name).read_text() for name in ("lxcwatch.default", "probes", "ansible.conf")}


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

    specs = probes.parse_file(files["probes"], "probes")
    assert [(s.container, s.name, s.host, s.port, s.timeout) for s in specs] == [
        ("web1", "http", "10.0.3.11", 80, 0.5), ("db1", "pg", "fd42::12", 5432, 1.0)]

    dropin = files["ansible.conf"]
    service = dropin.split("[Service]\n", 1)[1].splitlines()
    assert service == [
        "ExecStart=",
        "ExecStart=/srv/lxcwatch/bin/lxcwatch --config.file=/etc/default/lxcwatch",
        "LimitNOFILE=65536",
        "IPAddressAllow=127.0.0.0/8 192.0.2.0/24",
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
    assert probes.parse_file(files["probes"], "probes") == ()
    assert files["ansible.conf"].split("[Service]\n", 1)[1] == "LimitNOFILE=65536\n"
