"""Reads the flight recorder after a crash: the last minutes before the end as a summary and a timeline picture."""

import datetime
import os

from lxcwatch import blackbox, flight_recorder, klog
from lxcwatch.errors import RuntimeFailure, UsageError
from lxcwatch.flight_recorder import SAMPLE, START, STOP

WIDTH, PANEL, BAND, LEFT, RIGHT, TOP = 1200, 150, 22, 90, 170, 40
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]
HEAVY, CALM, EVENT = (255, 160, 0), (160, 200, 160), (120, 0, 120)
STATE_COLOURS = {"RUNNING": (44, 160, 44), "STOPPED": (150, 150, 150), "FROZEN": (23, 190, 207)}


def add_arguments(p) -> None:
    p.add_argument("--recorder.path", dest="ring", default=blackbox.DEFAULT_RING, metavar="PATH",
                   help=f"the flight recorder ring (default {blackbox.DEFAULT_RING})")
    p.add_argument("--around", default=None, metavar="TIME",
                   help="end of the window: 2025-11-24T03:12:00 (local time), or seconds since the epoch "
                        "(default: the end of the last run that ended uncleanly in an earlier boot, else of the last run)")
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


def runs(records: list) -> list[dict]:
    """Records grouped by agent run: {"start": data, "stop": data or None, "samples": [data, ...]}."""
    out: list[dict] = []
    for r in records:
        if r.kind == START or not out:
            out.append({"start": r.data if r.kind == START else {}, "stop": None, "samples": []})
        if r.kind == SAMPLE:
            out[-1]["samples"].append(r.data)
        elif r.kind == STOP:
            out[-1]["stop"] = r.data
    return out


def choose(all_runs: list[dict], boot: str) -> dict:
    crashed = [r for r in all_runs if r["stop"] is None and r["start"].get("boot") != boot and r["samples"]]
    return crashed[-1] if crashed else all_runs[-1]


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


def summary(run: dict, window: list[dict], start: float, end: float, events, pstore, current_boot: str) -> str:
    lines = [f"lxcwatch postmortem: {stamp(start)} .. {stamp(end)}"]
    boot = run["start"].get("boot", "?")
    if run["stop"]:
        lines.append(f"run: started {stamp(run['start'].get('t', 0))}, boot {boot}; stopped cleanly at {stamp(run['stop']['t'])}")
    else:
        last = run["samples"][-1]["t"] if run["samples"] else 0
        where = "an earlier boot" if boot != current_boot else "this boot"
        lines.append(f"run: started {stamp(run['start'].get('t', 0))}, boot {boot} ({where}); "
                     f"ENDED UNCLEANLY: last record {stamp(last)}, no clean stop")
    lines.append(f"samples in window: {len(window)}")
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


def run(args) -> int:
    if not os.path.exists(args.ring):
        raise RuntimeFailure(f"{args.ring}: no flight recorder ring there (see --recorder.path)")
    if args.minutes <= 0:
        raise UsageError(f"invalid --minutes {args.minutes}: must be positive")
    try:
        records = flight_recorder.read(args.ring)
    except OSError as e:
        raise RuntimeFailure(f"{args.ring}: {e.strerror}") from None
    if not any(r.kind == SAMPLE for r in records):
        raise RuntimeFailure(f"{args.ring}: no samples recorded")
    current = flight_recorder.boot_id()
    all_runs = runs(records)
    if args.around is not None:
        end = parse_time(args.around)
        started = [r for r in all_runs if r["samples"] and r["samples"][0]["t"] <= end]
        run_ = started[-1] if started else all_runs[-1]
    else:
        run_ = choose(all_runs, current)
        end = run_["samples"][-1]["t"]
    start = end - args.minutes * 60
    window = [s for s in run_["samples"] if start <= s["t"] <= end]
    if not window:
        raise RuntimeFailure(f"no samples between {stamp(start)} and {stamp(end)}")
    start = window[0]["t"]  # a run shorter than the window fills the picture
    boot = run_["start"].get("boot", "")
    events = kernel_events(boot, args.journal)
    pstore = klog.count(klog.pstore_lines(args.pstore)) if run_["stop"] is None and boot != current else {}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "summary.txt"), "w") as f:
        f.write(summary(run_, window, start, end, events, pstore, current))
    timeline(window, start, end, events, os.path.join(args.out, "timeline.png"))
    print(f"{os.path.join(args.out, 'summary.txt')}\n{os.path.join(args.out, 'timeline.png')}")
    return 0

