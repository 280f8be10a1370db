"""A veth whose NAPI the test controls, UDP floods through it, and the tracefs the tracepoint needs.

Namespace `a` sends to namespace `b` over a bridge in the host namespace. The bridge port `h` receives from
`a`, with GRO on so veth polls with its own NAPI (polls named `h`); with TSO/GSO off at the sender every skb
is GRO-eligible (docs: /work/shared/reference/linux-net-facts.md). `threaded` on `h` moves its polls into a
napi/h kthread: the sender then fills the veth ring between two runs of it, so polls use their whole budget.
Only the test's own namespaces receive traffic. Everything is removed by `cleanup()`."""

import os
import re
import secrets
import subprocess
import sys
import time

from tests.support.netlab import Lab

TRACEFS = "/sys/kernel/tracing"

# A UDP sender: as fast as Python goes for `seconds`, or `count` datagrams `gap` seconds apart.
SENDER = """
import socket, sys, time
target, seconds, count, gap = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload, address = b"x" * 64, (target, 9)
if count:
    for _ in range(count):
        s.sendto(payload, address)
        if gap:
            time.sleep(gap)
else:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(1000):
            s.sendto(payload, address)
"""


class Tracefs:
    """tracefs at /sys/kernel/tracing: mounted here if it was not, unmounted by `close()` only then."""

    def __init__(self):
        self.mounted = False
        if not os.path.isdir(os.path.join(TRACEFS, "events")):
            subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], check=True, timeout=30)
            self.mounted = True

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", TRACEFS], check=True, timeout=30)


def ethtool(*args: str, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, "ethtool", *args], check=True, capture_output=True, timeout=30)


class FloodLab:
    def __init__(self, threaded: bool = True):
        self.lab = Lab()
        try:
            bridge = self.lab.bridge()
            self.sender_ns, receiver_ns = self.lab.netns("a"), self.lab.netns("b")
            self.device, sender = self.lab.veth("h", "p", bridge, self.sender_ns, f"{self.lab.subnet}.1/24")
            self.lab.veth("k", "q", bridge, receiver_ns, f"{self.lab.subnet}.2/24")
            self.target = f"{self.lab.subnet}.2"
            ethtool("-K", sender, "tso", "off", "gso", "off", netns=self.sender_ns)
            ethtool("-K", self.device, "gro", "on")
            if threaded:
                with open(f"/sys/class/net/{self.device}/threaded", "w") as f:
                    f.write("1")
        except BaseException:
            self.lab.cleanup()
            raise

    def _send(self, seconds: float = 0.0, count: int = 0, gap: float = 0.0) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.sender_ns, sys.executable, "-c", SENDER, self.target,
                                 str(seconds), str(count), str(gap)])

    def flood(self, seconds: float, senders: int = 2) -> float:
        """`senders` processes at full speed for `seconds`; returns when all have ended, with the time taken."""
        start = time.monotonic()
        procs = [self._send(seconds=seconds) for _ in range(senders)]
        for proc in procs:
            if proc.wait(timeout=seconds + 60) != 0:
                raise RuntimeError(f"flood sender exited with {proc.returncode}")
        return time.monotonic() - start

    def trickle(self, count: int, gap: float = 0.002) -> None:
        """`count` datagrams `gap` apart (each poll finds one or two, never a full budget); gap 0: back to back."""
        if self._send(count=count, gap=gap).wait(timeout=count * gap + 60) != 0:
            raise RuntimeError("trickle sender failed")

    def cleanup(self) -> None:
        self.lab.cleanup()


class TraceWindow:
    """The napi:napi_poll events of one device, recorded by a private tracefs instance between `__init__` and
    `stop()`: the tracepoint read through tracefs, independently of perf_event_open and its filters."""

    LINE = re.compile(r"napi_poll: napi poll on napi struct \S+ for device (\S+) work (-?\d+) budget (-?\d+)")

    def __init__(self, device: str, buffer_kb: int = 16384):
        self.path = os.path.join(TRACEFS, "instances", f"lxwnp{secrets.token_hex(3)}")
        os.mkdir(self.path)
        try:
            self._write("buffer_size_kb", str(buffer_kb))
            self._write("events/napi/napi_poll/filter", f'dev_name == "{device}"')
            self._write("events/napi/napi_poll/enable", "1")
        except BaseException:
            os.rmdir(self.path)
            raise

    def _write(self, rel: str, value: str) -> None:
        with open(os.path.join(self.path, rel), "w") as f:
            f.write(value)

    def stop(self) -> list[tuple[str, int, int]]:
        """(device, work, budget) of every poll recorded; fails if the ring lost any. Removes the instance."""
        try:
            self._write("events/napi/napi_poll/enable", "0")
            lost = {}
            for cpu in os.listdir(os.path.join(self.path, "per_cpu")):
                with open(os.path.join(self.path, "per_cpu", cpu, "stats")) as f:
                    stats = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
                lost[cpu] = int(stats["overrun"]) + int(stats.get("dropped events", "0"))
            assert not any(lost.values()), f"tracefs ring lost events: {lost}; raise buffer_kb"
            with open(os.path.join(self.path, "trace")) as f:
                return [(m[1], int(m[2]), int(m[3])) for m in self.LINE.finditer(f.read())]
        finally:
            os.rmdir(self.path)
