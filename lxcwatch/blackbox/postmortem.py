"""Reads the flight recorder after a crash: the last minutes before the end as a summary and a timeline picture."""

import datetime
import os

from lxcwatch.blackbox import recorder as blackbox, flight_recorder, klog, ring_survey
from lxcwatch.errors import RuntimeFailure, UsageError
from lxcwatch.blackbox.flight_recorder import SAMPLE

WIDTH, PANEL, BAND, LEFT, RIGHT, TOP = 1200, 150, 22, 90, 170, 40
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]
HEAVY, CALM, EVENT = (255, 160, 0), (160, 200, 160), (120, 0, 120)
MAX_LINES = 10  # ranges and gaps listed one per line; the rest are counted
STATE_COLOURS = {"RUNNING": (44, 160, 44), "STOPPED": (150, 150, 150), "FROZEN": (23, 190, 207)}


def add_arguments(p) -> None:
    p.add_argument("--recorder.path", dest="ring", default=blackbox.DEFAULT_RING, metavar="PATH",
                   help=f"the flight recorder ring (default {blackbox.DEFAULT_RING})")
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


def choose(views: list[ring_survey.RunView], boot: str) -> ring_survey.RunView:
    """The last run of the latest earlier boot whose last run had no clean stop (the crash), else the ring's last run."""
    last_of_boot = {v.run.boot: v for v in views}
    crashed = [v for v in last_of_boot.values() if boot and v.run.boot != boot and v.stop is None and v.samples]
    return max(crashed, key=lambda v: v.records[-1].seq) if crashed else views[-1]


def stamp(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def episodes(samples: list[dict], device: str) -> list[tuple[float, float | None, str]]:
    """(start, end or None, reason) of each NAPI-heavy stretch of one NIC."""
    out, start, reason = [], None, ""
    for s in samples:
        fig = s["n"].get(device)
        heavy = bool(fig and fig[4])
        if heavy and start is None:
            start, reason = s["t"], fig[5]
        elif not heavy and start is not None:
            out.append((start, s["t"], reason))
            start = None
    if start is not None:
        out.append((start, None, reason))
    return out


def kernel_events(boot: str, journal: str | None) -> list[tuple[float, str, str, str]]:
    """(time, signature, device, message) of the boot's kernel messages that match a signature."""
    if not boot or not klog.journal_available(journal):
        return []
    try:
        return [(t, *hit, m) for t, m in klog.journal_entries(journal, boot) if (hit := klog.match(m))]
    except Exception as e:  # the journal is a help here, not a requirement
        print(f"lxcwatch postmortem: journal unreadable, kernel events skipped: {e}")
        return []


def run_line(view: ring_survey.RunView, status: str, current_boot: str) -> str:
    r, last = view.run, view.records[-1]
    where = "this boot" if r.boot == current_boot else "an earlier boot" if current_boot and r.boot else "boot unknown"
    started = f"started {stamp(r.started)}"
    if not view.start_survives:
        started += f" (its start record is overwritten; the ring holds the run from {stamp(view.records[0].time)})"
    ending = {
        ring_survey.STOPPED: f"stopped cleanly at {stamp(last.time)}",
        ring_survey.RUNNING: f"RUNNING: pid {r.pid} holds the ring in this boot; last record {stamp(last.time)}",
        ring_survey.UNCLEAN: f"ENDED UNCLEANLY: last record {stamp(last.time)}, no clean stop"
                             + ("" if r.boot != current_boot else " (killed; the host stayed up)"),
        ring_survey.UNKNOWN: f"no clean stop, and whether it still runs is unknown (this boot's id or /proc/locks "
                             f"unreadable); last record {stamp(last.time)}",
    }[status]
    return f"run: pid {r.pid}, boot {r.boot or '?'} ({where}), {started}; {ending}"


def damage_lines(path: str, found: flight_recorder.Scan, view: ring_survey.RunView, skipped: int) -> list[str]:
    records, d = found.records, ring_survey.damage(found)
    by_seq = {r.seq: r for r in records}
    wrapped = "; wrapped: older records overwritten" if records[0].seq > 1 else ""
    lines = [f"ring: {path}, {d.file_size} bytes, {len(records)} intact records (seq {records[0].seq}..{records[-1].seq}), "
             f"{stamp(records[0].time)} .. {stamp(records[-1].time)}{wrapped}"]
    damage = []
    if d.missing:
        lost = sum(b - a + 1 for a, b in d.missing)
        damage.append(f"missing records: {lost} between the oldest and the newest, {d.damaged_headers} of them "
                      f"with a corrupt header left")
        for a, b in d.missing[:MAX_LINES]:
            damage.append(f"  seq {a}..{b}: {stamp(by_seq[a - 1].time)} .. {stamp(by_seq[b + 1].time)}")
        if len(d.missing) > MAX_LINES:
            damage.append(f"  and {len(d.missing) - MAX_LINES} more ranges")
    if d.tail:
        damage.append(f"truncated tail: the write after the newest record (offset {d.tail.offset}) is cut short")
    if d.file_size < d.ring_size:
        damage.append(f"ring file truncated: {d.file_size} of {d.ring_size} bytes")
    gaps = ring_survey.gaps(view.samples)
    if gaps:
        damage.append(f"gaps in this run's samples (interval {view.run.interval:g} s): {len(gaps)}, "
                      f"{sum(b.time - a.time for a, b in gaps):.1f} s in all")
        for a, b in gaps[:MAX_LINES]:
            lost = b.seq - a.seq - 1
            why = f"{lost} records lost" if lost else "nothing written (failed writes or a stalled sampler)"
            damage.append(f"  {stamp(a.time)} .. {stamp(b.time)} ({b.time - a.time:.1f} s): {why}")
        if len(gaps) > MAX_LINES:
            damage.append(f"  and {len(gaps) - MAX_LINES} more gaps")
    if view.errors:
        damage.append(f"write errors counted by the agent: {view.errors} (by its last record)")
    skips = [(d.duplicates, "duplicate records"), (d.old_format, "records of the old format (LXFR, not understood)"),
             (skipped, "samples in the window whose payload does not decode")]
    if any(n for n, _ in skips):
        damage.append("skipped: " + ", ".join(f"{n} {what}" for n, what in skips if n))
    lines.append("damage: none found" if not damage else "damage:")
    lines.extend("  " + line for line in damage)
    return lines


def summary(head: list[str], window: list[dict], start: float, end: float, events, pstore) -> str:
    lines = [f"lxcwatch postmortem: {stamp(start)} .. {stamp(end)}", *head]
    devices = sorted({d for s in window for d in s["n"]})
    lines.append("")
    lines.append("NICs")
    for d in devices:
        figs = [s["n"][d] for s in window if d in s["n"]]
        pps = max(f[0] for f in figs)
        ppis = [f[2] for f in figs if f[2] is not None]
        squeezes = max(f[3] for f in figs)
        lines.append(f"  {d}: peak {pps:.0f} packets/s, packets per IRQ max {max(ppis) if ppis else 0:.1f}, "
                     f"peak squeezes {squeezes:.1f}/s")
        eps = episodes(window, d)
        if not eps:
            lines.append("    interrupt-driven throughout")
        for a, b, reason in eps:
            lines.append(f"    napi_heavy {stamp(a)} .. {stamp(b) if b else 'end of recording'} ({reason})")
    host = [(s["t"], s["h"]) for s in window]
    lines.append("")
    lines.append("host")
    changes = [(t, h) for i, (t, h) in enumerate(host) if i == 0 or h[0] != host[i - 1][1][0]]
    for t, h in changes:
        lines.append(f"  {stamp(t)} {'napi_heavy (' + h[1] + ')' if h[0] else 'interrupt-driven'}")
    lines.append("")
    lines.append("containers")
    seen: dict[str, str] = {}
    for s in window:
        for name, state in s.get("x", {}).items():
            if seen.get(name) != state:
                lines.append(f"  {stamp(s['t'])} {name} {state}")
                seen[name] = state
    if not seen:
        lines.append("  none recorded")
    lines.append("")
    lines.append("kernel events (journal)")
    for t, signature, device, message in events:
        lines.append(f"  {stamp(t)} {signature} {device or '-'}: {message}")
    if not events:
        lines.append("  none found")
    if pstore:
        lines.append("kernel events (pstore)")
        for (signature, device), n in sorted(pstore.items()):
            lines.append(f"  {signature} {device or '-'}: {n}")
    return "\n".join(lines) + "\n"


def si(value: float) -> str:
    """An axis label a person reads at a glance: 8.01M, 249k, 2.29k, 64, 0.5."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def timeline(window: list[dict], start: float, end: float, events, path: str) -> tuple[int, int]:
    from PIL import Image, ImageDraw, ImageFont

    devices = sorted({d for s in window for d in s["n"]})
    containers = sorted({c for s in window for c in s.get("x", {})})
    panels = [("packets/s", 0), ("IRQs/s", 1), ("packets per IRQ", 2), ("squeezes/s", 3)]
    height = TOP + len(panels) * (PANEL + 12) + (len(devices) + len(containers)) * BAND + 60
    img = Image.new("RGB", (WIDTH, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    span = max(end - start, 1e-9)
    plot_w = WIDTH - LEFT - RIGHT

    def x(t: float) -> float:
        return LEFT + (t - start) / span * plot_w

    draw.text((LEFT, 10), f"lxcwatch flight recorder {stamp(start)} .. {stamp(end)}", fill="black", font=font)
    y0 = TOP
    colour = {d: COLOURS[i % len(COLOURS)] for i, d in enumerate(devices)}
    for title, index in panels:
        top, bottom = y0, y0 + PANEL
        values = [f[index] for s in window for f in s["n"].values() if f[index] is not None]
        peak = max(values, default=0) or 1.0
        draw.rectangle((LEFT, top, LEFT + plot_w, bottom), outline=(180, 180, 180))
        draw.text((5, top + PANEL // 2 - 6), title, fill="black", font=font)
        draw.text((LEFT - 5, top), si(peak), fill="black", font=font, anchor="ra")
        draw.text((LEFT - 5, bottom), "0", fill="black", font=font, anchor="rd")
        for d in devices:
            points = [(x(s["t"]), bottom - (s["n"][d][index] or 0) / peak * (PANEL - 4))
                      for s in window if d in s["n"] and s["n"][d][index] is not None]
            if len(points) > 1:
                draw.line(points, fill=colour[d], width=2)
        for t, signature, device, _ in events:
            if start <= t <= end:
                draw.line((x(t), top, x(t), bottom), fill=EVENT, width=1)
        y0 = bottom + 12
    for d in devices:  # mode band: amber while NAPI-heavy
        draw.text((5, y0 + 4), f"{d} mode", fill="black", font=font)
        for a, b in zip(window, window[1:]):
            fig = a["n"].get(d)
            if fig:
                draw.rectangle((x(a["t"]), y0 + 2, x(b["t"]), y0 + BAND - 4), fill=HEAVY if fig[4] else CALM)
        y0 += BAND
    for c in containers:
        draw.text((5, y0 + 4), c[:14], fill="black", font=font)
        for a, b in zip(window, window[1:]):
            state = a.get("x", {}).get(c)
            if state:
                draw.rectangle((x(a["t"]), y0 + 2, x(b["t"]), y0 + BAND - 4), fill=STATE_COLOURS.get(state, (255, 200, 0)))
        y0 += BAND
    for t, signature, device, _ in events:
        if start <= t <= end:
            draw.polygon([(x(t) - 5, y0 + 2), (x(t) + 5, y0 + 2), (x(t), y0 + 12)], fill=EVENT)
    y0 += 16
    for i in range(6):  # time axis
        t = start + span * i / 5
        draw.line((x(t), y0, x(t), y0 + 5), fill="black")
        draw.text((x(t), y0 + 7), datetime.datetime.fromtimestamp(t).strftime("%H:%M:%S"), fill="black", font=font, anchor="ma")
    draw.text((LEFT + plot_w // 2, y0 + 22), "time (local)", fill="black", font=font, anchor="ma")
    lx, ly = LEFT + plot_w + 15, TOP
    for d in devices:  # legend
        draw.line((lx, ly + 6, lx + 20, ly + 6), fill=colour[d], width=3)
        draw.text((lx + 25, ly), d, fill="black", font=font)
        ly += 16
    for label, fill in (("NAPI-heavy", HEAVY), ("interrupt-driven", CALM), ("kernel event", EVENT)):
        draw.rectangle((lx, ly + 2, lx + 20, ly + 10), fill=fill)
        draw.text((lx + 25, ly), label, fill="black", font=font)
        ly += 16
    img.save(path, "PNG")
    return img.size


def window_of(found: flight_recorder.Scan, view: ring_survey.RunView, around: float | None,
              minutes: float) -> tuple[list[dict], int, float]:
    """The run's samples in the window as dicts with their time "t", how many did not decode, and the window's end."""
    samples = view.samples
    end = around if around is not None else samples[-1].time
    window, skipped = [], 0
    for r in samples:
        if end - minutes * 60 <= r.time <= end:
            data = found.data(r)
            if data is None:
                skipped += 1
            else:
                window.append({"t": r.time, **data})
    return window, skipped, end


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
    paths = [os.path.join(out, "summary.txt"), os.path.join(out, "timeline.png")]
    try:
        os.makedirs(out, exist_ok=True)
        with open(paths[0], "w") as f:
            f.write(text)
        timeline(window, start, end, events, paths[1])
    except OSError as e:
        raise RuntimeFailure(f"{e.filename or out}: cannot write the postmortem: {e.strerror or e}") from None
    return paths


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
    status = ring_survey.state(view, newest, current, ring_survey.lock_holders(args.ring))
    boot = view.run.boot
    events = kernel_events(boot, args.journal)
    pstore = klog.count(klog.pstore_lines(args.pstore)) if status == ring_survey.UNCLEAN and boot != current else {}
    head = [run_line(view, status, current), f"samples in window: {len(window)}",
            *damage_lines(args.ring, found, view, skipped)]
    paths = write(args.out, summary(head, window, start, end, events, pstore), window, start, end, events)
    print("\n".join(paths))
    return 0
