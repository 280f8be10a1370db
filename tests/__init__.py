"""lxcwatch tests in tiers: unit, e2e, live, lab, deploy (see README.md, `make check` and `make test`)."""
