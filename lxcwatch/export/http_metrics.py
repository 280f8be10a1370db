"""The HTTP server's own families (lxcwatch_http_*), rendered from its counters at each scrape."""

from dataclasses import dataclass

from lxcwatch.core.family import Family


@dataclass(frozen=True)
class HttpCounters:
    rejected: dict[str, int]  # reason -> connections refused or cut off (http_server.REASONS, in its order)
    codes: dict[int, int]  # status code -> requests answered (http_server.CODES, in its order)
    open: int  # connections open
    in_flight: int  # requests being answered


def families(c: HttpCounters) -> list[Family]:
    rejected = Family("lxcwatch_http_connections_rejected", "counter",
                      "Connections the agent refused or cut off, by reason (docs/security.md).", ("reason",))
    for reason, count in c.rejected.items():
        rejected.add([reason], count)
    requests = Family("lxcwatch_http_requests", "counter", "HTTP requests answered, by status code.", ("code",))
    for code, count in c.codes.items():
        requests.add([str(code)], count)
    return [rejected, requests,
            Family("lxcwatch_http_connections_open", "gauge", "HTTP connections open.", (), [((), c.open)]),
            Family("lxcwatch_http_requests_in_flight", "gauge", "HTTP requests being answered (--web.max-requests).",
                   (), [((), c.in_flight)])]
