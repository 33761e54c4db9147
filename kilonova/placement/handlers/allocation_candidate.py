"""GET /allocation_candidates: request groups parsed here, the search in objects.candidates."""
from __future__ import annotations

import json
import operator
import re

from starlette.requests import Request
from starlette.responses import Response

from kilonova.common import metrics
from kilonova.common.http import HTTPError, Router
from kilonova.placement import errors, schemas
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
    return schemas.for_version(schemas.CANDIDATES_QUERY, request.state.version)


def parse_groups(request: Request, same_subtree: list[list[str]]) -> list[cands.RequestGroup]:
    """The request groups by suffix, checked as upstream (in query order, so the first bad key is named)."""
    pattern = re.compile(f"^({'|'.join(GROUP_KEYS)})({_suffix_pattern(request)})?$")
    groups: dict[str, cands.RequestGroup] = {}
    params = request.query_params
    for key, value in params.multi_items():
        match = pattern.match(key)
        if not match:
            continue
        kind, suffix = match.group(1), match.group(2) or ""
        group = groups.setdefault(suffix, cands.RequestGroup(suffix=suffix))
        if kind == "resources":
            group.resources = qs.resources(value)
        elif kind == "required":
            group.required, group.forbidden = qs.traits(params.getlist(key), request)
        elif kind == "member_of":
            group.member_of, group.forbidden_aggregates = qs.member_of(params.getlist(key), request, suffix)
        else:
            if not util.is_uuid(value.strip()):
                raise HTTPError(400, f"Invalid query string parameters: Expected 'in_tree' parameter to be a "
                                     f"format of uuid. Got: {value}")
            group.in_tree = value.strip()   # as given: upstream finds no provider by an upper-case uuid
    if want(request, "1.36"):
        _check_subtree_groups(groups, same_subtree)
    else:
        _check_orphans(groups)
    clashes = [f"required{s}: ({names})" for s, g in groups.items() if want(request, "1.22")
               for names in qs.conflicts(g.required, g.forbidden)]
    if clashes:
        raise HTTPError(400, "Conflicting required and forbidden traits found in the following traits keys: "
                             + ", ".join(sorted(clashes)))
    if "group_policy" not in params and sum(1 for s in groups if s) > 1:
        raise HTTPError(400, 'The "group_policy" parameter is required when specifying more than one '
                             '"resources{N}" parameter.')
    return [groups[s] for s in sorted(groups, key=lambda s: (s != "", s))]


def _check_orphans(groups: dict[str, cands.RequestGroup]) -> None:
    """Below 1.36 every group, the unsuffixed one included, needs resources."""
    for label, key, test in (("traits", "required", lambda g: g.required or g.forbidden),
                             ("member_of", "member_of", lambda g: g.member_of or g.forbidden_aggregates)):
        orphans = [f"{key}{s}" for s, g in groups.items() if not g.resources and test(g)]
        if orphans:
            gap = "  " if label == "traits" else " "   # upstream's spacing
            raise HTTPError(400, f"All {label} parameters must be associated with resources.{gap}Found the "
                                 f"following orphaned {label} keys: {', '.join(orphans)}")
    if not all(g.resources for g in groups.values()):
        raise HTTPError(400, "All request groups must specify resources.")
    if not groups:
        raise HTTPError(400, "At least one request group (`resources` or `resources{$S}`) is required.")


def _check_subtree_groups(groups: dict[str, cands.RequestGroup], same_subtree: list[list[str]]) -> None:
    """From 1.36 a group without resources must be named in same_subtree, and same_subtree names only
    groups that exist."""
    resourceless = [s for s, g in groups.items() if not g.resources]
    if len(resourceless) == len(groups):
        raise HTTPError(400, "There must be at least one resources or resources[$S] parameter.",
                        code=errors.QUERYPARAM_MISSING_VALUE)
    named = {s for suffixes in same_subtree for s in suffixes}
    bad = [s for s in resourceless if s not in named]
    if bad:
        raise HTTPError(400, f"Resourceless suffixed group request should be specified in `same_subtree` "
                             f"query param: bad group(s) - {bad}.", code=errors.QUERYPARAM_BAD_VALUE)
    bad = sorted(s for s in named if s not in groups)
    if bad:
        raise HTTPError(400, f"Real suffixes should be specified in `same_subtree`: {bad} not found in "
                             f"{list(groups)}.", code=errors.QUERYPARAM_BAD_VALUE)


def _same_subtree(request: Request) -> list[list[str]]:
    found = []
    for value in request.query_params.getlist("same_subtree"):
        suffixes = sorted({s.strip() for s in value.split(",")})
        if "" in suffixes:
            raise HTTPError(400, "Empty string (unsuffixed group) can not be specified in `same_subtree` ",
                            code=errors.QUERYPARAM_BAD_VALUE)
        found.append(suffixes)
    return found


def search_request(request: Request) -> cands.SearchRequest:
    util.query(request, query_schema(request))
    params = request.query_params
    search = cands.SearchRequest(groups=[], group_policy=params.getlist("group_policy")[0]
                                 if "group_policy" in params else None,
                                 nested=want(request, "1.29"), all_summary_classes=want(request, "1.27"),
                                 max_candidates=util.state(request).max_candidates,
                                 strategy=util.state(request).generation_strategy,
                                 max_combinations=util.state(request).max_combinations,
                                 randomize=util.state(request).randomize)
    if "limit" in params:
        search.limit = qs.first_limit(params.getlist("limit"))
    roots = params.getlist("root_required")
    if len(roots) > 1:
        raise HTTPError(400, "Query parameter 'root_required' may be specified only once.",
                        code=errors.ILLEGAL_DUPLICATE_QUERYPARAM)
    if roots:
        required, search.root_forbidden = qs.root_traits(roots[0])
        search.root_required = [{t} for t in sorted(required)]
    search.same_subtree = _same_subtree(request)
    search.groups = parse_groups(request, search.same_subtree)
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
        raise HTTPError(400, str(error)) from None


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
    append = parts.append
    shapes: dict[tuple, tuple] = {}
    uuid_of = result.uuids.__getitem__
    for candidate in result.candidates:
        kind = type(candidate)
        if kind is tuple:   # provider ids: the sharing-provider everyday case, thousands of these
            # which positions repeat an earlier provider (tuple.index: the first position of each)
            found = shapes.get(key := tuple(map(candidate.index, candidate)))
            if found is None:
                firsts = sorted(set(key))
                shape = tuple(firsts.index(position) for position in key)
                found = shapes[key] = (_pattern(request, result.single_resources, shape),
                                       operator.itemgetter(*firsts), len(firsts))
            pattern, distinct, count = found
            if count == 2:   # a host and one sharing provider
                first, second = distinct(candidate)
                uuids = (uuid_of(first), uuid_of(second))
            else:
                uuids = tuple(map(uuid_of, distinct(candidate))) if count > 1 else (uuid_of(distinct(candidate)),)
            append((pattern % (uuids + uuids if twice else uuids)).encode())
            continue
        if kind is str:
            text = template % ((candidate, candidate) if twice else candidate)
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
        append(text.encode())
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
@util.json_only
@metrics.timed(metrics.PLACEMENT_CANDIDATES)
async def list_allocation_candidates(request: Request) -> Response:
    search = search_request(request)
    result = await util.db(request).read(_search, search)
    body = b"".join([b'{"allocation_requests": [', *_separated(render_requests(request, result)),
                     b'], "provider_summaries": {', *_separated(render_summaries(request, result)), b"}}"])
    response = SlicedResponse(body, media_type="application/json")
    util.cache_headers(request, response, None)
    return response


def register(router: Router) -> None:
    router.add("GET", "/allocation_candidates", list_allocation_candidates)
