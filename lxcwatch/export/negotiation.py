"""HTTP content negotiation with quality values: Accept as prometheus/common's expfmt negotiates it, Accept-Encoding
by RFC 9110 section 12.5.3."""

import functools
import re

_QVALUE = re.compile(r"(0(\.\d{0,3})?|1(\.0{0,3})?)")  # RFC 9110 12.4.2: at most three decimals, at most 1


def parse(header: str) -> list[tuple[str, dict[str, str], float]]:
    """The elements of an Accept or Accept-Encoding header: (lower-case value, parameters, quality), in the order
    given. A malformed quality counts as 0 (not acceptable), never as a preference."""
    elements = []
    for element in header.split(","):
        value, *params = (part.strip() for part in element.split(";"))
        if not value:
            continue
        parameters, quality = {}, 1.0
        for param in params:
            name, _, val = param.partition("=")
            name, val = name.strip().lower(), val.strip().strip('"')
            if name == "q":
                quality = float(val) if _QVALUE.fullmatch(val) else 0.0
            elif name:
                parameters[name] = val
        elements.append((value.lower(), parameters, quality))
    return elements


def ranked(header: str) -> list[tuple[str, dict[str, str], float]]:
    """The acceptable elements, best first: higher quality first, then a concrete type before a wildcard one, then
    in the order given (goautoneg's order, which expfmt.Negotiate walks); quality 0 means not acceptable."""
    elements = [e for e in parse(header) if e[2] > 0]
    return sorted(elements, key=lambda e: (-e[2], e[0].startswith("*"), e[0].endswith("/*")))


OPENMETRICS_VERSIONS = ("", "0.0.1", "1.0.0")  # those expfmt.NegotiateIncludingOpenMetrics serves
TEXT_VERSIONS = ("", "0.0.4")


# Scrapers send the same header every time: parsing it was a seventh of the agent's time per scrape under 50 scrapers
# (py-spy --gil). A few entries, so that a client sending a new header each time costs a parse, not memory.
_remembered = functools.lru_cache(maxsize=16)


@_remembered
def wants_openmetrics(accept: str) -> bool:
    """True when the best acceptable format the client names is OpenMetrics; the text format otherwise, also for
    no Accept header, */* or nothing acceptable (expfmt never answers 406)."""
    for media_type, params, _ in ranked(accept):
        version = params.get("version", "")
        if media_type == "application/openmetrics-text" and version in OPENMETRICS_VERSIONS:
            return True
        if media_type == "text/plain" and version in TEXT_VERSIONS:
            return False
    return False


@_remembered
def wants_gzip(accept_encoding: str) -> bool:
    """True when gzip is acceptable (RFC 9110 12.5.3: its own element's quality, else that of `*`, is above 0) and
    the client does not prefer identity by a higher quality. x-gzip is gzip (RFC 9110 8.4.1.3). No header, or one
    that excludes both: identity, which RFC 9110 lets a server send rather than answer 406."""
    quality: dict[str, float] = {}
    for coding, _, q in parse(accept_encoding):
        coding = "gzip" if coding == "x-gzip" else coding
        quality[coding] = max(q, quality.get(coding, 0.0))
    gzip = quality.get("gzip", quality.get("*", 0.0))
    identity = quality.get("identity", quality.get("*", 0.0))  # not named: acceptable, but not preferred
    return gzip > 0 and gzip >= identity
