"""/proc/PID/stat: the fields after the parenthesised comm (which may itself hold spaces and parentheses)."""

from lxcwatch.errors import ParseError


def fields(text: str, at_least: int) -> list[str]:
    """Fields 3.. of /proc/PID/stat (index 0 is field 3, the state); ParseError with fewer than `at_least` fields."""
    _, paren, rest = text.rpartition(")")
    values = rest.split()
    if not paren or len(values) + 2 < at_least:
        raise ParseError("PID/stat", f"expected at least {at_least} fields, found {len(values) + 2}")
    return values
