"""NAPI tuning per NIC (threaded, napi_defer_hard_irqs, gro_flush_timeout, coalescing) and the net.core sysctls."""

from dataclasses import dataclass

from lxcwatch.kernel.ethtool_coalesce import Coalesce

SYSCTL_DIR = "sys/net/core"  # the net.core sysctls, relative to --path.procfs


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
