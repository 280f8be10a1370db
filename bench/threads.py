"""Where the agent's CPU goes, thread by thread, on the bench tree (128 CPUs, 8 NICs x 32 queues, 1013 links) with
its counters moving: the CPU time each thread ran (/proc/PID/task/TID/schedstat, in ns) per second of three windows:
nobody connected; a kept-alive connection idle between scrapes, as Prometheus keeps one; one scrape a second on it.

Usage: .venv/bin/python bench/threads.py [--seconds N]"""

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
import synthetic_host  # noqa: E402
from bench import hang_up, scrape  # noqa: E402

WINDOWS = ("nobody connected", "kept-alive, idle", "one scrape a second")


def thread_cpu(pid: int) -> dict[tuple[int, str], float]:
    """(tid, name) -> seconds on CPU so far, for each thread of `pid`."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[int(tid), name] = int(f.read().split()[0]) / 1e9
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return out


def window(pid: int, url: str, seconds: int, which: str) -> dict[str, float]:
    """Thread name -> ms of CPU per second over the window (threads of one name summed)."""
    if which == WINDOWS[1]:
        scrape(url)  # the connection opened, then left idle
    before, t0 = thread_cpu(pid), time.monotonic()
    for i in range(seconds):
        if which == WINDOWS[2]:
            scrape(url)
        time.sleep(max(0.0, t0 + i + 1 - time.monotonic()))
    after, elapsed = thread_cpu(pid), time.monotonic() - t0
    out: dict[str, float] = {}
    for key, cpu in after.items():
        name = "main" if key[0] == pid else "http-worker-N" if key[1].startswith("http-worker-") else key[1]
        out[name] = out.get(name, 0.0) + (cpu - before.get(key, 0.0)) / elapsed * 1000
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20, help="length of each window (default 20)")
    args = parser.parse_args(argv)
    tree_args = bench.parse_args([])  # bench.py's tree, flags and warm-up
    workdir = Path(tempfile.mkdtemp(prefix="lxcwatch-threads-"))
    try:
        tree = workdir / "host"
        host = synthetic_host.build(str(tree), tree_args.cpus, tree_args.nics, tree_args.queues, tree_args.veths, 0)
        with bench.Counters(str(tree), host, tree_args.interval / 2), \
                bench.lxcwatch_running(shlex.split(tree_args.lxcwatch), tree, tree_args, workdir) as agent:
            figures = []
            for which in WINDOWS:
                if which == WINDOWS[0]:
                    hang_up(agent.url)
                figures.append(window(agent.proc.pid, agent.url, args.seconds, which))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    names = sorted({n for f in figures for n in f}, key=lambda n: -max(f.get(n, 0.0) for f in figures))
    print(f"CPU ms per second of each thread, windows of {args.seconds} s (/proc/PID/task/TID/schedstat)\n")
    print("| thread | " + " | ".join(WINDOWS) + " |\n|---|" + "---:|" * len(WINDOWS))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{f.get(name, 0.0):.2f}" for f in figures) + " |")
    print("| **all** | " + " | ".join(f"**{sum(f.values()):.2f}**" for f in figures) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
