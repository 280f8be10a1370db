"""Real LXC busybox containers, watched by the real agent; every expected value comes from lxc-info,
lxc-cgroup, ip(8) or /proc. The containers live in private LXC paths on a bridge the module makes, and all
of it is removed at the end, also when a test fails."""

import contextlib
import os
import signal
import socket
import subprocess
import time

import pytest

from tests.support import lxcenv
from tests.support import netlab
from tests.support.agent import Agent, wait_until

pytestmark = [pytest.mark.live, pytest.mark.slow]

PINGS = 10
MEMORY_LIMIT = 128 * 1024 * 1024


@pytest.fixture(scope="module")
def env():
    with lxcenv.lab_with_lxc() as lxc:
        yield lxc


@pytest.fixture(scope="module")
def paths(env):
    return env.lxc_path(), env.lxc_path()


@pytest.fixture(scope="module")
def probes_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("probes") / "probes"
    path.write_text("# declared by test_probes_run_beside_sampling\n")
    return path


@pytest.fixture(scope="module")
def agent(env, paths, probes_file):
    agent = Agent([f"--path.lxc={paths[0]}", f"--path.lxc={paths[1]}", f"--probes.file={probes_file}",
                   "--probes.interval=200ms", "--sample.interval=200ms"])
    yield agent
    agent.stop()


def state(e, name: str) -> str | None:
    """The state the exposition gives the container; None when it has no state series."""
    on = [s.labels["state"] for s in e.find("lxcwatch_container_state", container=name) if s.value == 1]
    assert len(on) <= 1, on
    return on[0] if on else None


def matches_lxc_info(agent, ct, expected: str):
    """Wait until lxc-info says `expected` and the agent agrees; returns that scrape."""
    wait_until(lambda: ct.state() == expected, f"lxc-info to say {expected}")
    return agent.wait_for(lambda e: state(e, ct.name) == ct.state() == expected,
                          f"{ct.name} {expected} as lxc-info says", show=ct.name)


def test_states_and_transitions_follow_lxc_info(env, paths, agent):
    ct = env.create("st", paths[0])
    e = matches_lxc_info(agent, ct, "STOPPED")
    assert e.value("lxcwatch_container_running", container=ct.name) == 0
    assert e.value("lxcwatch_container_info", container=ct.name, lxc_path=paths[0]) == 1
    assert e.value("lxcwatch_container_autostart", container=ct.name) == 0
    assert e.value("lxcwatch_container_read_success", container=ct.name) == 1
    changes = e.value("lxcwatch_container_state_changes_total", container=ct.name)
    assert changes == 0  # first seen stopped, never changed

    steps = 0
    ct.start()
    e = matches_lxc_info(agent, ct, "RUNNING")
    steps += 1
    pid = ct.init_pid()
    assert e.value("lxcwatch_container_running", container=ct.name) == 1
    assert e.value("lxcwatch_container_init_pid", container=ct.name) == pid
    assert e.value("lxcwatch_container_start_time_seconds", container=ct.name) == pytest.approx(
        lxcenv.process_start_time(pid), abs=0.011)

    ct.lxc("lxc-freeze")
    e = matches_lxc_info(agent, ct, "FROZEN")
    steps += 1
    assert e.value("lxcwatch_container_running", container=ct.name) == 1  # LXC's is_running(): not STOPPED

    ct.lxc("lxc-unfreeze")
    matches_lxc_info(agent, ct, "RUNNING")
    steps += 1

    ct.lxc("lxc-stop", "-t", "10")  # a clean halt (busybox init gets lxc.signal.halt), killed after 10 s
    e = matches_lxc_info(agent, ct, "STOPPED")
    steps += 1
    # A stopped container keeps its series, at 0; the ones of a run are gone.
    assert e.value("lxcwatch_container_running", container=ct.name) == 0
    assert [s.value for s in e.find("lxcwatch_container_state", container=ct.name)] == [1, 0, 0, 0, 0, 0]
    assert e.value("lxcwatch_container_init_pid", container=ct.name) is None
    assert not e.find("lxcwatch_container_cpu_seconds_total", container=ct.name)
    # Each step was seen; a step may pass through STARTING or STOPPING on the way.
    delta = e.value("lxcwatch_container_state_changes_total", container=ct.name) - changes
    assert steps <= delta <= 2 * steps

    ct.lxc("lxc-destroy")
    agent.wait_for(lambda e: not e.find("lxcwatch_container_info", container=ct.name), f"{ct.name} series to vanish")
    assert not os.path.exists(os.path.join(paths[0], ct.name))


def test_killing_the_init_stops_the_container(env, paths, agent):
    ct = env.create("kill", paths[0])
    ct.start()
    before = matches_lxc_info(agent, ct, "RUNNING")
    pid = ct.init_pid()
    assert before.value("lxcwatch_container_init_pid", container=ct.name) == pid
    changes = before.value("lxcwatch_container_state_changes_total", container=ct.name)

    os.kill(pid, signal.SIGKILL)
    e = matches_lxc_info(agent, ct, "STOPPED")
    assert e.value("lxcwatch_container_running", container=ct.name) == 0
    assert e.value("lxcwatch_container_state_changes_total", container=ct.name) > changes
    assert e.value("lxcwatch_container_read_success", container=ct.name) == 1  # stopping is no read error

    ct.start()  # and it comes back with a new init
    e = matches_lxc_info(agent, ct, "RUNNING")
    assert e.value("lxcwatch_container_init_pid", container=ct.name) == ct.init_pid() != pid


def test_cgroup_usage_and_counters_match_lxc_and_the_kernel(env, paths, agent):
    v1 = lxcenv.v1_controller("memory")
    limit_key = "lxc.cgroup.memory.limit_in_bytes" if v1 else "lxc.cgroup2.memory.max"
    ct = env.create("use", paths[0], extra=(f"{limit_key} = {MEMORY_LIMIT}",))
    ct.start()
    matches_lxc_info(agent, ct, "RUNNING")
    name = ct.name

    limit = int(ct.cgroup("memory.limit_in_bytes" if v1 else "memory.max"))
    assert limit == MEMORY_LIMIT
    agent.wait_for(lambda e: e.value("lxcwatch_container_memory_limit_bytes", container=name) == limit, "the limit")

    # Gauges of an idle busybox settle: wait until the agent and lxc-cgroup agree.
    memory_key = "memory.usage_in_bytes" if v1 else "memory.current"
    agent.wait_for(lambda e: e.value("lxcwatch_container_memory_bytes", container=name) == int(ct.cgroup(memory_key)),
                   "memory as lxc-cgroup reads it", show=name)
    agent.wait_for(lambda e: e.value("lxcwatch_container_processes", container=name) == int(ct.cgroup("pids.current")),
                   "pids.current as lxc-cgroup reads it", show=name)

    # CPU time is a counter: the agent's value of a sample taken after `low` lies between two readings.
    cpu_key = "cpuacct.usage" if lxcenv.v1_controller("cpuacct") else "cpu.stat"

    def cpu_seconds() -> float:
        text = ct.cgroup(cpu_key)
        return int(text) / 1e9 if cpu_key == "cpuacct.usage" else int(text.split()[1]) / 1e6

    low, asked = cpu_seconds(), time.time()
    e = agent.wait_for(lambda e: e.value("lxcwatch_last_sample_timestamp_seconds") > asked, "a sample after the reading")
    high = cpu_seconds()
    assert low <= e.value("lxcwatch_container_cpu_seconds_total", container=name) <= high
    assert e.value("lxcwatch_container_oom_kills_total", container=name) == 0

    # Packets: the host pings the container; its own eth0 counts the requests in and the replies out.
    rx0 = e.value("lxcwatch_container_receive_packets_total", container=name, interface="eth0")
    tx0 = e.value("lxcwatch_container_transmit_packets_total", container=name, interface="eth0")
    out = subprocess.run(["ping", "-n", "-q", "-c", str(PINGS), "-i", "0.01", "-W", "2", ct.address],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    agent.wait_for(lambda e: e.value("lxcwatch_container_receive_packets_total", container=name, interface="eth0") - rx0 >= PINGS
                   and e.value("lxcwatch_container_transmit_packets_total", container=name, interface="eth0") - tx0 >= PINGS,
                   f"eth0 counters to move by {PINGS}", show=name)
    assert e.value("lxcwatch_container_receive_dropped_total", container=name, interface="eth0") is not None
    assert not e.find("lxcwatch_container_receive_packets_total", container=name, interface="lo")


def test_a_veth_detached_from_its_bridge_is_reported(env, paths, agent):
    pair = env.lab.name("vp")  # lxc.net.0.veth.pair: the host end gets an lxw name the lab's checks see
    ct = env.create("veth", paths[0], veth_pair=pair)
    ct.start()
    matches_lxc_info(agent, ct, "RUNNING")
    device = ct.link()
    assert device == pair
    assert lxcenv.master_of(device) == env.bridge and lxcenv.operstate_of(device) == "up"

    def veth(e, master):
        return e.find("lxcwatch_container_veth_info", container=ct.name, device=device, interface="eth0",
                      bridge=env.bridge, master=master)

    e = agent.wait_for(lambda e: veth(e, env.bridge), "the veth attached", show=ct.name)
    assert e.value("lxcwatch_container_veth_attached", container=ct.name, interface="eth0", bridge=env.bridge) == 1
    assert e.value("lxcwatch_container_veth_up", container=ct.name, interface="eth0") == 1

    netlab.ip("link", "set", device, "nomaster")
    assert lxcenv.master_of(device) == ""
    e = agent.wait_for(lambda e: veth(e, ""), "the veth detached", show=ct.name)
    assert e.value("lxcwatch_container_veth_attached", container=ct.name, interface="eth0", bridge=env.bridge) == 0
    assert state(e, ct.name) == ct.state() == "RUNNING"  # detached is not stopped

    netlab.ip("link", "set", device, "down")
    assert lxcenv.operstate_of(device) == "down"
    agent.wait_for(lambda e: e.value("lxcwatch_container_veth_up", container=ct.name, interface="eth0") == 0,
                   "the veth down", show=ct.name)

    netlab.ip("link", "set", device, "master", env.bridge)
    netlab.ip("link", "set", device, "up")
    agent.wait_for(lambda e: e.value("lxcwatch_container_veth_attached", container=ct.name, interface="eth0",
                                     bridge=env.bridge) == 1, "the veth attached again", show=ct.name)


def test_auto_named_veth_and_a_second_lxc_path(env, paths, agent):
    ct = env.create("p2", paths[1], extra=("lxc.start.auto = 1",))
    ct.start()
    e = matches_lxc_info(agent, ct, "RUNNING")
    device = ct.link()  # LXC's generated vethXXXXXX, found through the container's network namespace
    assert device.startswith("veth")
    assert e.value("lxcwatch_container_info", container=ct.name, lxc_path=paths[1]) == 1
    assert e.value("lxcwatch_container_autostart", container=ct.name) == 1
    agent.wait_for(lambda e: e.value("lxcwatch_container_veth_attached", container=ct.name, interface="eth0",
                                     bridge=env.bridge) == 1 and e.find("lxcwatch_container_veth_info", container=ct.name,
                                                                        interface="eth0", device=device),
                   f"{device} on {env.bridge}", show=ct.name)
    ct.lxc("lxc-stop", "-k")
    matches_lxc_info(agent, ct, "STOPPED")


@contextlib.contextmanager
def full_listener():
    """A loopback port whose listener's accept queue is full: the kernel drops further SYNs, a connect hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        with socket.create_connection(listener.getsockname()):  # the one queued connection
            yield listener.getsockname()[1]


def test_probes_run_beside_sampling(env, paths, agent, probes_file):
    probe = "# lxcwatch.probe = cfg tcp {address}:8080 500ms\n"
    ct = env.create("prb", paths[0])
    with open(os.path.join(paths[0], ct.name, "config"), "a") as f:
        f.write(probe.format(address=ct.address))
    ct.start()
    matches_lxc_info(agent, ct, "RUNNING")
    ct.lxc("lxc-attach", "--", "/bin/httpd", "-p", "8080", "-h", "/")  # busybox httpd, daemonized
    blackhole = f"{env.lab.subnet}.250"  # in the lab's subnet, nobody there: ARP fails
    with full_listener() as hang_port:
        probes_file.write_text(f"{ct.name} web tcp {ct.address}:8080 1s\n"
                               f"{ct.name} closed tcp {ct.address}:8081 1s\n"
                               f"{ct.name} blackhole tcp {blackhole}:80 1s\n"
                               f"{ct.name} hang tcp 127.0.0.1:{hang_port} 3s\n")

        def ran(e) -> bool:
            # A round that ran before httpd was listening says 0 for web and cfg: wait for one after it.
            return all(e.value("lxcwatch_container_probe_success", container=ct.name, probe=p) is not None
                       for p in ("closed", "blackhole", "hang")) and all(
                e.value("lxcwatch_container_probe_success", container=ct.name, probe=p) == 1 for p in ("web", "cfg"))

        e = agent.wait_for(ran, "every probe's result, web and cfg up", timeout=30, show="probe")
        assert e.value("lxcwatch_container_probe_success", container=ct.name, probe="web") == 1
        assert e.value("lxcwatch_container_probe_success", container=ct.name, probe="cfg") == 1
        assert e.value("lxcwatch_container_probe_success", container=ct.name, probe="closed") == 0  # refused
        assert e.value("lxcwatch_container_probe_success", container=ct.name, probe="blackhole") == 0
        assert e.value("lxcwatch_container_probe_success", container=ct.name, probe="hang") == 0
        assert 0 < e.value("lxcwatch_container_probe_duration_seconds", container=ct.name, probe="web") < 1
        assert e.value("lxcwatch_container_probe_duration_seconds", container=ct.name, probe="hang") >= 3

        # Every probe round waits 3 s for `hang`; sampling goes on at its 200 ms meanwhile.
        first = agent.scrape()
        time.sleep(2.0)  # a measurement window, not a synchronisation
        second = agent.scrape()
        assert second.value("lxcwatch_samples_total") - first.value("lxcwatch_samples_total") >= 6
        assert second.value("lxcwatch_scrape_collector_duration_seconds", collector="lxc") < 0.2

        ct.lxc("lxc-stop", "-k")
        agent.wait_for(lambda e: e.value("lxcwatch_container_probe_success", container=ct.name, probe="web") == 0,
                       "the web probe to fail once the container is stopped", timeout=20, show="probe")
        probes_file.write_text("")
        agent.wait_for(lambda e: not e.find("lxcwatch_container_probe_success", probe="web"),
                       "undeclared probes to vanish", timeout=20)
