"""The one-shot `lxcwatch status` view for a person on call: text table or one JSON document."""

import json
from dataclasses import asdict

from lxcwatch.core.classifier import UNKNOWN, Verdict, mode_name
from lxcwatch.core.snapshot import Snapshot


def _mode(evidence: str) -> str:
    """This interval's evidence in the agent's words (classifier.mode_name): napi_heavy, interrupt or unknown."""
    return UNKNOWN if evidence == UNKNOWN else mode_name(evidence != "none")


def report(prev: Snapshot, cur: Snapshot, verdict: Verdict) -> dict:
    """Rates between two samples, with each NIC's polling evidence, promiscuity and driver, as plain data.
    Two samples are too few for hysteresis: the mode shown is this interval's evidence; "unknown" names the
    sources that failed. The rates are the verdict's: `verdict` is the first step over prev and cur."""
    nics = []
    for device, v in verdict.nics.items():
        link = cur.links.get(device)
        nics.append({
            **asdict(v.rates),
            "cpus": list(v.rates.cpus),
            "mode": _mode(v.evidence),
            "reason": f"{', '.join(v.missing)} failed" if v.missing else v.evidence,
            "promiscuous": link.promiscuous if link else None,
            "promiscuity": link.promiscuity if link else None,
            "driver": link.driver.driver if link else "",
            "driver_version": link.driver.version if link else "",
        })
    return {
        "interval_seconds": round(cur.monotonic - prev.monotonic, 3),
        "nics": nics,
        "cpus": [asdict(c) for c in verdict.cpus.values()],
        "host": {"mode": _mode(verdict.host_evidence),
                 "reason": f"{', '.join(verdict.host_missing)} failed" if verdict.host_missing else verdict.host_evidence},
        "failed_collectors": {n: r.error for n, r in cur.collectors.items() if not r.success},
    }


def to_json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _share(polls: float | None, full: float | None) -> str:
    return f"{100 * full / polls:.1f}%" if polls else "-"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return lines


def to_text(data: dict) -> str:
    nic_rows = [
        [n["device"], _num(n["packets"]), _num(n["irqs"]), _num(n["packets_per_irq"], 2), _num(n["net_rx"]),
         _num(n["squeezes"]), _share(n["polls"], n["full_polls"]), n["mode"], n["reason"], {True: "yes", False: "no", None: "?"}[n["promiscuous"]],
         f'{n["driver"]} {n["driver_version"]}'.strip() or "-"]
        for n in data["nics"]
    ]
    cpu_rows = [
        [str(c["cpu"]), _num(c["processed"]), _num(c["dropped"]), _num(c["squeezes"]), _num(c["net_rx"]),
         _num(c["net_tx"]), f'{100 * c["softirq_share"]:.1f}%']
        for c in data["cpus"]
    ]
    host = data["host"]
    out = [f'Rates over {data["interval_seconds"]}s; host: {host["mode"]} ({host["reason"]})', "", "NICs"]
    out += _table(["device", "packets/s", "irqs/s", "pkts/irq", "net_rx/s", "squeezed/s", "full polls", "mode", "reason", "promisc",
                   "driver"], nic_rows)
    if not nic_rows:
        out.append("(no physical NIC found)")
    out += ["", "CPUs (softnet)"]
    out += _table(["cpu", "processed/s", "dropped/s", "squeezed/s", "net_rx/s", "net_tx/s", "softirq"], cpu_rows)
    for name, error in sorted(data["failed_collectors"].items()):
        out.append(f"warning: collector {name} failed: {error}")
    return "\n".join(out)


def status_line(snap: Snapshot, verdict: Verdict) -> str:
    """What `systemctl status` shows: the host's mode, the heavy NICs, failing collectors."""
    heavy = [f"{device} ({v.mode.reason})" for device, v in sorted(verdict.nics.items()) if v.mode.heavy]
    host = f"NAPI-heavy ({verdict.host.reason})" if verdict.host.heavy else "interrupt-driven"
    if not verdict.host_known:  # the held mode is no answer: say why there is none
        host = f"verdict unknown ({', '.join(verdict.host_missing)} failed)"
    parts = [f"host {host}", "heavy NICs: " + (", ".join(heavy) or "none")]
    failing = sorted(name for name, result in snap.collectors.items() if not result.success)
    if failing:
        parts.append("failing collectors: " + ", ".join(failing))
    return "; ".join(parts)
