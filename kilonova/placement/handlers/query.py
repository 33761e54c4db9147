"""Parsing of the query-string mini-languages: resources, required traits, member_of."""
from __future__ import annotations

from starlette.requests import Request

from kilonova.common.http import HTTPError
from kilonova.placement import errors
from kilonova.placement.handlers.util import is_uuid, want


def resources(value: str) -> dict[str, int]:
    """``VCPU:2,MEMORY_MB:1024`` -> {"VCPU": 2, "MEMORY_MB": 1024}."""
    form = "Expected resources query string parameter in form: ?resources=VCPU:2,MEMORY_MB:1024."
    if not value.strip():
        raise HTTPError(400, f"Badly formed resources parameter. {form} Got: empty string.")
    result: dict[str, int] = {}
    for item in value.split(","):
        try:
            name, amount_text = item.split(":")
        except ValueError:
            raise HTTPError(400, f"Badly formed resources parameter. {form} Got: {item}.") from None
        try:
            amount = int(amount_text)
        except ValueError:
            raise HTTPError(400, f"Requested resource {name} expected positive integer amount. "
                                 f"Got: {amount_text}.") from None
        if amount < 1:
            raise HTTPError(400, f"Requested resource {name} requires amount >= 1. Got: {amount}.")
        result[name] = amount
    return result


def trait_value(value: str, allow_forbidden: bool, allow_any: bool) -> tuple[list[set[str]], set[str]]:
    """One ``required`` value: ``A,!B`` (each name its own any-of set) or ``in:A,B`` (one any-of set).
    As upstream, any number of leading ``!`` mark a forbidden trait, and messages name ``required``."""
    bad = "Invalid query string parameters: "
    if value.startswith("in:"):
        if not allow_any:
            raise HTTPError(400, f"{bad}The format 'in:HW_CPU_X86_VMX,CUSTOM_MAGIC' only supported since "
                                 f"microversion 1.39. Got: {value}")
        any_of = {t.strip() for t in value[3:].split(",")}
        if not all(any_of):
            raise HTTPError(400, f"{bad}Expected 'required' parameter value of the form: "
                                 f"in:HW_CPU_X86_VMX,CUSTOM_MAGIC. Got an empty trait in: {value}")
        if any(t.startswith("!") for t in any_of):
            raise HTTPError(400, f"{bad}The format 'in:HW_CPU_X86_VMX,CUSTOM_MAGIC' does not support "
                                 f"forbidden traits. Got: {value}")
        return [any_of], set()
    names = [t.strip() for t in value.split(",")]
    forbidden = {t.lstrip("!") for t in names if t.startswith("!")}
    if not all(names) or not all(forbidden):
        form = "HW_CPU_X86_VMX,!CUSTOM_MAGIC" if allow_forbidden else "HW_CPU_X86_VMX,CUSTOM_MAGIC"
        raise HTTPError(400, f"{bad}Expected 'required' parameter value of the form: {form}. "
                             f"Got an empty trait in: {value}")
    if forbidden and not allow_forbidden:
        raise HTTPError(400, f"{bad}Expected 'required' parameter value of the form: "
                             f"HW_CPU_X86_VMX,CUSTOM_MAGIC. Got: {value}")
    return [{t} for t in names if not t.startswith("!")], forbidden


def traits(values: list[str], request: Request) -> tuple[list[set[str]], set[str]]:
    """Required any-of sets and forbidden traits from the values of one ``required{suffix}`` key.

    ``!T`` (forbidden) needs 1.22; ``in:A,B`` and repeating the key need 1.39 (below, the last value
    counts, as upstream)."""
    allow_forbidden, allow_any = want(request, "1.22"), want(request, "1.39")
    if not allow_any:
        values = values[-1:]
    required: list[set[str]] = []
    forbidden: set[str] = set()
    for value in values:
        any_of, none_of = trait_value(value, allow_forbidden, allow_any)
        required += any_of
        forbidden |= none_of
    return required, forbidden


def conflicts(required: list[set[str]], forbidden: set[str]) -> list[str]:
    """The required any-of sets that forbidden traits rule out entirely, each as ``A, B``."""
    return [", ".join(sorted(any_of)) for any_of in required if any_of <= forbidden]


def root_traits(value: str) -> tuple[set[str], set[str]]:
    """``root_required``: ``A,!B`` only (no ``in:``, even at 1.39, as upstream)."""
    any_of, forbidden = trait_value(value, allow_forbidden=True, allow_any=False)
    required = {t for s in any_of for t in s}
    clash = required & forbidden
    if clash:
        raise HTTPError(400, "Conflicting required and forbidden traits found in root_required: "
                             + ", ".join(sorted(clash)), code=errors.QUERYPARAM_BAD_VALUE)
    return required, forbidden


def member_of(values: list[str], request: Request, suffix: str = "") -> tuple[list[set[str]], set[str]]:
    """Aggregate filters: a list of any-of sets and, from 1.32, forbidden aggregates (``!U``, ``!in:U,V``).
    Repeating the key needs 1.24."""
    if len(values) > 1 and not want(request, "1.24"):
        raise HTTPError(400, f"Multiple member_of{suffix} parameters are not supported")
    allow_forbidden = want(request, "1.32")
    required: list[set[str]] = []
    forbidden: set[str] = set()
    for value in values:
        if "," in value and not value.startswith(("in:", "!in:")):
            raise HTTPError(400, f"Multiple values for 'member_of' must be prefixed with the 'in:' or '!in:' "
                                 f"keyword using the valid microversion. Got: {value}")
        negative = value.startswith("!")
        body = value[1:] if negative else value
        uuids = set(body[3:].split(",")) if body.startswith("in:") else {body}
        for agg in uuids:
            if not is_uuid(agg):
                raise HTTPError(400, f"Invalid query string parameters: Expected 'member_of' parameter to "
                                     f"contain valid UUID(s). Got: {agg}")
        if not negative:
            required.append(uuids)
        elif not allow_forbidden:
            raise HTTPError(400, f"Forbidden member_of{suffix} parameters are not supported in the specified "
                                 f"microversion")
        else:
            forbidden |= uuids
    return required, forbidden


def first_limit(values: list[str]) -> int:
    """``limit``: the schema checked the last value; as upstream, the first one counts."""
    if not values[0].isdigit():
        raise HTTPError(400, f"Invalid query string parameters: '{values[0]}' does not match '^[1-9][0-9]*$'")
    return int(values[0])
