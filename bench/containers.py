"""CPU per sample of the lxc collector: real running busybox containers on this machine, and a synthetic tree.

Both runs call the collector in this process (Sources.open + the `lxc` reader), the way the sampler does,
after one warm-up sample that finds every container; the figure is the median of the CPU time
(time.process_time) of each of --samples calls, with the 10th and 90th percentile beside it.

The live run needs root, lxc and busybox-static: it makes a private LXC path and a bridge (both named lxw*),
creates and starts --live containers from LXC's busybox template, and stops and destroys all of it at the
end, also on failure or SIGTERM. Probes are not part of the figure: they run on their own thread."""

import argparse
import datetime
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
import synthetic_containers
from bench import write_docs

from lxcwatch.collectors import ALL as COLLECTORS
from lxcwatch.sources.host import Sources
from lxcwatch.core.containers import advance

RESULT = REPO / "bench" / "out" / "containers.md"
DOCS = REPO / "docs" / "performance.md"
DOCS_START, DOCS_END = "<!-- bench:containers:start -->", "<!-- bench:containers:end -->"
TARGET_MS = 20.0


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def run(*cmd: str, check: bool = True) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def measure(procfs: str, sysfs: str, lxc_path: str, samples: int) -> dict:
    """CPU per call of the lxc collector, and what the last call saw."""
    sources = Sources.open(procfs, sysfs, (lxc_path,))
    read = COLLECTORS["lxc"].read
    try:
        t0 = time.process_time()
        reading = read(sources)
        first = time.process_time() - t0
        cpu, wall = [], []
        for _ in range(samples):
            c, w = time.process_time(), time.perf_counter()
            reading = read(sources)
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - w)
        states = {}
        for c in advance({}, reading).values():
            states[c.state] = states.get(c.state, 0) + 1
        errors = [r.error for r in reading.containers if r.error]
        kept = len(sources.lxc.files)
    finally:
        sources.close()
    cpu.sort()
    return {"first": first, "median": statistics.median(cpu), "p10": cpu[len(cpu) // 10],
            "p90": cpu[len(cpu) * 9 // 10], "wall": statistics.median(wall), "states": states,
            "errors": errors, "kept": kept, "samples": samples}


# ---- live containers ---------------------------------------------------------------------------------------


class LiveContainers:
    def __init__(self, count: int):
        self.count = count
        self.suffix = os.urandom(2).hex()
        self.bridge = f"lxwbb{self.suffix}"
        self.path = tempfile.mkdtemp(prefix="lxwbench-")
        self.names: list[str] = []

    def __enter__(self):
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "link", "set", self.bridge, "up")
        conf = Path(self.path) / "net.conf"
        conf.write_text(f"lxc.net.0.type = veth\nlxc.net.0.link = {self.bridge}\nlxc.net.0.flags = up\n")
        t0 = time.monotonic()
        for k in range(self.count):
            name = f"lxwb{self.suffix}{k:03d}"
            self.names.append(name)
            run("lxc-create", "-P", self.path, "-t", "busybox", "-n", name, "-f", str(conf))
            rcs = Path(self.path) / name / "rootfs" / "etc" / "init.d" / "rcS"  # no udhcpc: boot completes
            rcs.write_text("".join(line for line in rcs.read_text().splitlines(True) if "udhcpc" not in line))
            run("lxc-start", "-P", self.path, "-n", name)
        progress(f"{self.count} containers created and started in {time.monotonic() - t0:.1f} s")
        deadline = time.monotonic() + 120
        for name in self.names:
            while run("lxc-info", "-P", self.path, "-n", name, "-sH").strip() != "RUNNING":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} is not RUNNING after 120 s")
                time.sleep(0.1)
        return self

    def __exit__(self, *exc):
        progress(f"stopping and destroying {len(self.names)} containers")
        for name in self.names:
            run("lxc-stop", "-P", self.path, "-n", name, "-k", check=False)
            run("lxc-destroy", "-P", self.path, "-n", name, "-f", check=False)
        shutil.rmtree(self.path, ignore_errors=True)
        run("ip", "link", "del", self.bridge, check=False)


def live_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("lxc-create", "lxc-start", "lxc-info", "lxc-stop", "lxc-destroy", "busybox", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


# ---- report ------------------------------------------------------------------------------------------------


def row(label: str, m: dict | None, note: str = "") -> str:
    if m is None:
        return f"| {label} | - | - | - | - | {note} |"
    states = ", ".join(f"{n} {s}" for s, n in sorted(m["states"].items()))
    return (f"| {label} | {m['median'] * 1000:.1f} ms | {m['p10'] * 1000:.1f} / {m['p90'] * 1000:.1f} ms | "
            f"{m['first'] * 1000:.0f} ms | {m['kept']} | {states} |")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def render(live: dict | None, synthetic: dict, args, skipped: str) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        (f"- Run of {now} on {cpu_model()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
         f"Python {platform.python_version()}; {args.samples} samples per row after one warm-up sample."),
        "",
        "| containers | CPU per sample (median) | p10 / p90 | first sample (finds them all) | files kept open | states |",
        "|---|---:|---:|---:|---:|---|",
        row(f"{args.live} real busybox containers (live /proc, /sys, hybrid cgroups)", live, skipped),
        row(f"{args.synthetic} synthetic containers (tree, all running)", synthetic),
        "",
    ]
    per = synthetic["median"] * 1000
    lines.append(f"- Target (< {TARGET_MS:.0f} ms of CPU per sample for {args.synthetic} containers): "
                 f"**{'met' if per < TARGET_MS else 'MISSED'}** ({per:.1f} ms).")
    if live:
        lines.append(f"- Live: {live['median'] * 1e6 / args.live:.0f} µs per running container; "
                     f"synthetic: {synthetic['median'] * 1e6 / args.synthetic:.0f} µs.")
    for label, m in (("live", live), ("synthetic", synthetic)):
        if m and m["errors"]:
            lines.append(f"- {label}: {len(m['errors'])} containers not fully read, e.g. {m['errors'][0]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--live", type=int, default=50, help="real containers to start (default 50; 0 skips)")
    parser.add_argument("--synthetic", type=int, default=500, help="containers in the synthetic tree (default 500)")
    parser.add_argument("--samples", type=int, default=200, help="measured samples per row (default 200)")
    parser.add_argument("--write-docs", action="store_true", help="also rewrite the figures in docs/performance.md")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    live, skipped = None, ""
    reason = live_unavailable() if args.live else "skipped (--live 0)"
    if reason:
        skipped = f"not run: {reason}"
        progress(f"live run {skipped}")
    else:
        with LiveContainers(args.live) as lab:
            progress(f"measuring {args.samples} samples of {args.live} live containers")
            live = measure("/proc", "/sys", lab.path, args.samples)
    workdir = tempfile.mkdtemp(prefix="lxwbench-tree-")
    try:
        t0 = time.monotonic()
        synthetic_containers.build(workdir, args.synthetic)
        progress(f"synthetic tree of {args.synthetic} containers built in {time.monotonic() - t0:.1f} s")
        synthetic = measure(f"{workdir}/proc", f"{workdir}/sys", f"{workdir}/var/lib/lxc", args.samples)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    markdown = render(live, synthetic, args, skipped)
    print(markdown)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(markdown)
    if args.write_docs:
        write_docs(markdown, (DOCS_START, DOCS_END))
        print(f"wrote {DOCS.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
