"""lxcwatch: watch the receive path of LXC hosts for the slide from interrupts into NAPI polling."""

__version__ = "0.1.0"
