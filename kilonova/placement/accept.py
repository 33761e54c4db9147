"""The Accept header as upstream's webob reads it (RFC 7231 media ranges, q-values, specificity).

Upstream asks webob which of its offers a client accepts both in its handlers (a 406 when
``application/json`` is not) and when rendering an error (HTML, JSON or plain text). An Accept
header that breaks the grammar counts as no preference: every offer is acceptable.
"""
from __future__ import annotations

import re

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t !-~\x80-\xff])*"'
_OWS = r"[ \t]*"
_VALUE = rf"(?:{_TOKEN}|{_QUOTED})"
_PARAMS = rf"(?:{_OWS};{_OWS}(?![qQ]=){_TOKEN}={_VALUE})*"
_WEIGHT = rf"{_OWS};{_OWS}[qQ]=(0(?:\.[0-9]{{0,3}})?|1(?:\.0{{0,3}})?)"
_EXTENSIONS = rf"(?:{_OWS};{_OWS}{_TOKEN}(?:={_VALUE})?)*"
# groups: type/subtype, its parameters, q
_RANGE = rf"({_TOKEN}/{_TOKEN})({_PARAMS})(?:{_WEIGHT}{_EXTENSIONS})?"
_RANGE_RE = re.compile(_RANGE)
# RFC 7230's list rule: empty elements between commas are allowed.
_HEADER_RE = re.compile(rf"^(?:$|(?:,|{_RANGE})(?:{_OWS},(?:{_OWS}{_RANGE})?)*$)")


def parse(header: str) -> list[tuple[str, bool, float]] | None:
    """(lower-cased type/subtype, has media-type parameters, q) per range; None when invalid."""
    if _HEADER_RE.match(header) is None:
        return None
    return [(m.group(1).lower(), bool(m.group(2)), float(m.group(3)) if m.group(3) else 1.0)
            for m in _RANGE_RE.finditer(header)]


def acceptable_offers(header: str, offers: tuple[str, ...]) -> list[str]:
    """The offers (parameter-less media types) the header accepts, best first: by the q of the most
    specific range matching each (exact, then type/*, then */*; the first of equals counts), ties in
    the order offered. q=0 refuses. An invalid header accepts every offer, in order."""
    ranges = parse(header)
    if ranges is None:
        return list(offers)
    ranked = []
    for index, offer in enumerate(offers):
        kind = offer.partition("/")[0]
        best = (0, 0.0)   # (specificity, q)
        for media_range, has_params, q in ranges:
            if media_range == offer:
                if has_params:   # a range naming parameters the offer does not have
                    continue
                specificity = 3
            elif media_range == kind + "/*":
                specificity = 2
            elif media_range == "*/*":
                specificity = 1
            else:
                continue
            if specificity > best[0]:
                best = (specificity, q)
        if best[1] > 0:
            ranked.append((-best[1], index, offer))
    return [offer for _, _, offer in sorted(ranked)]
