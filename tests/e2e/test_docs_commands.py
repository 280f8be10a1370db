"""Every shell command of README.md and docs/*.md is run by a named test, or listed here with why it cannot run;
a new command that is neither fails. This module runs the ones that need no root (tests/docs_commands.py
extracts them; tests/test_docs_commands_live.py runs the others)."""

import base64
import filecmp
import os
import pty
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.docs_commands import OTHER, ROOT, SHELL, block_after, blocks, documented
from lxcwatch.export.basic_auth import BasicAuth

TESTS = ROOT / "tests"
LIVE = "test_docs_commands_live.py"
HERE = Path(__file__).name

# (document, command) -> "FILE::TEST" that runs it as written, or "not run: why".
WHERE = {
    ("README.md", "make run"): f"{LIVE}::test_make_run_logs_no_error_and_postmortem_reads_its_ring",
    ("README.md", "make test"): "not run: the whole suite, this test among it (test_make_test_is_the_whole_suite checks "
                                "what it runs)",
    ("README.md", "make check"): "not run: it is tests/unit without the slow tests, which `make test` runs "
                                 "(test_make_check_runs_the_fast_tiers checks the target)",
    ("README.md", "make dist"): "test_ansible.py::test_installed_role_holds_real_files",
    ("docs/deploy.md", "make dist"): "test_ansible.py::test_installed_role_holds_real_files",
    ("docs/deploy.md", "ansible-playbook -i inventory.yml site.yml -e lxcwatch_artifact=https://artifacts.example.internal/"
                       "lxcwatch/lxcwatch-0.1.0-wheelhouse-cp311-x86_64.tar.gz -e lxcwatch_alertmanager_pager_url=https://... "
                       "-e lxcwatch_alertmanager_ticket_url=https://..."):
        "not run: the inventory, artifact URL and receivers are the reader's (test_ansible.py::test_playbook_syntax "
        "checks site.yml; its two parts run below)",
    ("docs/deploy.md", "ansible-playbook -i inventory.yml lxcwatch.yml -e lxcwatch_artifact=/srv/dist/lxcwatch-0.1.0-"
                       "wheelhouse-cp311-x86_64.tar.gz"):
        "not run: the reader's inventory and artifact path (test_deploy.py runs lxcwatch.yml with the same variable "
        "against its own systemd hosts)",
    ("docs/deploy.md", "ansible-playbook -i inventory.yml monitoring.yml -e lxcwatch_alertmanager_pager_url=https://... "
                       "-e lxcwatch_alertmanager_ticket_url=https://..."):
        "not run: the reader's inventory and receivers (test_ansible.py::test_monitoring_playbook_runs_and_is_idempotent "
        "runs monitoring.yml with the same variables)",
    **{("docs/deploy.md", c): "test_systemd_socket.py::test_socket_activation_on_a_systemd_host" for c in (
        "install -m 0644 lxcwatch.socket /etc/systemd/system/lxcwatch.socket",
        "sed -i 's/^ARGS=\"/ARGS=\"--web.systemd-socket /' /etc/default/lxcwatch",
        "systemctl daemon-reload", "systemctl stop lxcwatch.service", "systemctl enable --now lxcwatch.socket")},
    ("docs/detection.md", ".venv/bin/python -m tests.support.tracegen --corpus tests/corpus"):
        f"{HERE}::test_the_corpus_commands_make_the_corpus_and_the_documented_table",
    ("docs/detection.md", ".venv/bin/python -m tests.support.detection tests/corpus"):
        f"{HERE}::test_the_corpus_commands_make_the_corpus_and_the_documented_table",
    ("docs/fleet.md", 'make bench-fleet ARGS="--hosts 24 --history 70m --seconds 120"'):
        "test_fleet.py::test_the_documented_small_fleet_pages_exactly_the_pairs_heavy_together",
    ("docs/fleet.md", "sed 's/^  - name: .*/&\\n    partial_response_strategy: abort/' "
                      "deploy/prometheus/sharded/lxcwatch.global.rules.yml"):
        "test_fleet.py::test_the_documented_thanos_variant_is_the_global_tier_with_abort_in_every_group",
    ("docs/fleet.md", "git show f9390cd:deploy/prometheus/lxcwatch.rules.yml > /tmp/lxcwatch.rules.before.yml"):
        "test_fleet.py::test_every_documented_bench_command_is_accepted",
    **{("docs/fleet.md", c): "not run: 10-20 min each on a loaded Prometheus (its figures are docs/fleet.md's); "
                             "test_fleet.py::test_every_documented_bench_command_is_accepted parses their arguments"
       for c in ("make bench-fleet", 'make bench-fleet ARGS="--rules /tmp/lxcwatch.rules.before.yml"',
                 *(f'make bench-fleet ARGS="--hosts {n} --recent 6m --seconds 330 --rules '
                   'deploy/prometheus/sharded/lxcwatch.global.rules.yml --global-tier-of '
                   'deploy/prometheus/sharded/lxcwatch.host.rules.yml"' for n in (10000, 1000)))},
    ("docs/metrics.md", ".venv/bin/python bench/cardinality.py --hosts"):
        "test_cardinality.py::test_the_documented_command_prints_the_documented_tables",
    ("docs/performance.md", "make bench"): "test_bench_commands.py::test_make_bench_runs_beside_node_exporter",
    ("docs/performance.md", "make bench-scaling"): "test_bench_commands.py::test_make_bench_scaling_measures_every_size",
    ("docs/performance.md", ".venv/bin/python bench/breakdown.py --cprofile"):
        "test_bench_commands.py::test_the_profile_names_where_the_time_goes",
    ("docs/performance.md", ".venv/bin/python bench/threads.py"):
        "test_bench_commands.py::test_the_threads_table_names_each_thread",
    ("docs/performance.md", 'make bench ARGS="--cpus 32 --nics 2 --queues 8 --veths 100 --containers 100"'):
        "not run: `make bench` on the typical host's tree; the same program on the bench tree runs "
        "(test_bench_commands.py::test_make_bench_runs_beside_node_exporter)",
    ("docs/performance.md", "make bench ARGS=--write-docs"): "not run: rewrites docs/performance.md in the checkout; "
                                                             "its measurement is `make bench`'s",
    ("docs/performance.md", "make bench-containers"): f"{LIVE}::test_make_bench",
    ("docs/performance.md", "make bench-containers ARGS=--write-docs"): "not run: rewrites docs/performance.md in the "
                                                                        "checkout; its measurement is `make bench-containers`'",
    ("docs/performance.md", "make bench-napi-poll"): "not run: rewrites docs/performance.md in the checkout; "
                                                     "the same with ARGS=--no-write-docs is run",
    ("docs/performance.md", "make bench-napi-poll ARGS=--no-write-docs"):
        "test_napi_poll_live.py::test_the_documented_bench_command_runs",
    **{("docs/postmortem.md", c): f"{LIVE}::test_make_run_logs_no_error_and_postmortem_reads_its_ring" for c in (
        "lxcwatch postmortem --out /tmp/pm", "less /tmp/pm/summary.txt",
        "lxcwatch postmortem --around 2025-11-24T03:12:00 --minutes 30 --out /tmp/pm")},
    **{("docs/runbooks.md", c): "test_deploy.py::test_runbook_commands_work_on_a_deployed_host" for c in (
        "lxcwatch status", "ip -d link show", "cat /proc/net/softnet_stat", "ps -eo pid,psr,pcpu,comm | grep ksoftirqd",
        "journalctl -k -b --no-pager | grep -E 'NETDEV WATCHDOG|transmit timed out|promiscuous mode'",
        "systemctl status lxcwatch --no-pager", "journalctl -u lxcwatch -b --no-pager -n 50",
        "grep -o -E -- '--replica\\.(group|name)=[^ \"]*' /etc/default/lxcwatch",
        "journalctl -u lxcwatch -b --no-pager | grep -E 'reload failed|restart needed'")},
    ("docs/security.md", "htpasswd -nBC 10 \"\" | tr -d ':\\n'"): f"{HERE}::test_htpasswd_makes_a_hash_the_agent_accepts",
    **{("docs/trace-format.md", c): f"{LIVE}::test_record_replay_and_the_agent_on_the_replay" for c in (
        "lxcwatch record --out bad-night.trace.gz --duration 10m",
        "lxcwatch replay bad-night.trace.gz --out-root /tmp/host --speed 10 --loop",
        "lxcwatch --path.procfs /tmp/host/proc --path.sysfs /tmp/host/sys")},
}


def test_every_block_says_what_it_holds():
    unnamed = [(doc, line, language) for doc, line, language, _ in blocks() if language not in SHELL | OTHER]
    assert unnamed == [], f"a fenced block is shell commands (no language, or sh) or one of {sorted(OTHER)}"


def test_every_documented_command_is_run_by_a_test_or_listed():
    found = {(doc, command) for doc, commands in documented().items() for command in commands}
    assert sorted(found - WHERE.keys()) == [], "documented commands no test runs: run them, or list them with why"
    assert sorted(WHERE.keys() - found) == [], "listed commands the documents no longer show"


def test_the_tests_named_exist():
    for where in set(WHERE.values()):
        if where.startswith("not run: "):
            continue
        name, test = where.split("::")
        (path,) = [p for p in TESTS.rglob(name) if "fixtures" not in p.parts]
        assert re.search(rf"^def {test}\(", path.read_text(), re.M), where


def test_make_test_is_the_whole_suite():
    out = subprocess.run(["make", "--no-print-directory", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1].split() == [".venv/bin/pytest"], out.stdout  # no -m: every tier


def test_make_check_runs_the_fast_tiers():
    out = subprocess.run(["make", "--no-print-directory", "-n", "check"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    command = out.stdout.splitlines()[-1]
    assert command.startswith(".venv/bin/pytest ") and command.split()[-1] == "tests/unit", command
    assert '-m "not slow"' in command, command


def test_htpasswd_makes_a_hash_the_agent_accepts():
    """docs/security.md's command, at a terminal: it asks twice, and prints a bcrypt hash of cost 10."""
    if shutil.which("htpasswd") is None:
        pytest.skip("htpasswd is not installed (Debian's apache2-utils: scripts/debian-packages test)")
    (command,) = block_after("docs/security.md", "A user's hash")
    password = "correct horse battery staple"
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session with the terminal as its controlling tty, as in a shell
        os.execvp("bash", ["bash", "-c", command])
    output = b""
    typed = 0
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
        while typed < output.count(b"assword:") and typed < 2:  # "New password:", "Re-type new password:"
            os.write(fd, password.encode() + b"\n")
            typed += 1
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output
    assert typed == 2, output
    digest = output.decode().rsplit("\n", 1)[-1].strip()  # after the prompts, no newline: `tr` took it
    assert re.fullmatch(r"\$2y\$10\$[./A-Za-z0-9]{53}", digest), output
    auth = BasicAuth((("prometheus", digest),))  # the agent's check of basic_auth_users
    assert auth.check("Basic " + base64.b64encode(f"prometheus:{password}".encode()).decode())
    assert not auth.check("Basic " + base64.b64encode(b"prometheus:wrong").decode())


@pytest.mark.slow
def test_the_corpus_commands_make_the_corpus_and_the_documented_table(tmp_path):
    """docs/detection.md's two commands as written, in a copy of the checkout's tests (the first rewrites
    tests/corpus): the generated traces are the committed ones, the table is the one the page shows."""
    shutil.copytree(TESTS, tmp_path / "tests", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    generate, score = block_after("docs/detection.md", "samples in all.")
    out = subprocess.run(["bash", "-c", generate], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    made = sorted((tmp_path / "tests" / "corpus").glob("*.trace.gz"))
    assert made and all(filecmp.cmp(p, TESTS / "corpus" / p.name, shallow=False) for p in made)
    out = subprocess.run(["bash", "-c", score], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    page = (ROOT / "docs" / "detection.md").read_text()
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and not line.startswith("| scenario")]
    assert len(rows) > 10 and all(row in page for row in rows), out.stdout


def script_packages(group: str) -> list[str]:
    """The packages of one array of scripts/debian-packages (`run=(` ... `)`), comments dropped."""
    text = (ROOT / "scripts" / "debian-packages").read_text()
    body = re.search(rf"^{group}=\(\n(.*?)^\)", text, re.S | re.M).group(1)
    return [name for line in body.splitlines() for name in line.split("#")[0].split()]


def test_the_readme_names_the_packages_each_target_installs():
    table = (ROOT / "README.md").read_text().split("| installed by | packages | why |", 1)[1].split("\n\n", 1)[0]
    listed: dict[str, list[str]] = {}
    group = ""
    for row in table.splitlines()[2:]:
        first, packages, why = [cell.strip() for cell in row.strip("|").split("|")]
        group = first or group
        assert why, row
        listed.setdefault(group, []).extend(re.findall(r"`([a-z0-9.+-]+)`", packages))
    assert sorted(listed) == ["`make run`", "`make test`, besides those"], listed
    assert sorted(listed["`make run`"]) == sorted(script_packages("run"))
    assert sorted(listed["`make test`, besides those"]) == sorted(script_packages("test"))


def test_make_run_installs_only_the_run_packages_and_make_test_all():
    def plan(target: str) -> list[str]:
        out = subprocess.run(["make", "--no-print-directory", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return [line for line in out.stdout.splitlines() if "debian-packages" in line]
    assert plan("run") == ["bash scripts/debian-packages run"]
    assert plan("test")[-1] == "bash scripts/debian-packages test"
