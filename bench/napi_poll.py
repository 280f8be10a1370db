"""Cost of the napi_poll collector on the live kernel: per NAPI poll, and per sample on a 128-CPU, 8-NIC host.

Per poll: one UDP sender in a namespace pushes --packets datagrams through a veth whose own NAPI polls them
(tests/support/napi_flood.py, not threaded: the poll runs in the sender's syscall, so its cost lands in the sender's
CPU time, measured with the children's rusage). Rounds alternate between no counting events, the events of
the veth alone, and the events of 8 devices (the veth and 7 absent names: every poll runs through all 24
filters on its CPU). The cost per poll is the difference of the median CPU time per round over the polls
the events counted.

Per sample: the collector's read() of 8 devices. A 128-CPU host is stood in for by 128 event groups spread
over this machine's CPUs (the cpus list names each CPU 64 times): the same 3072 descriptors and 128 group
reads per sample. On a real 128-CPU host 127 of those reads interrupt another CPU (an IPI per read), here
about half do. Needs root and tracefs (mounted for the run if it is not)."""

import argparse
import datetime
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the flood lab of the tests: tests/support/napi_flood.py
from bench import write_docs  # noqa: E402
from tests.support.napi_flood import FloodLab, Tracefs  # noqa: E402

from lxcwatch.kernel import cpu_list  # noqa: E402
from lxcwatch.sources.perf_napi_poll import PerfNapiPolls  # noqa: E402

RESULT = REPO / "bench" / "out" / "napi_poll.md"
DOCS_START, DOCS_END = "<!-- bench:napi_poll:start -->", "<!-- bench:napi_poll:end -->"
ABSENT = [f"lxwbench{i}" for i in range(7)]


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def send_round(lab: FloodLab, packets: int) -> tuple[float, float]:
    """(CPU seconds of the sender, wall seconds) for `packets` datagrams back to back."""
    cpu, wall = children_cpu(), time.perf_counter()
    lab.trickle(packets, gap=0.0)
    return children_cpu() - cpu, time.perf_counter() - wall


def per_poll(lab: FloodLab, rounds: int, packets: int) -> dict:
    variants = {"none": None, "1 device": [lab.device], "8 devices": [lab.device, *ABSENT]}
    cpu = {name: [] for name in variants}
    polls, wall = [], []
    for r in range(rounds):
        for name, devices in variants.items():
            counter = PerfNapiPolls() if devices else None
            before = counter.read(devices).counts[lab.device] if counter else None
            seconds, elapsed = send_round(lab, packets)
            cpu[name].append(seconds)
            if counter:
                polls.append(counter.read(devices).counts[lab.device].polls - before.polls)
                wall.append(elapsed)
                counter.close()
        progress(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {cpu[n][-1]:.3f} s" for n in variants))
    median_polls = statistics.median(polls)
    out = {"polls": median_polls, "poll_rate": median_polls / statistics.median(wall), "packets": packets,
           "rounds": rounds, "cpu": {n: statistics.median(v) for n, v in cpu.items()},
           "spread": {n: (min(v), max(v)) for n, v in cpu.items()}}
    for name in ("1 device", "8 devices"):
        out[f"ns {name}"] = (out["cpu"][name] - out["cpu"]["none"]) / median_polls * 1e9
    out["ns base"] = out["cpu"]["none"] / median_polls * 1e9
    return out


def per_sample(samples: int, cpus: int) -> dict:
    here = cpu_list.parse(Path("/sys", cpu_list.ONLINE).read_text())
    spread = [here[i % len(here)] for i in range(cpus)]
    with tempfile.NamedTemporaryFile("w", suffix=".cpus") as f:
        f.write(",".join(map(str, spread)) + "\n")
        f.flush()
        counter = PerfNapiPolls(cpus_path=f.name)
        devices = [f"lxwnic{i}" for i in range(8)]
        try:
            t = time.perf_counter()
            reading = counter.read(devices)
            open_seconds = time.perf_counter() - t
            assert not reading.unavailable, reading.unavailable
            fds = counter.descriptors()
            cpu, wall = [], []
            for _ in range(samples):
                c, w = time.process_time(), time.perf_counter()
                counter.read(devices)
                cpu.append(time.process_time() - c)
                wall.append(time.perf_counter() - w)
        finally:
            counter.close()
    return {"cpus": cpus, "devices": 8, "fds": fds, "open": open_seconds, "cpu": statistics.median(cpu),
            "wall": statistics.median(wall), "p90": sorted(cpu)[len(cpu) * 9 // 10], "samples": samples,
            "here": len(here)}


def render(poll: dict, sample: dict) -> str:
    base = poll["cpu"]["none"]
    lines = [
        f"Measured {datetime.date.today()} on {platform.node()} ({os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"shared with other work) by `make bench-napi-poll` (bench/napi_poll.py).",
        "",
        f"**Per poll**: {poll['rounds']} rounds of {poll['packets']} datagrams from one Python UDP sender through "
        f"a veth polled by its own NAPI: {poll['polls']:.0f} polls per round ({poll['poll_rate'] / 1e3:.0f}k polls/s, "
        f"about one datagram per poll), the sender's CPU time (the polls run in its syscalls), median of the rounds.",
        "",
        "| counting events open | CPU per round (min..max) | CPU per poll | added per poll |",
        "|---|---|---|---|",
        f"| none | {base:.3f} s ({poll['spread']['none'][0]:.3f}..{poll['spread']['none'][1]:.3f}) | "
        f"{poll['ns base'] / 1e3:.2f} µs | - |",
    ]
    for name in ("1 device", "8 devices"):
        low, high = poll["spread"][name]
        lines.append(f"| {name} ({3 if name == '1 device' else 24} filters per CPU) | {poll['cpu'][name]:.3f} s "
                     f"({low:.3f}..{high:.3f}) | {(poll['cpu'][name] / poll['polls']) * 1e6:.2f} µs | "
                     f"{poll[f'ns {name}']:.0f} ns |")
    per_cpu = poll["ns 8 devices"] * 1e-9 * 100e3 * 100
    lines += [
        "",
        f"At 100k polls/s on a host (e.g. 8 NICs whose interrupts coalescing caps near 12k/s each), the events "
        f"of 8 devices cost {poll['ns 8 devices'] * 1e-3:.2f} µs x 100k/s = {per_cpu:.0f}% of one CPU.",
        "",
        f"**Per sample** ({sample['cpus']} event groups of {sample['devices']} devices x 3 events standing in for "
        f"a {sample['cpus']}-CPU host, spread over the {sample['here']} CPUs here): **{sample['fds']} descriptors**; "
        f"read() of all groups: {sample['cpu'] * 1e3:.2f} ms CPU (p90 {sample['p90'] * 1e3:.2f} ms, wall "
        f"{sample['wall'] * 1e3:.2f} ms), median of {sample['samples']} samples; opening them all (start, or a "
        f"device set change): {sample['open'] * 1e3:.0f} ms. Descriptors = online CPUs x counted devices x 3.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds per variant (default 7)")
    parser.add_argument("--packets", type=int, default=200000, help="datagrams per round (default 200000)")
    parser.add_argument("--cpus", type=int, default=128, help="CPUs of the host stood in for (default 128)")
    parser.add_argument("--samples", type=int, default=50, help="samples timed (default 50)")
    parser.add_argument("--no-write-docs", dest="write_docs", action="store_false",
                        help="do not update docs/performance.md")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench/napi_poll.py needs root: perf_event_open of a tracepoint, namespaces, tracefs")
    tracefs = Tracefs()
    try:
        progress(f"per sample: {args.cpus} groups x 8 devices")
        sample = per_sample(args.samples, args.cpus)
        lab = FloodLab(threaded=False)
        try:
            progress(f"per poll: {args.rounds} rounds x 3 variants x {args.packets} datagrams")
            poll = per_poll(lab, args.rounds, args.packets)
        finally:
            lab.cleanup()
    finally:
        tracefs.close()
    markdown = render(poll, sample)
    print(markdown)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(markdown)
    if args.write_docs:
        write_docs(markdown, (DOCS_START, DOCS_END))
        progress("wrote docs/performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
