"""lxcwatch: watch the receive path of LXC hosts for the slide from interrupts into NAPI polling."""

__version__ = "0.1.0"

try:  # written into the wheel by setup.py when it is built (lxcwatch_build_info's revision)
    from lxcwatch._revision import REVISION
except ImportError:  # a source checkout, installed editable
    REVISION = "unknown"
