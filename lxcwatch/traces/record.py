"""Records the receive-path files of a host, sample by sample, into a trace (docs/trace-format.md)."""

import math
import os
import signal
import sys
import threading
import time

from lxcwatch import config
from lxcwatch.errors import RuntimeFailure
from lxcwatch.sources.root import Root, is_live
from lxcwatch.traces import trace
from lxcwatch.traces.capture import Capturer, LiveCounts


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, metavar="FILE", help="trace to write (*.trace.gz), replaced if it exists")
    p.add_argument("--duration", required=True, metavar="DURATION", help="how long to record, e.g. 60s, 10m, 1h")
    config.add_source_flags(p)
    p.add_argument("--max-size", dest="max_size", default="64MiB", metavar="SIZE",
                   help="stop before the compressed trace would grow past this, e.g. 64MiB, 10MB, 1024 (default 64MiB)")
    config.add_napi_poll_include_flag(p, "record (on the live host)")


def _kernel_attr(procfs: str, name: str) -> str:
    return Root(procfs).attr("sys/kernel", name) or ""


def record(writer: trace.Writer, capturer: Capturer, interval: float, count: int,
           stop: threading.Event) -> tuple[int, bool]:
    """Writes up to count samples on a fixed grid (a late sample skips the slots it missed); the first sample is
    always taken. Returns (samples written, whether --max-size stopped it)."""
    start = time.monotonic()
    prev, slot, written = trace.Tree(), 0, 0
    while True:
        t = time.monotonic() - start
        tree = capturer.sample()
        if not writer.write(trace.encode(trace.delta(prev, tree, round(t, 3)))):
            return written, True
        prev, written = tree, written + 1
        slot = max(slot + 1, math.floor((time.monotonic() - start) / interval) + 1)
        if slot >= count or stop.wait(start + slot * interval - time.monotonic()):
            return written, False


def run(args) -> int:
    duration, interval = config.duration(args.duration), config.duration(args.interval)
    max_size = config.size(args.max_size)
    config.check_roots(args.procfs, args.sysfs)
    count = max(1, math.ceil(duration / interval - 1e-9))  # samples at t = 0, interval, ... below duration
    include = config.napi_poll_include(args)
    try:
        writer = trace.Writer(open(args.out, "wb"), max_size)
    except OSError as e:
        raise RuntimeFailure(f"--out {args.out}: {e.strerror}") from None
    live = LiveCounts(args.sysfs, include) if is_live(args.sysfs) else None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        head = trace.header(interval, _kernel_attr(args.procfs, "hostname"), time.time(),
                            _kernel_attr(args.procfs, "osrelease"))
        if writer.write(trace.encode(head)):
            written, full = record(writer, Capturer(args.procfs, args.sysfs, live), interval, count, stop)
        else:
            written, full = 0, True
        writer.close()
    except OSError as e:
        raise RuntimeFailure(f"--out {args.out}: {e.strerror or e}") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if live is not None:
            live.close()
    if written == 0:
        os.unlink(args.out)
        raise RuntimeFailure(f"--max-size {args.max_size} is too small for the first sample; nothing recorded")
    if live is not None and live.unavailable:
        print(f"lxcwatch: no NAPI poll counts in the trace: {live.unavailable}", file=sys.stderr)
    what = f"{written} samples ({writer.size} bytes) to {args.out}"
    print(f"lxcwatch: --max-size {args.max_size} reached: stopped after {what}" if full else f"lxcwatch: recorded {what}",
          file=sys.stderr)
    return 0
