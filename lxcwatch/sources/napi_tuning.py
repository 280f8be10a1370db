"""NAPI tuning per NIC (threaded, napi_defer_hard_irqs, gro_flush_timeout) and the net.core sysctls that bound polling."""

from dataclasses import dataclass

from lxcwatch.kernel.ethtool_coalesce import Coalesce
from lxcwatch.sources.root import Root

SYSCTLS = ("netdev_budget", "netdev_budget_usecs", "netdev_max_backlog", "busy_poll", "busy_read")


@dataclass(frozen=True, slots=True)
class NapiTuning:
    """None: the kernel has no such attribute (threaded: 5.12+, napi_defer_hard_irqs: 5.10+)."""

    threaded: bool | None
    defer_hard_irqs: int | None
    gro_flush_timeout_ns: int | None
    coalesce: Coalesce | None = None  # None: the driver has no coalescing ops (or the tree does not say)


@dataclass(frozen=True, slots=True)
class Napi:
    nics: dict[str, NapiTuning]
    sysctls: dict[str, int]  # net.core.* name -> value (packets or microseconds, as the kernel has it)


def read(procfs: Root, sysfs: Root, nics: list[str], coalesce: dict[str, Coalesce]) -> Napi:
    tuning = {}
    for name in nics:
        threaded = sysfs.int_attr("class", "net", name, "threaded")
        tuning[name] = NapiTuning(
            threaded=None if threaded is None else threaded != 0,
            defer_hard_irqs=sysfs.int_attr("class", "net", name, "napi_defer_hard_irqs"),
            gro_flush_timeout_ns=sysfs.int_attr("class", "net", name, "gro_flush_timeout"),
            coalesce=coalesce.get(name),
        )
    sysctls = {}
    for name in SYSCTLS:
        value = procfs.int_attr("sys", "net", "core", name)
        if value is not None:
            sysctls[name] = value
    return Napi(tuning, sysctls)
