"""Pure and fast: parsers, core, rendering, config, on fixture text (no agent process, no live host)."""
