"""Command line: the agent (default), `status`, `record`, `replay` and `postmortem`, in node_exporter's flag habits."""

import argparse
import dataclasses
import importlib
import socket
import sys
import time

from lxcwatch import __version__, config, daemon
from lxcwatch.blackbox import options as blackbox_options
from lxcwatch.collectors import ALL as COLLECTORS
from lxcwatch.core import classifier
from lxcwatch.errors import RuntimeFailure, UsageError
from lxcwatch.export import http_server, metrics, status, web_config
from lxcwatch.export.listen import parse_address
from lxcwatch.sampler import Sampler
from lxcwatch.sources import probes
from lxcwatch.sources.host import Sources
from lxcwatch.sources.lxc_host import DEFAULT_LXC_PATH

DEFAULT_PORT = 12243


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2: no usage dump for a typo
        raise UsageError(message)


# One --detect.* flag per Thresholds field: --detect.full-poll-share sets full_poll_share.
DETECT_FLAGS = tuple((f"--detect.{f.name.replace('_', '-')}", f.name, type(f.default))
                     for f in dataclasses.fields(classifier.Thresholds))


def _detect_flags(p: argparse.ArgumentParser) -> None:
    defaults = classifier.Thresholds()
    for flag, name, kind in DETECT_FLAGS:
        p.add_argument(flag, dest=f"detect_{name}", type=kind, default=getattr(defaults, name), metavar="N",
                       help=f"NAPI-heavy detection: {name.replace('_', ' ')} (default {getattr(defaults, name)}; see docs/detection.md)")


def thresholds(args) -> classifier.Thresholds:
    values = {name: getattr(args, f"detect_{name}") for _, name, _ in DETECT_FLAGS}
    for flag, name, _ in DETECT_FLAGS:
        if values[name] < 0 or (name.endswith("_samples") and values[name] < 1):
            raise UsageError(f"invalid {flag} {values[name]}: must be {'at least 1' if name.endswith('_samples') else 'positive'}")
        if name.endswith("_share") and values[name] > 1:
            raise UsageError(f"invalid {flag} {values[name]}: a share is at most 1")
    return classifier.Thresholds(**values)


def _lxc_flags(p: argparse.ArgumentParser, probe_flags: bool) -> None:
    p.add_argument("--path.lxc", dest="lxc_paths", action="append", metavar="PATH",
                   help=f"LXC path holding one directory per container, repeatable (default {DEFAULT_LXC_PATH})")
    if probe_flags:
        p.add_argument("--probes.file", dest="probes_file", default=None, metavar="PATH",
                       help="container probes, one per line: CONTAINER PROBE tcp HOST:PORT [TIMEOUT] (docs/containers.md)")
        p.add_argument("--probes.interval", dest="probes_interval", default="10s", metavar="DURATION",
                       help="time between two attempts of each probe (default 10s)")


def lxc_paths(args) -> tuple[str, ...]:
    return tuple(args.lxc_paths or [DEFAULT_LXC_PATH])


def agent_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lxcwatch", description="Exports the receive path of an LXC host as Prometheus metrics. "
                "Subcommands: `lxcwatch status` (a one-shot view), `record` and `replay` (traces), `postmortem` "
                "(the flight recorder after a crash); each has --help.")
    p.add_argument("--web.listen-address", dest="listen", action="append", metavar="ADDR",
                   help=f"address to listen on, repeatable (default :{DEFAULT_PORT})")
    p.add_argument("--web.systemd-socket", dest="systemd_socket", action="store_true",
                   help="serve on the listening sockets systemd passes (socket activation, packaging/systemd/"
                        "lxcwatch.socket); --web.listen-address is then ignored")
    p.add_argument("--web.telemetry-path", dest="telemetry_path", default="/metrics", metavar="PATH",
                   help="path under which to expose metrics (default /metrics)")
    p.add_argument("--web.disable-exporter-metrics", dest="disable_exporter_metrics", action="store_true",
                   help="leave the agent's own process_* and lxcwatch_http_* metrics out of the exposition "
                        "(docs/metrics.md)")
    p.add_argument("--web.config.file", dest="web_config_file", default=None, metavar="PATH",
                   help="TLS and basic auth, exporter-toolkit format (docs/security.md); read again when it or the files "
                        "it names change")
    limits = http_server.Limits()
    p.add_argument("--web.max-requests", dest="max_requests", type=int, default=limits.max_requests, metavar="N",
                   help=f"requests answered at once; more get 503; 0: no limit (default {limits.max_requests})")
    p.add_argument("--web.idle-timeout", dest="idle_timeout", default=f"{limits.idle_timeout:g}s", metavar="DURATION",
                   help=f"close a kept-alive connection idle this long (default {limits.idle_timeout:g}s)")
    p.add_argument("--web.request-timeout", dest="request_timeout", default=f"{limits.request_timeout:g}s",
                   metavar="DURATION", help="the most a TLS handshake, a request's headers and the client taking a "
                   f"response may each take (default {limits.request_timeout:g}s)")
    p.add_argument("--config.file", dest="config_file", default=None, metavar="PATH",
                   help='flags from a file (/etc/default style: ARGS="--flag=value ..."), read again on SIGHUP; '
                        "flags on the command line win")
    config.add_source_flags(p)
    config.add_deadline_flag(p)
    _lxc_flags(p, probe_flags=True)
    p.add_argument("--replica.group", dest="replica_group", default="", metavar="NAME", help="replica group this host belongs to (default: none, no lxcwatch_replica_info)")
    p.add_argument("--replica.name", dest="replica_name", default=None, metavar="NAME", help="this host's name in its group (default: hostname)")
    p.add_argument("--collector.disable-defaults", dest="collectors_off", action="store_true",
                   help="disable every collector; only those enabled with --collector.NAME run")
    for name in COLLECTORS:
        p.add_argument(f"--collector.{name}", dest=f"collector_{name}", action=argparse.BooleanOptionalAction, default=None,
                       help=f"enable the {name} collector (default: enabled unless --collector.disable-defaults; "
                            f"--no-collector.{name} disables)")
    config.add_napi_poll_include_flag(p, "count")
    config.add_view_flags(p)
    _detect_flags(p)
    p.add_argument("--log.level", dest="log_level", default="info", choices=["debug", "info", "warn", "error"],
                   help="only log messages with the given severity or above: debug, info, warn, error (default info)")
    p.add_argument("--log.format", dest="log_format", default="logfmt", choices=["logfmt", "json"],
                   help="output format of log messages: logfmt or json (default logfmt)")
    blackbox_options.add_arguments(p)
    p.add_argument("--version", action="version", version=f"lxcwatch {__version__}")
    return p


def status_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lxcwatch status", description="Two samples one interval apart: per-NIC and per-CPU receive rates.")
    config.add_source_flags(p)
    config.add_deadline_flag(p)
    _lxc_flags(p, probe_flags=False)
    _detect_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    return p


def agent_settings(argv: list[str]) -> daemon.Settings:
    """The agent's flags: those of --config.file (if given) first, then the command line's, which win."""
    parser = agent_parser()
    args = parser.parse_args(argv)
    if args.config_file:
        argv = config.read_args_file(args.config_file) + argv
        args = parser.parse_args(argv)
    interval = config.duration(args.interval)
    if not args.telemetry_path.startswith("/") or args.telemetry_path == "/":
        raise UsageError(f"invalid --web.telemetry-path {args.telemetry_path!r}: must start with / and not be /")
    listen = tuple(args.listen or [f":{DEFAULT_PORT}"])
    for address in listen:
        try:
            parse_address(address)
        except ValueError as e:
            raise UsageError(str(e)) from None
    if args.probes_file:
        probes.check_file(args.probes_file)
    if args.max_requests < 0:
        raise UsageError(f"invalid --web.max-requests {args.max_requests}: must be 0 (no limit) or more")
    return daemon.Settings(
        listen=listen, telemetry_path=args.telemetry_path, procfs=args.procfs, sysfs=args.sysfs, interval=interval,
        deadline=config.deadline(args.deadline, interval),
        collectors=enabled_collectors(args), thresholds=thresholds(args),
        agent=metrics.Agent(__version__, args.replica_group, args.replica_name or socket.gethostname(),
                            config_loaded_at=time.time(), view=config.view(args)),
        lxc_paths=lxc_paths(args), probes_file=args.probes_file, probes_interval=config.duration(args.probes_interval),
        napi_poll_include=config.napi_poll_include(args),
        log_level="warning" if args.log_level == "warn" else args.log_level, log_format=args.log_format,
        blackbox=blackbox_options.options(args),
        web_config=web_config.load(args.web_config_file) if args.web_config_file else None,
        web_config_file=args.web_config_file,
        systemd_socket=args.systemd_socket, exporter_metrics=not args.disable_exporter_metrics,
        web_limits=http_server.Limits(args.max_requests, config.duration(args.idle_timeout),
                                      config.duration(args.request_timeout)),
        flags=vars(args), typed=config.typed_flags(parser, argv))


def enabled_collectors(args) -> tuple[str, ...]:
    """--collector.NAME and --no-collector.NAME; a collector named by neither runs unless --collector.disable-defaults."""
    chosen = {n: getattr(args, f"collector_{n}") for n in COLLECTORS}
    return tuple(n for n in COLLECTORS if chosen[n] or (chosen[n] is None and not args.collectors_off))


def run_status(args) -> int:
    interval = config.duration(args.interval)
    limits = thresholds(args)
    config.check_roots(args.procfs, args.sysfs)
    sources = Sources.open(args.procfs, args.sysfs, lxc_paths(args))
    try:
        sampler = Sampler(sources, list(COLLECTORS), interval, limits, config.deadline(args.deadline, interval))
        first = sampler.sample()
        time.sleep(interval)  # the interval the rates are measured over
        sampler.sample()
        data = status.report(first, *sampler.current)
    finally:
        sources.close()
    sys.stdout.reconfigure(errors="surrogateescape")  # a name that is not UTF-8 printed as its bytes, as by `ip`
    print(status.to_json(data) if args.json else status.to_text(data))
    return 0


TOOLS = {"record": "lxcwatch.traces.record", "replay": "lxcwatch.traces.replay", "postmortem": "lxcwatch.blackbox.postmortem_tool"}


def tool_parser(name: str, module) -> argparse.ArgumentParser:
    p = _Parser(prog=f"lxcwatch {name}", description=module.__doc__)
    module.add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["status"]:
            return run_status(status_parser().parse_args(argv[1:]))
        if argv[:1] and argv[0] in TOOLS:
            module = importlib.import_module(TOOLS[argv[0]])
            return module.run(tool_parser(argv[0], module).parse_args(argv[1:]))
        return daemon.run(lambda: agent_settings(argv))
    except UsageError as e:
        print(f"lxcwatch: error: {e}", file=sys.stderr)
        return 2
    except RuntimeFailure as e:
        print(f"lxcwatch: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
