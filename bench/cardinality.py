"""Series the real agent exports, counted on generated trees: per CPU, queue, NIC, link and container, and per host.

Each per-unit figure is the difference between two agents' expositions on trees that differ by that unit only
(synthetic_host.py for CPUs, NICs, queues and links; synthetic_containers.py for containers, whose own series, the
lxcwatch_container_* families, are counted: the series of a container's host veth are those of a link).
Run: python bench/cardinality.py [--hosts]  (--hosts adds the small, typical and big hosts: ~5 min)"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synthetic_containers  # noqa: E402  (sibling modules)
import synthetic_host  # noqa: E402

# Deterministic expositions: no flight recorder ring, no kernel log of the machine running this.
FIXED = ["--no-recorder", "--no-kernel.events"]
LXC_OFF = ["--no-collector.lxc.cgroup", "--no-collector.lxc.interfaces", "--no-collector.lxc.veths"]
VETHS_OFF = ["--collector.netdev.device-exclude=^veth", "--collector.links.device-exclude=^veth"]
# (name, CPUs, NICs, queues per NIC, containers): issue 16's typical and big hosts. Big is `make bench`'s tree:
# 1000 veths, which here are the containers' (1013 links: lo, 8 NICs, 4 bridges, 1000 veths).
HOSTS = (("small", 4, 1, 4, 10), ("typical", 32, 2, 8, 100), ("big", 128, 8, 32, 1000))


def lxcwatch() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "lxcwatch")
    return beside if os.path.exists(beside) else "lxcwatch"


def own(counts: dict[str, int]) -> int:
    """The containers' own series."""
    return sum(n for name, n in counts.items() if name.startswith("lxcwatch_container_"))


def series(root: str, flags: list[str] = (), interval: str = "1s") -> dict[str, int]:
    """Series per metric name in the agent's exposition of the tree at `root`, after three samples (rates and
    verdicts need two)."""
    with tempfile.TemporaryDirectory() as empty:
        lxc = os.path.join(root, "var", "lib", "lxc")
        port = _free_port()
        args = [lxcwatch(), f"--path.procfs={root}/proc", f"--path.sysfs={root}/sys",
                f"--path.lxc={lxc if os.path.isdir(lxc) else empty}", f"--web.listen-address=127.0.0.1:{port}",
                f"--sample.interval={interval}", *FIXED, *flags]
        log = open(os.path.join(empty, "log"), "w+")  # a file: a pipe nobody drains would stall the agent
        agent = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
        try:
            text = _settled(port, agent, log)
        finally:
            agent.kill()
            agent.wait()
            log.close()
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            counts[name] = counts.get(name, 0) + 1
    return counts


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settled(port: int, agent: subprocess.Popen, log, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"the agent exited: {log.read()}")
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            samples = [line for line in text.splitlines() if line.startswith("lxcwatch_samples_total ")]
            if samples and float(samples[0].split()[1]) >= 3:
                return text
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no third sample within {timeout:.0f}s")


def host(tmp: str, cpus: int, nics: int, queues: int, veths: int) -> str:
    root = tempfile.mkdtemp(dir=tmp)
    synthetic_host.build(root, cpus, nics, queues, veths)
    return root


def containers(tmp: str, n: int) -> str:
    root = tempfile.mkdtemp(dir=tmp)
    synthetic_containers.build(root, n)
    return root


def per_unit(tmp: str, interval: str = "1s") -> dict[str, int]:
    """Series one more of each unit adds, with the default flags and (`*_min`) with the least detail."""
    count = lambda root, flags=(): series(root, list(flags), interval)  # noqa: E731
    total = lambda root, flags=(): sum(count(root, flags).values())  # noqa: E731
    base = total(host(tmp, 2, 1, 2, 1))
    one_ct, two_ct = containers(tmp, 1), containers(tmp, 2)
    queue = (total(host(tmp, 2, 1, 4, 1)) - base) // 2
    return {
        "cpu": (total(host(tmp, 4, 1, 2, 1)) - base) // 2,
        "queue": queue,
        "nic": total(host(tmp, 2, 2, 2, 1)) - base - 2 * queue,  # eth1 with its 2 queues, less the queues
        "link": total(host(tmp, 2, 1, 2, 2)) - base,
        "link_min": total(host(tmp, 2, 1, 2, 2), VETHS_OFF) - total(host(tmp, 2, 1, 2, 1), VETHS_OFF),
        "container": own(count(two_ct)) - own(count(one_ct)),
        "container_min": own(count(two_ct, LXC_OFF)) - own(count(one_ct, LXC_OFF)),
    }


def host_total(tmp: str, cpus: int, nics: int, queues: int, n: int, flags: list[str] = ()) -> int:
    """The host's series with n running containers: the host tree with their n veths, plus the containers' own
    series counted on a containers tree."""
    return sum(series(host(tmp, cpus, nics, queues, n), flags).values()) + own(series(containers(tmp, n), flags))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", action="store_true", help="also count the small, typical and big hosts")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        print("| unit | series | least detail |\n|---|---|---|")
        units = per_unit(tmp)
        for unit in ("cpu", "queue", "nic", "link", "container"):
            print(f"| {unit} | {units[unit]} | {units.get(unit + '_min', units[unit])} |")
        if args.hosts:
            print("\n| host | CPUs | NICs x queues | containers | series | least detail |\n|---|---|---|---|---|---|")
            for name, cpus, nics, queues, n in HOSTS:
                print(f"| {name} | {cpus} | {nics} x {queues} | {n} | {host_total(tmp, cpus, nics, queues, n)} | "
                      f"{host_total(tmp, cpus, nics, queues, n, LXC_OFF + VETHS_OFF)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
