"""The agent process: bind, first sample, serve; SIGHUP reloads the flags, SIGTERM stops; systemd hears of each."""

import dataclasses
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lxcwatch import blackbox, classifier, config, http, http_server, logs, metrics
from lxcwatch.collectors import Sources
from lxcwatch.errors import RuntimeFailure, UsageError
from lxcwatch.sampler import Sampler
from lxcwatch.service import Notifier
from lxcwatch.web_config import WebConfig

log = logging.getLogger("lxcwatch")

# Flags a reload cannot change: the listener stays bound and the sources stay open.
RESTART_ONLY = ("listen", "telemetry_path", "procfs", "sysfs", "interval", "blackbox", "web_config")


@dataclass(frozen=True)
class Settings:
    """Everything the flags decide, validated."""

    listen: tuple[str, ...]
    telemetry_path: str
    procfs: str
    sysfs: str
    interval: float
    collectors: tuple[str, ...]
    thresholds: classifier.Thresholds
    agent: metrics.Agent
    lxc_paths: tuple[str, ...]
    probes_file: str | None
    probes_interval: float
    log_level: str
    log_format: str
    blackbox: "blackbox.Options" = blackbox.Options()
    web_config: WebConfig | None = None  # --web.config.file, read at start only
    web_limits: http_server.Limits = http_server.Limits()  # --web.max-requests and the timeouts

    def lxc_key(self) -> tuple:
        return self.lxc_paths, self.probes_file, self.probes_interval


class _Signals:
    """SIGTERM/SIGINT (stop) and SIGHUP (reload), blocked in every thread and taken by the main thread with
    sigwait(): no handler runs at a random point of the main thread (a handler that sets a threading.Event can
    deadlock on the Event's own lock)."""

    SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}

    def __init__(self):
        signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGNALS)  # threads started later inherit the mask

    def next(self) -> str:
        return "reload" if signal.sigwait(self.SIGNALS) == signal.SIGHUP else "stop"


def run(load: Callable[[], Settings]) -> int:
    """`load` reads the flags (command line and --config.file) again at every reload."""
    settings = load()
    logs.setup(settings.log_level, settings.log_format)
    config.check_roots(settings.procfs, settings.sysfs)
    notifier = Notifier()
    notifier.check_interval(settings.interval)
    signals = _Signals()  # before any thread starts, and so that a SIGHUP during start-up waits for the loop
    # A thread back from a system call waits for the GIL up to the switch interval: at the default 5 ms, the sampler's
    # thousands of file reads per sample overran under 50 concurrent scrapers (docs/performance.md).
    sys.setswitchinterval(0.001)
    sources = Sources.open(settings.procfs, settings.sysfs, settings.lxc_paths, settings.probes_file,
                           settings.probes_interval)
    sampler = Sampler(sources, list(settings.collectors), settings.interval, settings.thresholds)
    sockets = [http.bind(address) for address in settings.listen]  # bind first: a port in use fails fast
    sampler.sample()  # the first scrape already has data
    box = blackbox.Blackbox(settings.blackbox, settings.agent.version)
    sampler.on_sample.append(box.sampled)  # never raises: a full disk costs records, not samples
    box.sampled(*sampler.current)
    exposition = http.Exposition(sampler, settings.agent)
    exposition.extra = box.families
    app = http.guard(http.make_app(exposition, settings.telemetry_path), settings.web_config)
    server = http_server.Server(sockets, app, settings.web_config.context if settings.web_config else None,
                                settings.web_limits)
    exposition.live = server.families
    server.start()
    log.info("listening", extra={"addresses": ",".join(settings.listen), "collectors": ",".join(settings.collectors),
                                 "procfs": settings.procfs, "sysfs": settings.sysfs})
    sampler.on_sample.append(notifier.sampled)
    notifier.ready(*sampler.current)
    loop = threading.Thread(target=sampler.run, name="sampler", daemon=True)
    loop.start()

    while signals.next() == "reload":
        notifier.reloading()
        settings = reload(settings, load, sampler, exposition, server)
        notifier.reloaded()
    notifier.stopping()
    log.info("stopping")
    sampler.stop()
    server.stop()
    loop.join(timeout=5)
    box.stop()  # after the last sample: the clean-stop marker is the ring's last record
    sources.close()
    return 0


def reload(old: Settings, load: Callable[[], Settings], sampler: Sampler, exposition: http.Exposition,
           server: http_server.Server) -> Settings:
    """Apply new flags to the running agent; a bad file keeps the old settings (and says so in its metrics)."""
    try:
        new = load()
    except (UsageError, RuntimeFailure, SystemExit) as e:  # SystemExit: --help or --version in the file
        log.error("reload failed, keeping the running configuration", extra={"err": str(e)})
        exposition.agent = dataclasses.replace(exposition.agent, config_loaded=False)
        return old
    kept = [name for name in RESTART_ONLY if getattr(new, name) != getattr(old, name)]
    if kept:
        log.warning("these flags change only on restart", extra={"flags": ",".join(kept)})
        new = dataclasses.replace(new, **{name: getattr(old, name) for name in kept})
    if (new.log_level, new.log_format) != (old.log_level, old.log_format):
        logs.setup(new.log_level, new.log_format)
    lxc = None
    if new.lxc_key() != old.lxc_key():
        lxc = sampler.sources.lxc_host(new.lxc_paths, new.probes_file, new.probes_interval)
    sampler.reconfigure(list(new.collectors), new.thresholds, lxc)
    server.limits = new.web_limits  # read by every new connection and request
    exposition.agent = dataclasses.replace(new.agent, config_loaded=True, config_loaded_at=time.time())
    log.info("configuration reloaded", extra={"replica_group": new.agent.replica_group, "replica": new.agent.replica,
                                              "collectors": ",".join(new.collectors)})
    return new
