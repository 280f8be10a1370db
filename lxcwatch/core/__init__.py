"""Pure: the snapshot of one sample, counters, rates, the NAPI verdict, containers; no I/O."""
