"""GET /allocation_candidates: request groups parsed here, the search in objects.candidates."""
from __future__ import annotations

import json
import re

from starlette.requests import Request
from starlette.responses import Response

from kilonova.common.http import HTTPError, Router
from kilonova.placement import errors
from kilonova.placement.handlers import query as qs
from kilonova.placement.handlers import util
from kilonova.placement.handlers.util import policy, want
from kilonova.placement.microversion import versioned
from kilonova.placement.objects import candidates as cands
from kilonova.placement.objects import exceptions as exc
from kilonova.placement.objects import resource_classes as rcs

GROUP_KEYS = ("resources", "required", "member_of", "in_tree")


def _suffix_pattern(request: Request) -> str:
    if want(request, "1.33"):
        return "[a-zA-Z0-9_-]{1,64}"
    return "[1-9][0-9]*" if want(request, "1.25") else "(?!)"


def query_schema(request: Request) -> dict:
    keys = {"resources": {"type": "string"}}
    for version, key, spec in (
            ("1.16", "limit", {"type": "string", "pattern": "^[1-9][0-9]*$"}),
            ("1.17", "required", {"type": "string"}), ("1.21", "member_of", {"type": "string"}),
            ("1.25", "group_policy", {"type": "string", "enum": ["none", "isolate"]}),
            ("1.31", "in_tree", {"type": "string"}), ("1.35", "root_required", {"type": "string"}),
            ("1.36", "same_subtree", {"type": "string"})):
        if want(request, version):
            keys[key] = spec
    schema = {"type": "object", "properties": keys, "additionalProperties": False}
    if want(request, "1.25"):
        allowed = [k for k in GROUP_KEYS if k in keys]
        schema["patternProperties"] = {f"^({'|'.join(allowed)}){_suffix_pattern(request)}$": {"type": "string"}}
    else:
        schema["required"] = ["resources"]
    return schema


def parse_groups(request: Request) -> list[cands.RequestGroup]:
    pattern = re.compile(f"^({'|'.join(GROUP_KEYS)})({_suffix_pattern(request)})?$")
    groups: dict[str, cands.RequestGroup] = {}
    seen: dict[str, set[str]] = {}
    params = request.query_params
    for key in dict.fromkeys(params.keys()):
        match = pattern.match(key)
        if not match:
            continue
        kind, suffix = match.group(1), match.group(2) or ""
        group = groups.setdefault(suffix, cands.RequestGroup(suffix=suffix))
        seen.setdefault(kind, set()).add(key)
        if kind == "resources":
            group.resources = qs.resources(params[key])
        elif kind == "required":
            group.required, group.forbidden = qs.traits(params.getlist(key), request, key)
        elif kind == "member_of":
            group.member_of, group.forbidden_aggregates = qs.member_of(params.getlist(key), request, suffix)
        else:
            if not util.is_uuid(params[key]):
                raise HTTPError(400, f"Invalid query string parameters: Expected '{key}' parameter to be a "
                                     f"format of uuid. Got: {params[key]}", code=errors.QUERYPARAM_BAD_VALUE)
            group.in_tree = util.normalize_uuid(params[key])
    _check_groups(request, groups)
    return [groups[s] for s in sorted(groups, key=lambda s: (s != "", s))]


def _check_groups(request: Request, groups: dict[str, cands.RequestGroup]) -> None:
    if not any(g.resources for g in groups.values()):
        raise HTTPError(400, "At least one request group (`resources` or `resources{$S}`) is required.",
                        code=errors.QUERYPARAM_MISSING_VALUE)
    if not want(request, "1.36"):
        for label, test in (("traits", lambda g: g.required or g.forbidden),
                            ("member_of", lambda g: g.member_of or g.forbidden_aggregates),
                            ("in_tree", lambda g: g.in_tree)):
            orphans = sorted(s for s, g in groups.items() if s and not g.resources and test(g))
            if orphans:
                key = "required" if label == "traits" else label
                names = ", ".join(f"{key}{s}" for s in orphans)
                raise HTTPError(400, f"All {label} parameters must be associated with resources. Found the "
                                     f"following orphaned {label} keys: {names}")
    suffixed = [s for s in groups if s]
    if len(suffixed) > 1 and "group_policy" not in request.query_params:
        raise HTTPError(400, 'The "group_policy" parameter is required when specifying more than one '
                             '"resources{$S}" parameter.', code=errors.QUERYPARAM_MISSING_VALUE)


def search_request(request: Request) -> cands.SearchRequest:
    params = util.query(request, query_schema(request))
    search = cands.SearchRequest(groups=parse_groups(request), group_policy=params.get("group_policy"),
                                 nested=want(request, "1.29"), all_summary_classes=want(request, "1.27"),
                                 max_candidates=util.state(request).max_candidates,
                                 strategy=util.state(request).generation_strategy,
                                 max_combinations=util.state(request).max_combinations)
    if "limit" in params:
        search.limit = qs.integer(params["limit"], "limit")
    if "root_required" in params:
        search.root_required, search.root_forbidden = qs.traits(
            request.query_params.getlist("root_required"), request, "root_required")
    for value in request.query_params.getlist("same_subtree"):
        suffixes = [s.strip() for s in value.split(",")]
        unknown = [s for s in suffixes if s not in {g.suffix for g in search.groups} or not s]
        if unknown:
            raise HTTPError(400, f"Real suffixes should be specified in same_subtree: {unknown} not found in "
                                 f"{sorted(g.suffix for g in search.groups if g.suffix)}.",
                            code=errors.QUERYPARAM_BAD_VALUE)
        search.same_subtree.append(suffixes)
    return search


def _search(session, search: cands.SearchRequest):
    names = {rc for g in search.groups for rc in g.resources}
    unknown = sorted(names - set(rcs.ids_by_name(session, names)))
    if unknown:
        raise HTTPError(400, f"Invalid resource class in resources parameter: No such resource class "
                             f"{unknown[0]}.")
    try:
        return cands.search(session, search)
    except exc.TraitNotFound as error:
        raise HTTPError(400, f"Invalid query string parameters: {error}") from None


def render_requests(request: Request, result: cands.SearchResult) -> list[bytes]:
    """Each allocation request as JSON bytes; one-provider candidates through one template."""
    dumps = json.dumps
    old = not want(request, "1.12")
    mappings = want(request, "1.34")
    template = None
    if result.single_resources:
        resources = dumps(dict(sorted(result.single_resources.items())))
        if old:
            template = '{"allocations": [{"resource_provider": {"uuid": "%s"}, "resources": ' + resources + '}]}'
        elif mappings:
            template = '{"allocations": {"%s": {"resources": ' + resources + '}}, "mappings": {"": ["%s"]}}'
        else:
            template = '{"allocations": {"%s": {"resources": ' + resources + '}}}'
    twice = mappings and not old
    if template is not None and all(isinstance(c, str) for c in result.candidates):
        if twice:
            return [(template % (uuid, uuid)).encode() for uuid in result.candidates]
        return [(template % uuid).encode() for uuid in result.candidates]
    parts = []
    patterns: dict[tuple, str] = {}
    for candidate in result.candidates:
        if isinstance(candidate, str):
            text = template % ((candidate, candidate) if twice else candidate)
        elif isinstance(candidate, tuple):
            distinct = list(dict.fromkeys(candidate))
            shape = tuple(distinct.index(uuid) for uuid in candidate)
            pattern = patterns.get(shape)
            if pattern is None:
                pattern = patterns[shape] = _pattern(request, result.single_resources, shape)
            text = pattern % (tuple(distinct) * 2 if mappings and not old else tuple(distinct))
        elif old:
            text = dumps({"allocations": [{"resource_provider": {"uuid": rp}, "resources": resources}
                                          for rp, resources in candidate.allocations.items()]})
        else:   # uuids, class names and suffixes need no JSON escaping: built as text
            allocations = ", ".join(f'"{rp}": {{"resources": {_amounts(res)}}}'
                                    for rp, res in candidate.allocations.items())
            text = '{"allocations": {' + allocations + "}"
            if mappings:
                text += ', "mappings": {' + ", ".join(
                    f'"{suffix}": [' + ", ".join(f'"{rp}"' for rp in rps) + "]"
                    for suffix, rps in candidate.mappings.items()) + "}"
            text += "}"
        parts.append(text.encode())
    return parts


def _pattern(request: Request, resources: dict[str, int], shape: tuple[int, ...]) -> str:
    """The text of a one-group candidate whose classes (in name order) go to the providers numbered
    by ``shape``, with ``%s`` for each provider's uuid (then each again for the mappings)."""
    names = sorted(resources)
    per_provider: list[dict[str, int]] = [{} for _ in range(max(shape) + 1)]
    for name, index in zip(names, shape):
        per_provider[index][name] = resources[name]
    if not want(request, "1.12"):
        return json.dumps({"allocations": [{"resource_provider": {"uuid": "%s"}, "resources": amounts}
                                           for amounts in per_provider]})
    text = '{"allocations": {' + ", ".join(f'"%s": {{"resources": {_amounts(amounts)}}}'
                                           for amounts in per_provider) + "}"
    if want(request, "1.34"):
        text += ', "mappings": {"": [' + ", ".join('"%s"' for _ in per_provider) + "]}"
    return text + "}"


def _amounts(resources: dict[str, int]) -> str:
    return "{" + ", ".join(f'"{rc}": {amount}' for rc, amount in resources.items()) + "}"


def render_summaries(request: Request, result: cands.SearchResult) -> list[bytes]:
    """Each provider summary as a JSON ``"uuid": {...}`` member in bytes, cached on the provider per
    rendering flavour (a provider whose data changes is a new object with a new generation)."""
    traits, tree, every_class = want(request, "1.17"), want(request, "1.29"), want(request, "1.27")
    requested = None if every_class else frozenset(result.class_ids.values())
    flavour = (traits, tree, requested)
    providers = result.view.providers if result.view else {}
    parts = [provider.rendered.get(flavour) for provider in result.summaries]
    if None not in parts:
        return parts
    parts = []
    for provider in result.summaries:
        fragment = provider.rendered.get(flavour)
        if fragment is None:
            resources = {}
            for rc_id, record in sorted(provider.inventory.items()):
                if requested is None or rc_id in requested:
                    resources[result.class_names[rc_id]] = {"capacity": record.capacity, "used": record.used}
            summary: dict = {"resources": resources}
            if traits:
                summary["traits"] = sorted(result.trait_names[t] for t in provider.traits)
            if tree:
                parent = providers.get(provider.parent) if provider.parent is not None else None
                summary["parent_provider_uuid"] = parent.uuid if parent else None
                summary["root_provider_uuid"] = providers[provider.root].uuid
            fragment = provider.rendered[flavour] = f'"{provider.uuid}": {json.dumps(summary)}'.encode()
        parts.append(fragment)
    return parts


def _separated(parts: list[bytes]) -> list[bytes]:
    """``parts`` with ``b", "`` between them, for one final join (no intermediate multi-MB strings)."""
    if len(parts) < 2:
        return parts
    out: list = [b", "] * (2 * len(parts) - 1)
    out[0::2] = parts
    return out


class SlicedResponse(Response):
    """A large body handed to the server in slices: it is written to the socket as the client reads
    instead of being copied whole into the transport's buffer (10,000 candidates are about 5 MB)."""

    SLICE = 256 * 1024

    async def __call__(self, scope, receive, send) -> None:
        body = self.body
        if len(body) <= self.SLICE:
            await super().__call__(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        view = memoryview(body)
        for start in range(0, len(body), self.SLICE):
            await send({"type": "http.response.body", "body": bytes(view[start:start + self.SLICE]),
                        "more_body": start + self.SLICE < len(body)})


@versioned("1.10")
@policy("placement:allocation_candidates:list")
async def list_allocation_candidates(request: Request) -> Response:
    util.check_accept(request)
    search = search_request(request)
    result = await util.db(request).read(_search, search)
    body = b"".join([b'{"allocation_requests": [', *_separated(render_requests(request, result)),
                     b'], "provider_summaries": {', *_separated(render_summaries(request, result)), b"}}"])
    response = SlicedResponse(body, media_type="application/json")
    util.cache_headers(request, response, None)
    return response


def register(router: Router) -> None:
    router.add("GET", "/allocation_candidates", list_allocation_candidates)
