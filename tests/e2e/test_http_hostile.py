"""HTTP against a hostile host, on loopback: idle and slow connections, the descriptor limit, more requests than
--web.max-requests. Each attack must leave the agent serving fresh data, bounded in threads, memory and
descriptors, with the failure named in a metric and in one log line; plus HTTP/1.1 keep-alive, pipelining and HEAD."""

import base64
import os
import re
import resource
import select
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request

import bcrypt
import pytest

from tests.support.agent import Agent, Exposition, lxcwatch_binary, thread_id, wait_until
from tests.e2e.test_e2e_golden import tree_args
from tests.e2e.test_web_config import client_context, pki, write_config  # noqa: F401  (pki: the fixture)

INTERVAL = 0.2  # --sample.interval, given after (and so winning over) the one of test_e2e_golden.tree_args
MAX_CONNECTIONS = 256  # lxcwatch.http_server.MAX_CONNECTIONS, restated: the test must not compute its own bound
FD_RESERVE = 32  # lxcwatch.http_server.FD_RESERVE


def args(*more: str) -> list[str]:
    return [*tree_args("tg3-pair"), f"--sample.interval={INTERVAL * 1000:.0f}ms", *more]


def status_of(pid: int) -> dict[str, int]:
    """Threads and VmRSS (KiB) of /proc/PID/status, and the open descriptors."""
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines())
    return {"threads": int(fields["Threads"]), "rss_kib": int(fields["VmRSS"].split()[0]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def cpu_seconds(pid: int) -> float:
    """utime + stime of all the process's threads (/proc/PID/stat fields 14 and 15)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fresh(agent: Agent) -> Exposition:
    """A scrape on a new connection that must succeed, with data no older than a few sampling intervals."""
    seen = agent.scrape()
    age = time.time() - seen.value("lxcwatch_last_sample_timestamp_seconds")
    assert age < 5 * INTERVAL + 1, f"stale data: last sample {age:.1f}s old"
    return seen


def log_lines(agent: Agent, text: str) -> list[str]:
    return [line for line in agent.output().splitlines() if text in line]


def assert_log_is_clean(agent: Agent) -> None:
    out = agent.output()
    assert "Traceback" not in out, out[-3000:]
    assert all(line.startswith("ts=") for line in out.splitlines()), out[-3000:]


def closed_within(sock: socket.socket, since: float, seconds: float) -> float | None:
    """Seconds from `since` (time.monotonic()) until the peer closed `sock` (EOF or reset), None if it is still open
    `seconds` after `since`."""
    while (left := since + seconds - time.monotonic()) > 0:
        if select.select([sock], [], [], left)[0]:
            try:
                if not sock.recv(65536):
                    return time.monotonic() - since
            except (ConnectionError, ssl.SSLError):
                return time.monotonic() - since
    return None


@pytest.fixture
def many_descriptors():
    """Room in this process for a few thousand sockets; the limit is restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 4500:
        pytest.skip(f"needs RLIMIT_NOFILE of 4500 for this test's own sockets, hard limit is {hard}")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.slow
def test_two_thousand_idle_connections(many_descriptors):
    agent = Agent(args())
    idle: list[socket.socket] = []
    try:
        fresh(agent)
        before = status_of(agent.proc.pid)
        for _ in range(2000):
            idle.append(socket.create_connection(("127.0.0.1", agent.port), timeout=5))
        wait_until(lambda: status_of(agent.proc.pid)["fds"] <= before["fds"] + MAX_CONNECTIONS,
                   "the agent to hold at most MAX_CONNECTIONS connections", timeout=10)
        during = status_of(agent.proc.pid)
        t0 = time.monotonic()
        seen = fresh(agent)
        took = time.monotonic() - t0
        print(f"\nbefore {before}, with 2000 idle connections {during}, scrape {took * 1000:.0f} ms")
        assert took < 2.0, f"a scrape took {took:.1f}s beside 2000 idle connections"
        assert during["threads"] <= before["threads"], (before, during)  # an idle connection holds no thread
        assert during["rss_kib"] <= before["rss_kib"] + 20 * 1024, (before, during)
        assert seen.value("lxcwatch_http_connections_rejected_total", reason="connection_limit") >= 2000 - MAX_CONNECTIONS
        assert seen.value("lxcwatch_http_connections_open") <= MAX_CONNECTIONS
    finally:
        for s in idle:
            s.close()
        agent.stop()
    logged = log_lines(agent, "reason=connection_limit")
    assert len(logged) == 1 and "more than 256 connections open" in logged[0], logged
    assert_log_is_clean(agent)


def test_slowloris_is_cut_off_by_the_request_timeout():
    agent = Agent(args("--web.request-timeout=2s"))
    slow = [socket.create_connection(("127.0.0.1", agent.port), timeout=5) for _ in range(20)]
    try:
        for s in slow:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: lxcwatch\r\n")
        started, closed, served = time.monotonic(), {}, None
        while len(closed) < len(slow) and time.monotonic() - started < 6:  # one header byte per socket every 0.2 s
            for i, s in enumerate(slow):
                if i not in closed:
                    try:
                        s.send(b"X")
                    except OSError:
                        closed[i] = time.monotonic() - started
            readable = select.select([s for i, s in enumerate(slow) if i not in closed], [], [], 0.2)[0]
            for s in readable:
                try:
                    eof = not s.recv(4096)
                except OSError:
                    eof = True
                if eof:
                    closed[slow.index(s)] = time.monotonic() - started
            if served is None and time.monotonic() - started > 1:
                served = fresh(agent)  # while the slow ones trickle
        seen = fresh(agent)
        print(f"\nslowloris connections closed after {min(closed.values()):.2f}-{max(closed.values()):.2f}s")
    finally:
        for s in slow:
            s.close()
        agent.stop()
    assert served is not None and not closed.get("before the scrape")
    assert len(closed) == len(slow), f"{len(slow) - len(closed)} trickling connections still open after 6s"
    assert 2 - 0.2 <= min(closed.values()) and max(closed.values()) < 2 + 1.5, closed  # --web.request-timeout
    assert seen.value("lxcwatch_http_connections_rejected_total", reason="request_timeout") >= len(slow)
    logged = log_lines(agent, "reason=request_timeout")
    assert len(logged) == 1 and "request headers not complete" in logged[0], logged
    assert_log_is_clean(agent)


def tls_agent(pki, tmp_path, *more: str) -> Agent:  # noqa: F811
    config = write_config(tmp_path, f"tls_server_config:\n  cert_file: {pki / 'server.crt'}\n"
                                    f"  key_file: {pki / 'server.key'}\n")
    return Agent(args(f"--web.config.file={config}", *more), ssl_context=client_context(pki, None))


def test_tls_handshake_and_idle_after_it_are_timed_out(pki, tmp_path):  # noqa: F811
    agent = tls_agent(pki, tmp_path, "--web.request-timeout=1s")
    try:
        silent = socket.create_connection(("127.0.0.1", agent.port), timeout=5)  # never says hello
        silent_since = time.monotonic()
        shaken = client_context(pki, None).wrap_socket(socket.create_connection(("127.0.0.1", agent.port), timeout=5),
                                                       server_hostname="127.0.0.1")  # handshakes, then says nothing
        shaken_since = time.monotonic()
        fresh(agent)
        handshake_cut, idle_cut = closed_within(silent, silent_since, 5), closed_within(shaken, shaken_since, 5)
        silent.close()
        shaken.close()
        seen = fresh(agent)
    finally:
        agent.stop()
    assert handshake_cut is not None and 1 - 0.1 <= handshake_cut < 1 + 1, handshake_cut
    assert idle_cut is not None and 1 - 0.1 <= idle_cut < 1 + 1, idle_cut
    print(f"\nno handshake: closed after {handshake_cut:.2f}s; idle after the handshake: closed after {idle_cut:.2f}s")
    assert seen.value("lxcwatch_http_connections_rejected_total", reason="tls_handshake_timeout") == 1
    assert seen.value("lxcwatch_http_connections_rejected_total", reason="request_timeout") == 1
    assert len(log_lines(agent, "reason=tls_handshake_timeout")) == 1
    assert len(log_lines(agent, "reason=request_timeout")) == 1
    assert_log_is_clean(agent)


def test_connections_cannot_take_the_collectors_descriptors():
    limit = 96
    agent = Agent(args(), command=["prlimit", f"--nofile={limit}:{limit}", "--", lxcwatch_binary()])
    held: list[socket.socket] = []
    try:
        fresh(agent)
        for _ in range(3 * limit):
            held.append(socket.create_connection(("127.0.0.1", agent.port), timeout=5))
        seen = agent.wait_for(lambda e: e.value("lxcwatch_http_connections_rejected_total",
                                                reason="descriptor_limit") >= limit, "refusals at the reserve")
        cpu0, t0 = cpu_seconds(agent.proc.pid), time.monotonic()
        seen = agent.wait_for(lambda e: e.value("lxcwatch_samples_total") >= seen.value("lxcwatch_samples_total") + 10,
                              "ten more samples")
        busy = (cpu_seconds(agent.proc.pid) - cpu0) / (time.monotonic() - t0)
        during = status_of(agent.proc.pid)
        print(f"\nwith {len(held)} connections held, limit {limit}: {during}, CPU {busy:.1%} of a core")
        failed = [s.labels["collector"] for s in seen.find("lxcwatch_scrape_collector_success") if s.value != 1]
        assert not failed, f"collectors failed at the descriptor reserve: {failed}"
        assert during["fds"] <= limit - FD_RESERVE + 1, during
        assert busy < 0.25, f"{busy:.0%} of a core at the descriptor reserve"
        for s in held:
            s.close()
        held.clear()
        healed = wait_until(lambda: status_of(agent.proc.pid)["fds"] < limit // 2 and fresh(agent), "descriptors back")
        assert healed.value("process_max_fds") == limit
    finally:
        for s in held:
            s.close()
        agent.stop()
    logged = log_lines(agent, "reason=descriptor_limit")
    assert len(logged) == 1 and "RLIMIT_NOFILE" in logged[0], logged
    assert_log_is_clean(agent)


def test_a_client_that_does_not_read_is_cut_off():
    # mlx5-256's exposition (~145 KB) cannot fit in the socket buffers of a client with a tiny window and segments.
    agent = Agent([*tree_args("mlx5-256"), "--web.request-timeout=1s"])
    try:
        fresh_enough = agent.scrape()
        assert len(fresh_enough.text) > 100_000
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
            s.connect(("127.0.0.1", agent.port))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: lxcwatch\r\n\r\n")  # and never reads
            since = time.monotonic()
            seen = agent.wait_for(lambda e: e.value("lxcwatch_http_connections_rejected_total",
                                                    reason="write_timeout") == 1, "the slow reader to be cut off")
            took = time.monotonic() - since
        print(f"\na client that does not read: cut off after {took:.2f}s")
        assert 1 - 0.1 <= took < 1 + 1.5, took  # not before --web.request-timeout, and not long after
        assert seen.value("lxcwatch_http_requests_in_flight") == 1  # this scrape only
    finally:
        agent.stop()
    assert len(log_lines(agent, "reason=write_timeout")) == 1
    assert_log_is_clean(agent)


def prlimit(pid: int, soft: int, hard: int) -> None:
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={soft}:{hard}"], check=True, timeout=10)


def test_accept_out_of_descriptors_backs_off_logs_once_and_recovers():
    agent = Agent(args())
    waiting: list[socket.socket] = []
    try:
        fresh(agent)
        pid = agent.proc.pid
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        prlimit(pid, 3, hard)  # stdin, stdout and stderr: every new descriptor fails with EMFILE
        try:
            for _ in range(20):  # complete in the kernel, then wait in the listen backlog
                waiting.append(socket.create_connection(("127.0.0.1", agent.port), timeout=5))
            wait_until(lambda: log_lines(agent, "cannot accept connections"), "the agent to log EMFILE")
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(3)  # the window CPU is measured over, not a synchronisation
            busy = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        finally:
            prlimit(pid, hard, hard)
        print(f"\nCPU at EMFILE over 3s: {busy:.1%} of a core")
        assert busy < 0.25, f"{busy:.0%} of a core while accept() fails with EMFILE"
        seen = wait_until(lambda: fresh(agent), "a scrape after the limit is raised again", timeout=10)
        assert seen.value("lxcwatch_http_connections_rejected_total", reason="descriptor_limit") >= 1
    finally:
        for s in waiting:
            s.close()
        agent.stop()
    logged = log_lines(agent, "cannot accept connections")
    assert len(logged) == 1 and "err=\"Too many open files\"" in logged[0], logged
    assert len(log_lines(agent, "accepting connections again")) == 1
    assert_log_is_clean(agent)


def test_more_requests_than_max_requests_get_503(tmp_path):
    password = "right"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(12)).decode()  # ~0.25 s per check: requests stay in flight
    config = write_config(tmp_path, f"basic_auth_users:\n  alice: '{hashed}'\n")
    agent = Agent(args(f"--web.config.file={config}", "--web.max-requests=2"), auth=("alice", password))
    wrong = {"Authorization": "Basic " + base64.b64encode(b"alice:wrong").decode()}
    codes: list[int] = []
    bodies: list[bytes] = []

    def request() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(agent.url, headers=wrong), timeout=30) as r:
                codes.append(r.status)
        except urllib.error.HTTPError as e:
            codes.append(e.code)
            bodies.append(e.read())

    try:
        fresh(agent)
        threads = [threading.Thread(target=request) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        seen = fresh(agent)
    finally:
        agent.stop()
    print(f"\n8 concurrent requests with --web.max-requests=2: {sorted(codes)}")
    assert len(codes) == 8 and set(codes) <= {401, 503}, codes
    assert codes.count(503) >= 1, codes
    assert all(b"Limit of concurrent requests reached (2)" in b for b in bodies if b != b"unauthorized\n"), bodies
    assert seen.value("lxcwatch_http_requests_total", code="503") == codes.count(503)
    assert seen.value("lxcwatch_http_requests_total", code="401") == codes.count(401)
    assert len(log_lines(agent, "reason=max_requests")) == 1
    assert_log_is_clean(agent)


def read_response(stream) -> tuple[int, dict[str, str], bytes]:
    """One response from a buffered socket file: status, headers (lower-case names) and Content-Length bytes."""
    status_line = stream.readline()
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, stream.read(int(headers["content-length"]))


def test_keep_alive_pipelining_head_and_headers():
    agent = Agent(args())
    try:
        with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as s, s.makefile("rb") as stream:
            s.sendall(b"GET / HTTP/1.1\r\nHost: lxcwatch\r\n\r\n")
            code, headers, landing = read_response(stream)
            assert code == 200 and b"<h1>lxcwatch</h1>" in landing
            assert "server" not in headers  # no name, let alone the interpreter's version
            assert not re.search(r"python", repr(headers), re.I), headers
            assert headers.get("connection") != "close"

            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: lxcwatch\r\n\r\n")  # a second request, same connection
            code, _, body = read_response(stream)
            assert code == 200 and b"lxcwatch_build_info" in body

            # Pipelined: three requests in one write, answered in order. HEAD has the GET's length and no body: the
            # next response's status line follows its headers directly.
            s.sendall(b"HEAD / HTTP/1.1\r\nHost: lxcwatch\r\n\r\nGET /nope HTTP/1.1\r\nHost: lxcwatch\r\n\r\n"
                      b"GET / HTTP/1.1\r\nHost: lxcwatch\r\nConnection: close\r\n\r\n")
            status_line = stream.readline()
            assert status_line == b"HTTP/1.1 200 OK\r\n"
            head_headers = {}
            while (line := stream.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                head_headers[name.lower()] = value.strip()
            assert int(head_headers["content-length"]) == len(landing)
            assert read_response(stream)[0] == 404
            code, headers, again = read_response(stream)
            assert (code, headers["connection"], again) == (200, "close", landing)
            assert stream.read() == b""  # and the agent closed it

        with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as s, s.makefile("rb") as stream:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")  # HTTP/1.0 without keep-alive: one answer, then closed
            assert read_response(stream)[1]["connection"] == "close"
            assert stream.read() == b""

        with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as s, s.makefile("rb") as stream:
            s.sendall(b"GARBAGE\r\n\r\n")
            assert read_response(stream)[0] == 400
        seen = fresh(agent)
        assert seen.value("lxcwatch_http_connections_rejected_total", reason="bad_request") == 1
    finally:
        agent.stop()
    assert_log_is_clean(agent)


def test_a_reload_applies_new_timeouts_to_new_connections(tmp_path):
    flags = tmp_path / "lxcwatch"
    flags.write_text('ARGS="--web.request-timeout=5s"\n')
    agent = Agent(args(f"--config.file={flags}"))
    try:
        flags.write_text('ARGS="--web.request-timeout=1s"\n')
        agent.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: log_lines(agent, "configuration reloaded"), "the reload")
        with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as silent:
            cut = closed_within(silent, time.monotonic(), 4)
        assert cut is not None and 1 - 0.1 <= cut < 1 + 1, cut
        assert not log_lines(agent, "change only on restart")
    finally:
        agent.stop()
    assert_log_is_clean(agent)


def wakeups(pid: int, tid: int) -> int:
    """Times thread `tid` of `pid` gave up the CPU to wait (voluntary_ctxt_switches): once per wake-up."""
    with open(f"/proc/{pid}/task/{tid}/status") as f:
        return int(next(line for line in f if line.startswith("voluntary_ctxt_switches")).split()[1])


def test_a_kept_alive_idle_connection_sleeps_until_its_idle_timeout():
    """Prometheus keeps its connection between scrapes: the HTTP loop sleeps until that connection's deadline
    instead of looking ten times a second (~1 ms of CPU a second on the bench host), and still cuts it on time."""
    agent = Agent(args("--web.idle-timeout=3s"))
    try:
        fresh(agent)
        loop = thread_id(agent.proc.pid, "http")
        with socket.create_connection(("127.0.0.1", agent.port), timeout=5) as s, s.makefile("rb") as stream:
            s.sendall(b"GET / HTTP/1.1\r\nHost: lxcwatch\r\n\r\n")
            assert read_response(stream)[0] == 200
            answered, before = time.monotonic(), wakeups(agent.proc.pid, loop)
            assert closed_within(s, answered, 1.5) is None  # a window in which it is idle, kept alive
            assert wakeups(agent.proc.pid, loop) - before <= 2  # at TICK (0.1 s) it was 15
            cut = closed_within(s, answered, 6)
        assert cut is not None and 3 - 0.1 <= cut < 3 + 1, cut  # --web.idle-timeout
    finally:
        agent.stop()
    assert_log_is_clean(agent)
