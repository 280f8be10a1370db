"""Pure: parsers of kernel files (procfs, sysfs, the kernel log) and the records they return; no I/O."""
