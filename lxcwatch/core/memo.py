"""A function's last result, kept while its arguments compare equal: what a renderer builds of tables that change
seldom (a host's links, its device list) is built again only when they do."""

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LastResult(Generic[T]):
    """`function(*args)`, computed again only when `args` differ (==) from the last call's. One slot: the agent
    renders one view of its tables, so anything more would only hold memory."""

    def __init__(self, function: Callable[..., T]):
        self.function = function
        self._last: tuple[tuple, T] | None = None

    def __call__(self, *args) -> T:
        last = self._last
        if last is None or last[0] != args:  # lists compare in C, element by element
            last = self._last = (args, self.function(*args))  # one assignment: a concurrent caller sees old or new
        return last[1]
