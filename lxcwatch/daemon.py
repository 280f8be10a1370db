"""The agent process: bind, first sample, serve; SIGHUP reloads the flags, SIGTERM stops; systemd hears of each."""

import ctypes
import dataclasses
import gc
import logging
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lxcwatch import config, logs
from lxcwatch.blackbox import metrics as blackbox_metrics
from lxcwatch.blackbox import options
from lxcwatch.blackbox import recorder as blackbox
from lxcwatch.core import classifier
from lxcwatch.errors import RuntimeFailure, UsageError
from lxcwatch.export import http_metrics, http_server, listen, metrics, web
from lxcwatch.export.web_config import Watcher, WebConfig
from lxcwatch.sampler import Sampler
from lxcwatch.service import Notifier
from lxcwatch.sources.host import Sources

log = logging.getLogger("lxcwatch")

# Settings a reload cannot change (the listener stays bound, the sources and the recorder stay open), each with
# the flags (argparse dests) that decide it.
RESTART_ONLY = {
    "listen": ("listen",),
    "systemd_socket": ("systemd_socket",),
    "telemetry_path": ("telemetry_path",),
    "procfs": ("procfs",),
    "sysfs": ("sysfs",),
    "interval": ("interval",),
    "deadline": ("deadline",),
    "blackbox": ("recorder_path", "recorder_size", "recorder", "recorder_sync", "kernel_events", "journal", "kmsg",
                 "pstore"),
    "web_config_file": ("web_config_file",),  # the file's contents: read again when they change (Watcher)
    "napi_poll_include": ("napi_poll_include",),
}


@dataclass(frozen=True)
class Settings:
    """Everything the flags decide, validated."""

    listen: tuple[str, ...]
    telemetry_path: str
    procfs: str
    sysfs: str
    interval: float
    deadline: float  # --sample.deadline: a collector slower than this is reported stuck
    collectors: tuple[str, ...]
    thresholds: classifier.Thresholds
    agent: metrics.Agent
    lxc_paths: tuple[str, ...]
    probes_file: str | None
    probes_interval: float
    log_level: str
    log_format: str
    blackbox: options.Options = options.Options()
    web_config: WebConfig | None = None  # --web.config.file as read at start (a Watcher reads it again)
    web_config_file: str | None = None
    web_limits: http_server.Limits = http_server.Limits()  # --web.max-requests and the timeouts
    systemd_socket: bool = False  # --web.systemd-socket: serve on the sockets systemd passes, not on `listen`
    exporter_metrics: bool = True  # not --web.disable-exporter-metrics
    flags: dict = field(default_factory=dict, compare=False)  # {dest: parsed value} of every flag
    typed: dict = field(default_factory=dict, compare=False)  # {dest: the option string the user typed}
    napi_poll_include: re.Pattern | None = None  # --collector.napi_poll.device-include

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


def tune_malloc() -> None:
    """glibc's malloc, set for an agent that allocates and frees the same few big buffers every second.
    - One arena: glibc gives each thread that allocates its own arena and keeps each arena's high-water mark. With
      the HTTP workers each rendering multi-MB expositions now and then, RSS rose by ~7 MiB per worker over a
      container churn (tests/e2e/test_churn.py). Python's GIL serialises allocation anyway, so this costs no
      contention.
    - Freed memory kept up to KEEP_FREED: a sample reads /proc/interrupts (0.6 MB on the bench tree) and a scrape
      writes the exposition (0.8 MB as text, again as bytes). At glibc's dynamic thresholds (mallopt(3): the mmap
      threshold follows the largest chunk freed, the trim threshold is twice it) those buffers were given back to the
      kernel and faulted in again, page by page: ~320 page faults a second, with nobody scraping. KEEP_FREED is
      about twice those buffers together, no more: at 16 MiB the heap's high-water mark rose by 7 MiB more over
      tests/e2e/test_churn.py's 2000 containers (CI, 2026-12-03); at 4 MiB it stays as untuned, within ~1 MiB."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_ARENA_MAX, 1)
        libc.mallopt(M_MMAP_THRESHOLD, KEEP_FREED // 2)
        libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED)
    except (OSError, AttributeError):  # not glibc
        pass


M_ARENA_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD = -8, -3, -1  # malloc.h
KEEP_FREED = 4 * 2**20
GC_YOUNG = 10_000  # net new container objects between two young collections (Python's default: 700)


def run(load: Callable[[], Settings]) -> int:
    """`load` reads the flags (command line and --config.file) again at every reload."""
    tune_malloc()  # before any thread starts
    settings = load()
    logs.setup(settings.log_level, settings.log_format)
    config.check_roots(settings.procfs, settings.sysfs)
    notifier = Notifier()
    notifier.check_interval(settings.interval)
    signals = _Signals()  # before any thread starts, and so that a SIGHUP during start-up waits for the loop
    sources = Sources.open(settings.procfs, settings.sysfs, settings.lxc_paths, settings.probes_file,
                           settings.probes_interval, settings.napi_poll_include)
    sampler = Sampler(sources, list(settings.collectors), settings.interval, settings.thresholds, settings.deadline)
    # Bind first: a port in use fails fast.
    sockets = listen.systemd_sockets() if settings.systemd_socket else [listen.bind(a) for a in settings.listen]
    if settings.systemd_socket and settings.flags.get("listen"):  # as node_exporter: the .socket unit says where
        log.warning("--web.listen-address ignored: --web.systemd-socket serves on the sockets systemd passed",
                    extra={"ignored": ",".join(settings.listen)})
    sampler.sample()  # the first scrape already has data; a stuck file delays it by twice the deadline at most
    # What start-up made (modules, flags, the first snapshot's tables) lives as long as the agent: out of the
    # cyclic collector's sight, its full collections no longer walk it every few samples (gc.freeze's docs).
    gc.freeze()
    # A sample and a rendering hold ~15k tuples at once on a big host (link counters, label sets), then drop them:
    # at the default threshold that set off ~14 young collections and one middle one per sample and scrape, ~1.5 ms
    # on the bench tree; at GC_YOUNG, one in 40 samples. Cyclic garbage is still collected within GC_YOUNG objects.
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
    box = blackbox.Blackbox(settings.blackbox, settings.agent.version, settings.interval)
    sampler.on_sample.append(box.sampled)  # never raises: a full disk costs records, not samples
    box.sampled(*sampler.current)
    exposition = web.Exposition(sampler, settings.agent)
    exposition.exporter_metrics = settings.exporter_metrics
    watcher = Watcher(settings.web_config_file, settings.web_config) if settings.web_config else None
    exposition.extra = lambda: [*blackbox_metrics.families(box.state()), *([metrics.web_config_reload(watcher.loaded)] if watcher else ())]
    app = web.guard(web.make_app(exposition, settings.telemetry_path), watcher.current if watcher else None)
    server = http_server.Server(sockets, app, settings.web_config.context if settings.web_config else None,
                                settings.web_limits)
    if watcher:  # connections still to come start with the new settings (a handshake under way takes its cert)
        watcher.on_change.append(lambda config: setattr(server, "tls", config.context))
    exposition.live = lambda: http_metrics.families(server.counters())
    sampler.on_sample.append(exposition.prepare)  # after the black box: its families are part of the rendering
    server.start()
    log.info("listening", extra={"addresses": ",".join(map(listen.address_of, sockets)),
                                 "collectors": ",".join(settings.collectors), "procfs": settings.procfs,
                                 "sysfs": settings.sysfs})
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


def reload(old: Settings, load: Callable[[], Settings], sampler: Sampler, exposition: web.Exposition,
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
        names = restart_flags(old, new, kept)
        log.error(f"{', '.join(names)} changed; restart needed to apply {'it' if len(names) == 1 else 'them'}",
                  extra={"flags": ",".join(names)})
        dests = [dest for name in kept for dest in RESTART_ONLY[name]]
        new = dataclasses.replace(new, **{name: getattr(old, name) for name in kept},
                                  flags={**new.flags, **{dest: old.flags.get(dest) for dest in dests}})
    if (new.log_level, new.log_format) != (old.log_level, old.log_format):
        logs.setup(new.log_level, new.log_format)
    lxc = None
    if new.lxc_key() != old.lxc_key():
        lxc = sampler.sources.lxc_host(new.lxc_paths, new.probes_file, new.probes_interval)
    sampler.reconfigure(list(new.collectors), new.thresholds, lxc)
    server.limits = new.web_limits  # read by every new connection and request
    exposition.exporter_metrics = new.exporter_metrics
    # Half applied is not applied: until a restart, the metric says the running agent is not what the file says.
    loaded_at = exposition.agent.config_loaded_at if kept else time.time()
    exposition.agent = dataclasses.replace(new.agent, config_loaded=not kept, config_loaded_at=loaded_at)
    log.info("configuration reloaded", extra={"replica_group": new.agent.replica_group, "replica": new.agent.replica,
                                              "collectors": ",".join(new.collectors)})
    return new


def restart_flags(old: Settings, new: Settings, kept: list[str]) -> list[str]:
    """The flags, as the user typed them, behind the settings a reload cannot apply; a setting whose flags are
    unchanged (the file --web.config.file names was edited) is named by its first flag."""
    changed = [dest for name in kept for dest in RESTART_ONLY[name] if new.flags.get(dest) != old.flags.get(dest)]
    dests = changed or [RESTART_ONLY[name][0] for name in kept]
    return [new.typed.get(dest) or old.typed.get(dest) or f"--{dest}" for dest in dests]
