"""Reads NAPI tuning per NIC (threaded, napi_defer_hard_irqs, gro_flush_timeout) and net.core sysctls."""

from lxcwatch.kernel.ethtool_coalesce import Coalesce
from lxcwatch.kernel.link import CLASS_NET
from lxcwatch.kernel.napi import SYSCTL_DIR, Napi, NapiTuning
from lxcwatch.sources.root import Root


def read(procfs: Root, sysfs: Root, nics: list[str], coalesce: dict[str, Coalesce], sysctls: tuple[str, ...]) -> Napi:
    tuning = {}
    for name in nics:
        threaded = sysfs.int_attr(CLASS_NET, name, "threaded")
        tuning[name] = NapiTuning(
            threaded=None if threaded is None else threaded != 0,
            defer_hard_irqs=sysfs.int_attr(CLASS_NET, name, "napi_defer_hard_irqs"),
            gro_flush_timeout_ns=sysfs.int_attr(CLASS_NET, name, "gro_flush_timeout"),
            coalesce=coalesce.get(name),
        )
    values = {name: procfs.int_attr(SYSCTL_DIR, name) for name in sysctls}
    return Napi(tuning, {name: v for name, v in values.items() if v is not None})
