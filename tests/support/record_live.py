"""Records the live traces of tests/corpus/live/ with the real `lxcwatch record` on this machine (root).

    .venv/bin/python -m tests.support.record_live tests/corpus/live

Two traces of --duration each, with the tracepoint's poll counts beside the counters: `live_veth_flood-1` (a
threaded veth of tests/support/napi_flood.py flooded by two UDP senders from --quiet seconds in, for
--flood seconds, then quiet again) and `quiet` (the same lab, no traffic). The veth is counted through
--collector.napi_poll.device-include; eth0 (this machine's physical NIC) carries only its own traffic.
Beside each trace, NAME.json says what happened when (seconds from the trace's first sample)."""

import argparse
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

from tests.support.agent import lxcwatch_binary, wait_until
from tests.support.napi_flood import FloodLab, Tracefs


def record(out: Path, duration: int, device: str, lab: FloodLab, quiet: float, flood: float) -> dict:
    trace = out.with_suffix(".trace.gz")
    proc = subprocess.Popen([lxcwatch_binary(), "record", f"--out={trace}", f"--duration={duration}s",
                             f"--collector.napi_poll.device-include=^{device}$"])
    wait_until(lambda: trace.exists() and zlib.decompressobj(31).decompress(trace.read_bytes()).count(b"\n") >= 2,
               "the trace's first sample", timeout=30)
    first = time.monotonic()
    coalescing = subprocess.run(["ethtool", "-c", "eth0"], capture_output=True, text=True, check=True).stdout
    events = {"device": device, "threaded": True, "nic": "eth0 (virtio_net, this machine's own traffic only)",
              "ethtool -c eth0": coalescing.splitlines()}
    if flood:
        time.sleep(quiet)
        start = time.monotonic() - first
        lab.flood(flood, senders=2)
        events["flood"] = [round(start, 1), round(time.monotonic() - first, 1)]
        events["senders"] = 2
    if proc.wait(timeout=duration + 60) != 0:
        raise SystemExit(f"lxcwatch record failed for {trace}")
    return events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="directory for NAME.trace.gz and NAME.json")
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--quiet", type=float, default=10.0, help="seconds before the flood")
    parser.add_argument("--flood", type=float, default=40.0, help="seconds of flood")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: perf_event_open, tracefs, namespaces")
    args.out.mkdir(parents=True, exist_ok=True)
    tracefs = Tracefs()
    try:
        lab = FloodLab(threaded=True)
        try:
            for name, flood in (("live_veth_flood-1", args.flood), ("live_quiet-1", 0.0)):
                events = record(args.out / name, args.duration, lab.device, lab, args.quiet, flood)
                (args.out / f"{name}.json").write_text(json.dumps(events, indent=1) + "\n")
                print(f"{name}: {events}", file=sys.stderr)
        finally:
            lab.cleanup()
    finally:
        tracefs.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
