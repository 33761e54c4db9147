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


def traits(values: list[str], request: Request, name: str = "required") -> tuple[list[set[str]], set[str]]:
    """Required trait groups (any-of sets) and forbidden traits from one or more ``required`` values.

    ``!T`` (forbidden) needs 1.22; ``in:A,B`` (any of) and repeating the parameter need 1.39.
    """
    allow_forbidden = want(request, "1.22")
    allow_any = want(request, "1.39")
    if len(values) > 1 and not allow_any:
        values = values[-1:]
    required: list[set[str]] = []
    forbidden: set[str] = set()
    form = "HW_CPU_X86_VMX,!CUSTOM_MAGIC" if allow_forbidden else "HW_CPU_X86_VMX,CUSTOM_MAGIC"
    if allow_any:
        form = "HW_CPU_X86_VMX,!CUSTOM_MAGIC or in:HW_CPU_X86_VMX,CUSTOM_MAGIC"
    for value in values:
        if allow_any and value.startswith("in:"):
            names = [t.strip() for t in value[3:].split(",")]
            if not all(names) or any(t.startswith("!") for t in names):
                raise HTTPError(400, f"Invalid query string parameters: Expected '{name}' parameter value of "
                                     f"the form: {form}. Got: {value}")
            required.append(set(names))
            continue
        names = [t.strip() for t in value.split(",")]
        if not all(names) or (not allow_forbidden and any(t.startswith("!") for t in names)) \
                or any(t == "!" for t in names):
            raise HTTPError(400, f"Invalid query string parameters: Expected '{name}' parameter value of "
                                 f"the form: {form}. Got: {value}")
        for trait in names:
            if trait.startswith("!"):
                forbidden.add(trait[1:])
            else:
                required.append({trait})
    conflicting = {t for s in required if len(s) == 1 for t in s} & forbidden
    if conflicting:
        raise HTTPError(400, f"Conflicting required and forbidden traits found in the following traits "
                             f"keys: {name}: ({', '.join(sorted(conflicting))})")
    return required, forbidden


def member_of(values: list[str], request: Request, suffix: str = "") -> tuple[list[set[str]], set[str]]:
    """Aggregate filters: a list of any-of sets, and (1.32) forbidden aggregates."""
    if len(values) > 1 and not want(request, "1.24"):
        raise HTTPError(400, f"Multiple member_of{suffix} parameters are not supported")
    allow_forbidden = want(request, "1.32")
    required: list[set[str]] = []
    forbidden: set[str] = set()
    for value in values:
        negative = allow_forbidden and value.startswith("!")
        if negative:
            value = value[1:]
        if "," in value and not value.startswith("in:"):
            keyword = "'in:' or '!in:'" if allow_forbidden else "'in:'"
            raise HTTPError(400, f"Multiple values for 'member_of' must be prefixed with the {keyword} "
                                 f"keyword. Got: {value}")
        uuids = set(value[3:].split(",")) if value.startswith("in:") else {value}
        for agg in uuids:
            if not is_uuid(agg):
                raise HTTPError(400, f"Invalid query string parameters: Expected 'member_of' parameter to "
                                     f"contain valid UUID(s). Got: {agg}")
        if negative:
            forbidden |= uuids
        else:
            required.append(uuids)
    return required, forbidden


def integer(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise HTTPError(400, f"Invalid query string parameters: '{value}' does not match '^[1-9][0-9]*$'",
                        code=errors.QUERYPARAM_BAD_VALUE) from None
