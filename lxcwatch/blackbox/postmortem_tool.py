"""lxcwatch postmortem: reads the flight recorder after a crash and writes the last minutes before the end as
summary.txt and timeline.png."""

import datetime
import os
import sys

from lxcwatch.blackbox import flight_recorder, klog, ring_survey
from lxcwatch.blackbox.flight_recorder import SAMPLE
from lxcwatch.blackbox.options import DEFAULT_RING
from lxcwatch.blackbox.postmortem import choose, damage_lines, run_line, stamp, summary, window_of
from lxcwatch.blackbox.timeline import timeline
from lxcwatch.errors import ParseError, RuntimeFailure, UsageError
from lxcwatch.kernel import kmsg
from lxcwatch.kernel import locks as kernel_locks
from lxcwatch.sources.root import PROC_CAP, read_text


def add_arguments(p) -> None:
    p.add_argument("--recorder.path", dest="ring", default=DEFAULT_RING, metavar="PATH",
                   help=f"the flight recorder ring (default {DEFAULT_RING})")
    p.add_argument("--around", default=None, metavar="TIME",
                   help="end of the window: 2025-11-24T03:12:00 (local time), or seconds since the epoch "
                        "(default: the end of the crash, i.e. of the latest earlier boot's last run if it had no clean stop, "
                        "else of the ring's last run)")
    p.add_argument("--minutes", default=10.0, type=float, metavar="N", help="length of the window (default 10)")
    p.add_argument("--out", default="postmortem", metavar="DIR", help="where summary.txt and timeline.png go (default ./postmortem)")
    p.add_argument("--path.journal", dest="journal", default=None, metavar="DIR",
                   help="journal files to read the run's kernel messages from (default: the system journal)")
    p.add_argument("--path.pstore", dest="pstore", default="/sys/fs/pstore", metavar="DIR",
                   help="pstore, counted when the run ended uncleanly (default /sys/fs/pstore)")


def parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UsageError(f"invalid --around {text!r}: want e.g. 2025-11-24T03:12:00 or seconds since the epoch") from None


def kernel_events(boot: str, journal: str | None) -> list[tuple[float, str, str, str]]:
    """(time, signature, device, message) of the boot's kernel messages that match a signature."""
    if not boot or not klog.journal_available(journal):
        return []
    try:
        return [(t, *hit, m) for t, m in klog.journal_entries(journal, boot) if (hit := kmsg.match(m))]
    except Exception as e:  # the journal is a help here, not a requirement
        print(f"lxcwatch postmortem: journal unreadable, kernel events skipped: {e}")
        return []


def lock_holders(path: str, locks: str = f"/proc/{kernel_locks.SOURCE}") -> set[int] | None:
    """Pids holding a flock on the file (the agent holds its ring's for its whole run), None if /proc/locks is
    unreadable."""
    try:
        st = os.stat(path)
        held = kernel_locks.parse(read_text(locks, PROC_CAP))
    except (OSError, ParseError):
        return None
    return kernel_locks.flock_holders(held, (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))


def read(path: str) -> flight_recorder.Scan:
    try:
        found = flight_recorder.read(path)
    except FileNotFoundError:
        raise RuntimeFailure(f"{path}: no flight recorder ring there (see --recorder.path)") from None
    except OSError as e:
        raise RuntimeFailure(f"{path}: {e.strerror}") from None
    if not found.records and found.old_format:
        raise RuntimeFailure(f"{path}: a ring of the old format (LXFR records, lxcwatch before records named their run): "
                             "not understood by this version")
    if not any(r.kind == SAMPLE for r in found.records):
        raise RuntimeFailure(f"{path}: no samples recorded")
    return found


def write(out: str, text: str, window: list[dict], start: float, end: float, events) -> list[str]:
    """summary.txt, and timeline.png where Pillow (the [postmortem] extra) is installed."""
    try:
        picture = timeline(window, start, end, events)
    except ImportError:
        picture = None
        print("lxcwatch postmortem: timeline.png not drawn: Pillow is not installed (pip install 'lxcwatch[postmortem]')",
              file=sys.stderr)
    files = {"summary.txt": text.encode(), **({"timeline.png": picture} if picture is not None else {})}
    try:
        os.makedirs(out, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(out, name), "wb") as f:
                f.write(data)
    except OSError as e:
        raise RuntimeFailure(f"{e.filename or out}: cannot write the postmortem: {e.strerror or e}") from None
    return [os.path.join(out, name) for name in files]


def run(args) -> int:
    if args.minutes <= 0:
        raise UsageError(f"invalid --minutes {args.minutes}: must be positive")
    around = parse_time(args.around) if args.around is not None else None
    found = read(args.ring)
    current = flight_recorder.boot_id()
    views = [v for v in ring_survey.runs(found.records) if v.samples]
    if around is not None:
        started = [v for v in views if v.samples[0].time <= around]
        view = started[-1] if started else views[-1]
    else:
        view = choose(views, current)
    window, skipped, end = window_of(found, view, around, args.minutes)
    if not window:
        raise RuntimeFailure(f"no samples between {stamp(end - args.minutes * 60)} and {stamp(end)}")
    start = window[0]["t"]  # a run shorter than the window fills the picture
    newest = view.records[-1] is found.records[-1]
    status = ring_survey.state(view, newest, current, lock_holders(args.ring))
    boot = view.run.boot
    events = kernel_events(boot, args.journal)
    pstore = kmsg.count(klog.pstore_lines(args.pstore)) if status == ring_survey.UNCLEAN and boot != current else {}
    head = [run_line(view, status, current), f"samples in window: {len(window)}",
            *damage_lines(args.ring, found, view, skipped)]
    paths = write(args.out, summary(head, window, start, end, events, pstore), window, start, end, events)
    print("\n".join(paths))
    return 0
