"""Entry point for `python -m lxcwatch`."""

from lxcwatch.cli import main

raise SystemExit(main())
