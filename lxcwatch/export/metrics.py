"""Renders a snapshot as Prometheus metric families: a pure function, cached per snapshot by the HTTP layer."""

import logging
import platform
from collections.abc import Iterator
from dataclasses import dataclass

from lxcwatch import REVISION, collectors
from lxcwatch.core.classifier import Verdict
from lxcwatch.core.family import Family
from lxcwatch.core.family import counter as _counter
from lxcwatch.core.family import gauge as _gauge
from lxcwatch.core.snapshot import Snapshot
from lxcwatch.export import verdict_metrics

log = logging.getLogger("lxcwatch.metrics")


@dataclass(frozen=True)
class Agent:
    version: str
    replica_group: str
    replica: str
    config_loaded: bool = True  # the last (re)load of the flags succeeded
    config_loaded_at: float = 0.0  # time of the last successful (re)load
    view: collectors.View = collectors.View()  # what the flags leave out of the exposition (rendering only)


def families(s: Snapshot, agent: Agent, overruns: int = 0, verdict: Verdict | None = None,
             extra: list[Family] = ()) -> list[Family]:
    """All metric families for one snapshot. A renderer that fails marks its collector failed, nothing more."""
    out: list[Family] = []
    success = {name: r.success for name, r in s.collectors.items()}
    for name in s.collectors:
        if not (success[name] or s.collectors[name].partial) or name not in collectors.ALL:
            continue
        try:
            out.extend(collectors.ALL[name].render(s, agent.view))
        except Exception:
            log.exception("rendering failed", extra={"collector": name})
            success[name] = False
    if verdict is not None:
        out.extend(verdict_metrics.render(verdict))
    out.extend(extra)  # families the agent keeps outside the snapshot (the black box)
    out.extend(_self(s, agent, success, overruns))
    return out


def sample_age(taken: float, now: float) -> Family:
    """Computed at each scrape, not with the sample: a stalled sampling loop shows here, as an age that grows.
    `taken` and `now` on the monotonic clock."""
    age = _gauge("last_sample_age_seconds", "Seconds since the sample being served was taken (monotonic clock), at scrape time.")
    age.add([], max(0.0, now - taken))
    return age


def web_config_reload(loaded: bool) -> Family:
    ok = _gauge("web_config_last_reload_successful", "1 if the last reading of --web.config.file and the "
                "files it names succeeded; 0 keeps the config read before in force.")
    ok.add([], int(loaded))
    return ok


def _self(s: Snapshot, agent: Agent, success: dict[str, bool], overruns: int) -> Iterator[Family]:
    build = _gauge("build_info", "lxcwatch build: version, commit, Python; value is always 1.",
                   ["version", "revision", "pythonversion"])
    build.add([agent.version, REVISION, platform.python_version()], 1)
    ok = _gauge("scrape_collector_success", "1 if the collector's last sample succeeded.", ["collector"])
    took = _gauge("scrape_collector_duration_seconds", "Time the collector's last sample took.", ["collector"])
    for name in sorted(s.collectors):
        ok.add([name], int(success[name]))
        took.add([name], s.collectors[name].duration_seconds)
    last = _gauge("last_sample_timestamp_seconds", "Wall-clock time of the sample being served.")
    last.add([], s.timestamp)
    samples = _counter("samples", "Samples taken since the agent started.", [])
    samples.add([], s.seq)
    late = _counter("sample_overruns", "Sampling slots skipped because a sample took longer than the interval.", [])
    late.add([], overruns)
    reloaded = _gauge("config_last_reload_successful", "1 if the last reload of the flags (SIGHUP) succeeded.")
    reloaded.add([], int(agent.config_loaded))
    reloaded_at = _gauge("config_last_reload_success_timestamp_seconds", "Time of the last successful start or reload.")
    reloaded_at.add([], agent.config_loaded_at)
    yield build
    if agent.replica_group:  # a host in no group exports no membership: replica_group="" would read as one group
        replica = _gauge("replica_info", "This host's replica group and name; value is always 1.", ["replica_group", "replica"])
        replica.add([agent.replica_group, agent.replica], 1)
        yield replica
    yield from (ok, took, last, samples, late, reloaded, reloaded_at)
