"""Running under systemd: sd_notify messages of the real agent on a real notify socket, the watchdog fed by the
sampling loop, SIGHUP reloads of --config.file, journal fields."""

import logging
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from agent import Agent, Exposition, free_port, frozen_thread, lxcwatch_binary
from lxcwatch.core import classifier
from lxcwatch import config, logs, service
from lxcwatch.export import status
from lxcwatch.errors import UsageError
from lxcwatch.collectors import build
from lxcwatch.core.snapshot import CollectorResult, Snapshot

HOSTS = Path(__file__).parent / "fixtures" / "hosts"
CORPUS = Path(__file__).parent / "corpus"


def tree_args(root: Path, lxc: Path) -> list[str]:
    return [f"--path.procfs={root / 'proc'}", f"--path.sysfs={root / 'sys'}", f"--path.lxc={lxc}"]


class NotifySocket:
    """What systemd listens on for a Type=notify service: a datagram socket at $NOTIFY_SOCKET."""

    def __init__(self, directory: Path):
        self.path = str(directory / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def receive(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096).decode()
        except TimeoutError:
            return None
        message = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
        self.messages.append((time.monotonic(), message))
        return message

    def wait_for(self, key: str, timeout: float, value: str | None = None) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is not None and key in message and (value is None or value in message[key]):
                return message
        raise AssertionError(f"no {key}{'~' + value if value else ''} within {timeout}s; got {self.messages}")

    def close(self):
        self.sock.close()


@pytest.fixture
def unused_port():
    return free_port()


@pytest.fixture
def notify(tmp_path):
    sock = NotifySocket(tmp_path)
    yield sock
    sock.close()


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """The agent without the test helper's readiness polling: READY=1 is what these tests wait for."""
    return subprocess.Popen([lxcwatch_binary(), *args], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


# --- the protocol, end to end ----------------------------------------------------------------------------------


def test_ready_after_bind_and_first_sample_then_watchdog_pings_and_stopping(notify, tmp_path, unused_port):
    (tmp_path / "lxc").mkdir()
    proc = start([*tree_args(HOSTS / "tg3-pair", tmp_path / "lxc"), f"--web.listen-address=127.0.0.1:{unused_port}",
                  "--sample.interval=100ms"], {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "2000000"})
    try:
        ready = notify.wait_for("READY", 30)
        # At READY the listener is bound and a sample is served: no retry needed.
        body = get(f"http://127.0.0.1:{unused_port}/metrics")
        assert "lxcwatch_samples_total" in body and "\nlxcwatch_samples_total 0" not in body
        assert ready["READY"] == "1" and ready["MAINPID"] == str(proc.pid)
        assert ready["STATUS"].startswith("host interrupt-driven; heavy NICs: none")
        pings = [notify.wait_for("WATCHDOG", 5) for _ in range(5)]
        assert all(p["WATCHDOG"] == "1" for p in pings)
        proc.send_signal(signal.SIGTERM)
        assert notify.wait_for("STOPPING", 10)["STOPPING"] == "1"
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_no_watchdog_pings_without_watchdog_usec(notify, tmp_path, unused_port):
    (tmp_path / "lxc").mkdir()
    proc = start([*tree_args(HOSTS / "tg3-pair", tmp_path / "lxc"), f"--web.listen-address=127.0.0.1:{unused_port}",
                  "--sample.interval=100ms"], {"NOTIFY_SOCKET": notify.path})
    try:
        notify.wait_for("READY", 30)
        # Ten sampling intervals: with a watchdog, each would have sent a ping.
        assert notify.receive(1.0) is None, notify.messages
    finally:
        proc.kill()
        proc.wait()


def test_a_hung_sampling_loop_stops_the_pings_while_scrapes_go_on(notify, tmp_path, unused_port):
    """A stuck read only fails its collector (tests/test_hostile_host.py); what is left to hang is the loop itself,
    frozen here with ptrace. The pings stop, scrapes go on and show the sample's age growing."""
    lxc = tmp_path / "lxc"
    lxc.mkdir()
    proc = start([*tree_args(HOSTS / "tg3-pair", lxc), f"--web.listen-address=127.0.0.1:{unused_port}",
                  "--sample.interval=100ms"], {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"})
    url = f"http://127.0.0.1:{unused_port}/metrics"
    try:
        notify.wait_for("READY", 30)
        notify.wait_for("WATCHDOG", 5)
        with frozen_thread(proc.pid, "sampler"):
            deadline = time.monotonic() + 5
            while notify.receive(0.5) is not None:  # a ping sent before the freeze
                assert time.monotonic() < deadline, "the pings did not stop"
            assert notify.receive(2.0) is None, "a ping from a hung loop"
            assert Exposition(get(url)).value("lxcwatch_last_sample_age_seconds") >= 2.0  # still serving, and aging
        assert notify.wait_for("WATCHDOG", 5)["WATCHDOG"] == "1"
        assert Exposition(get(url)).value("lxcwatch_last_sample_age_seconds") < 1.0
    finally:
        proc.kill()
        proc.wait()


def test_status_follows_the_host_mode(notify, tmp_path, unused_port):
    """A corpus trace of both NICs sliding into polling, replayed ten times faster than it was taken."""
    root = tmp_path / "root"
    replay = subprocess.Popen([lxcwatch_binary(), "replay", str(CORPUS / "both_nics_heavy-1.trace.gz"),
                               f"--out-root={root}", "--speed=10"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (root / "proc" / "net" / "dev").exists():
            with pytest.raises(subprocess.TimeoutExpired, match="replay"):  # it must not have exited
                replay.wait(timeout=0.02)
            assert time.monotonic() < deadline, "the replay wrote no tree"
        (tmp_path / "lxc").mkdir()
        proc = start([*tree_args(root, tmp_path / "lxc"), f"--web.listen-address=127.0.0.1:{unused_port}",
                      "--sample.interval=100ms"], {"NOTIFY_SOCKET": notify.path})
        try:
            assert "interrupt-driven" in notify.wait_for("READY", 30)["STATUS"]
            heavy = notify.wait_for("STATUS", 30, value="host NAPI-heavy (nic)")["STATUS"]
            assert "eth0 (" in heavy or "eth1 (" in heavy
            notify.wait_for("STATUS", 30, value="host interrupt-driven")
        finally:
            proc.kill()
            proc.wait()
    finally:
        replay.kill()
        replay.wait()


# --- reload ----------------------------------------------------------------------------------------------------


def write_args(path: Path, args: str) -> None:
    tmp = path.with_suffix(".new")
    tmp.write_text(f"# flags of lxcwatch\nARGS=\"{args}\"\n")
    tmp.rename(path)


def loaded_at(exposition) -> float:
    return exposition.value("lxcwatch_config_last_reload_success_timestamp_seconds")


def test_sighup_reloads_the_flags_without_dropping_the_listener(tmp_path):
    flags = tmp_path / "lxcwatch"
    (tmp_path / "empty").mkdir()
    write_args(flags, f"--replica.group=g --replica.name=a --path.lxc={tmp_path / 'empty'}")
    agent = Agent([*tree_args(HOSTS / "tg3-pair", tmp_path / "empty")[:2], f"--config.file={flags}",
                   "--sample.interval=100ms"])
    refused, stop = [], threading.Event()

    def poll():
        while not stop.is_set():
            try:
                agent.scrape_text()
            except OSError as e:
                refused.append(e)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        first = agent.wait_for(lambda e: e.value("lxcwatch_replica_info", replica_group="g", replica="a") == 1, "a")
        assert not first.find("lxcwatch_container_info")
        started = loaded_at(first)

        # New name, new LXC path (lxc-hybrid's containers, stopped as far as this tree knows), fewer collectors.
        write_args(flags, f"--replica.group=g --replica.name=b --path.lxc={HOSTS / 'lxc-hybrid' / 'var' / 'lib' / 'lxc'}"
                          " --no-collector.kthreads")
        agent.proc.send_signal(signal.SIGHUP)
        after = agent.wait_for(lambda e: e.value("lxcwatch_replica_info", replica_group="g", replica="b") == 1
                               and e.find("lxcwatch_container_info"), "the reloaded flags")
        assert not after.find("lxcwatch_replica_info", replica="a")
        assert after.value("lxcwatch_config_last_reload_successful") == 1
        assert loaded_at(after) > started
        assert {s.labels["container"] for s in after.find("lxcwatch_container_info")} >= {"web", "db", "old"}
        assert not after.find("lxcwatch_scrape_collector_success", collector="kthreads")
        # The modes carry over: the sample count goes on rather than starting again.
        assert after.value("lxcwatch_samples_total") > first.value("lxcwatch_samples_total")

        # A broken file: the running configuration stays, and the metric says so.
        flags.write_text('ARGS="--replica.name=c\n')
        agent.proc.send_signal(signal.SIGHUP)
        bad = agent.wait_for(lambda e: e.value("lxcwatch_config_last_reload_successful") == 0, "a failed reload")
        assert bad.value("lxcwatch_replica_info", replica_group="g", replica="b") == 1
        assert f"{flags}:1: No closing quotation" in agent.output()

        # Flags that need a restart: the rest applies, the listener stays where it was, and until a restart the
        # reload counts as failed, with the flags named as typed (an abbreviation in full).
        write_args(flags, "--replica.group=g --replica.name=d --web.listen-address=127.0.0.1:1")
        agent.proc.send_signal(signal.SIGHUP)
        half = agent.wait_for(lambda e: e.value("lxcwatch_replica_info", replica_group="g", replica="d") == 1, "d")
        assert half.value("lxcwatch_config_last_reload_successful") == 0
        assert loaded_at(half) == loaded_at(after)
        assert "--web.listen-address changed; restart needed to apply it" in agent.output()
        web = tmp_path / "web.yml"
        web.write_text("basic_auth_users:\n  u: $2b$04$Y2pB2sn6EVqD/HulbeX8wORvVmDV4HnWTJugmS0qaPwyJPi2I1oP6\n")
        write_args(flags, f"--replica.group=g --replica.name=e --web.config={web} --kernel.events")
        agent.proc.send_signal(signal.SIGHUP)
        still = agent.wait_for(lambda e: e.value("lxcwatch_replica_info", replica_group="g", replica="e") == 1, "e")
        assert still.value("lxcwatch_config_last_reload_successful") == 0  # the scrape itself shows auth is not on
        assert "--kernel.events, --web.config.file changed; restart needed to apply them" in agent.output()
        # Back to what it runs with: a complete reload again.
        write_args(flags, "--replica.group=g --replica.name=f")
        agent.proc.send_signal(signal.SIGHUP)
        whole = agent.wait_for(lambda e: e.value("lxcwatch_replica_info", replica_group="g", replica="f") == 1, "f")
        assert whole.value("lxcwatch_config_last_reload_successful") == 1
    finally:
        stop.set()
        poller.join()
        agent.stop()
    assert not refused, f"the listener refused {len(refused)} scrapes during reloads: {refused[0]}"
    assert agent.proc.returncode == 0


def test_a_bad_config_file_at_start_is_one_line(tmp_path):
    flags = tmp_path / "lxcwatch"
    flags.write_text("ARGS='--sample.interval=soon'\n")
    out = subprocess.run([lxcwatch_binary(), f"--config.file={flags}"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr == "lxcwatch: error: invalid duration 'soon': want e.g. 1s, 500ms, 1m30s\n"
    out = subprocess.run([lxcwatch_binary(), f"--config.file={tmp_path / 'missing'}"], capture_output=True,
                         text=True, timeout=30)
    assert (out.returncode, out.stderr) == (1, f"lxcwatch: error: --config.file={tmp_path / 'missing'}: "
                                               "No such file or directory\n")


# --- pure parts ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, args", [
    ('ARGS=""\n', []),
    ("# nothing\n\n", []),
    ('# flags\nARGS="--replica.group=web --replica.name=\'a b\'"\n', ["--replica.group=web", "--replica.name=a b"]),
    ("ARGS='--path.lxc=/var/lib/lxc --path.lxc=/srv/lxc'  # two paths\n", ["--path.lxc=/var/lib/lxc", "--path.lxc=/srv/lxc"]),
    ('ARGS=--log.level=debug\n', ["--log.level=debug"]),
])
def test_args_file(tmp_path, text, args):
    (tmp_path / "f").write_text(text)
    assert config.read_args_file(str(tmp_path / "f")) == args


@pytest.mark.parametrize("text, message", [
    ('ARGS="--a\n', "f:1: No closing quotation"),
    ('# x\nOPTS="--a"\n', 'f:2: want ARGS="--flag=value ..."'),
    ('ARGS="--a"\nARGS="--b"\n', "f:2: ARGS is set twice"),
    ("ARGS=--a --b\n", 'f:1: want ARGS="--flag=value ..."'),
    ('ARGS="--config.file=/etc/other"\n', "f: --config.file cannot name another file"),
])
def test_bad_args_file(tmp_path, text, message):
    (tmp_path / "f").write_text(text)
    with pytest.raises(UsageError) as e:
        config.read_args_file(str(tmp_path / "f"))
    assert str(e.value) == f"{tmp_path}/{message}"


def snapshot(failing: tuple[str, ...] = ()) -> Snapshot:
    results = {name: CollectorResult(name not in failing, 0.001, "boom" if name in failing else "")
               for name in ("softnet", "interrupts")}
    return build(None, 1, 0.0, 0.0, {}, results)


def nic(device: str, heavy: bool, reason: str) -> classifier.NicVerdict:
    return classifier.NicVerdict(device, classifier.Mode(heavy, reason), reason, None, None, 0.0)


@pytest.mark.parametrize("verdict, failing, line", [
    (classifier.Verdict(), (), "host interrupt-driven; heavy NICs: none"),
    (classifier.Verdict({"eth1": nic("eth1", True, "time_squeeze"), "eth0": nic("eth0", True, "packets_per_interrupt"),
                         "eth2": nic("eth2", False, "none")}, host=classifier.Mode(True, "nic")), ("interrupts",),
     "host NAPI-heavy (nic); heavy NICs: eth0 (packets_per_interrupt), eth1 (time_squeeze); "
     "failing collectors: interrupts"),
    (classifier.Verdict(host=classifier.Mode(True, "softnet_pressure")), (),
     "host NAPI-heavy (softnet_pressure); heavy NICs: none"),
    (classifier.Verdict(host=classifier.Mode(True, "nic"), host_missing=("softnet",)), ("softnet",),
     "host verdict unknown (softnet failed); heavy NICs: none; failing collectors: softnet"),
])
def test_status_line(verdict, failing, line):
    assert status.status_line(snapshot(failing), verdict) == line


@pytest.mark.parametrize("env, seconds", [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
])
def test_watchdog_interval(env, seconds):
    assert service.watchdog_interval(env) == seconds


def test_watchdog_pid_of_this_process_counts():
    assert service.watchdog_interval({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid())}) == 0.5


def test_journal_fields_carry_the_log_fields_upper_case():
    record = logging.LogRecord("lxcwatch.sampler", logging.WARNING, __file__, 1, "nic mode changed", (), None)
    record.__dict__.update({"device": "eth0", "mode": "napi_heavy", "retry-after": 3, "2nd": "x"})
    assert logs.journal_fields(record) == {
        "MESSAGE": "nic mode changed", "PRIORITY": "4", "SYSLOG_IDENTIFIER": "lxcwatch", "LOGGER": "lxcwatch.sampler",
        "DEVICE": "eth0", "MODE": "napi_heavy", "RETRY_AFTER": "3", "F_2ND": "x"}


def test_stderr_is_the_journal_only_when_journal_stream_names_it(tmp_path):
    st = os.fstat(2)
    assert logs.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert not logs.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
    assert not logs.stderr_is_journal({})


def test_notifier_sends_only_under_systemd():
    assert not service.Notifier({}).enabled
    assert service.Notifier({"WATCHDOG_USEC": "1000000"}).watchdog is None  # no socket: nobody to ping
    watched = service.Notifier({"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "1000000"})
    assert watched.enabled and watched.watchdog == 1.0
