"""Errors the agent reports to its user instead of a traceback, and a collector's partial failure."""

from dataclasses import dataclass


class ParseError(ValueError):
    """A kernel file did not have the shape its parser expects."""

    def __init__(self, source: str, message: str, line: int | None = None):
        self.source = source
        self.line = line
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}")


class UsageError(Exception):
    """A bad flag value: printed as one line, exit code 2."""


class RuntimeFailure(Exception):
    """A failure at start-up (unreadable root, port in use): one line, exit code 1."""


@dataclass(frozen=True, slots=True)
class Partial:
    """What a collector returns when it read most of its source but not all: a failure that keeps its data."""

    reading: object
    error: str
