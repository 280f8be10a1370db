"""The postmortem's reading of a flight recorder ring: which run crashed, its NAPI-heavy episodes, the summary."""

import datetime

from lxcwatch.blackbox import ring_format, ring_survey
from lxcwatch.core.classifier import mode_name

MAX_LINES = 10  # ranges and gaps listed one per line; the rest are counted


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


def damage_lines(path: str, found: ring_format.Scan, view: ring_survey.RunView, skipped: int) -> list[str]:
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
            lines.append(f"    {mode_name(False)} throughout")
        for a, b, reason in eps:
            lines.append(f"    {mode_name(True)} {stamp(a)} .. {stamp(b) if b else 'end of recording'} ({reason})")
    host = [(s["t"], s["h"]) for s in window]
    lines.append("")
    lines.append("host")
    changes = [(t, h) for i, (t, h) in enumerate(host) if i == 0 or h[0] != host[i - 1][1][0]]
    for t, h in changes:
        lines.append(f"  {stamp(t)} {mode_name(h[0])}{f' ({h[1]})' if h[0] else ''}")
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


def window_of(found: ring_format.Scan, view: ring_survey.RunView, around: float | None,
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
