"""The postmortem's timeline picture: rates per NIC, NAPI-heavy bands, container states and kernel events."""

import datetime
import io

from lxcwatch.blackbox.postmortem import stamp

WIDTH, PANEL, BAND, LEFT, RIGHT, TOP = 1200, 150, 22, 90, 170, 40
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]
HEAVY, CALM, EVENT = (255, 160, 0), (160, 200, 160), (120, 0, 120)
STATE_COLOURS = {"RUNNING": (44, 160, 44), "STOPPED": (150, 150, 150), "FROZEN": (23, 190, 207)}


def si(value: float) -> str:
    """An axis label a person reads at a glance: 8.01M, 249k, 2.29k, 64, 0.5."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def timeline(window: list[dict], start: float, end: float, events) -> bytes:
    """The picture as PNG bytes: a panel per figure, a mode band per NIC, a state band per container."""
    from PIL import Image, ImageDraw, ImageFont  # the [postmortem] extra

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
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()
