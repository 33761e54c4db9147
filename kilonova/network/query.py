"""List queries as Neutron reads them: attribute filters (repeatable, OR'ed), tag filters,
``fields=`` projection, ``sort_key``/``sort_dir`` and ``limit``/``marker`` with ``<collection>_links``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from kilonova.network.errors import bad_request

CONTROL = {"fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse"}
TAG_FILTERS = {"tags", "tags-any", "not-tags", "not-tags-any"}


@dataclass
class ListQuery:
    filters: dict[str, list[str]] = field(default_factory=dict)
    tags: dict[str, set[str]] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (key, ascending)
    limit: int | None = None
    marker: str | None = None

    def first(self, name: str) -> str | None:
        values = self.filters.get(name)
        return values[0] if values and len(values) == 1 else None


def parse(request: Request) -> ListQuery:
    params = request.query_params
    query = ListQuery()
    for key, value in params.multi_items():
        if key in CONTROL:
            continue
        if key in TAG_FILTERS:
            query.tags.setdefault(key, set()).update(t for t in value.split(",") if t)
        else:
            query.filters.setdefault("project_id" if key == "tenant_id" else key, []).append(value)
    query.fields = [f for value in params.getlist("fields") for f in value.split(",") if f]
    keys, dirs = params.getlist("sort_key"), params.getlist("sort_dir")
    if len(dirs) not in (0, len(keys)):
        raise bad_request("The number of sort_keys and sort_dirs must be same")
    for key, direction in zip(keys, dirs or ["asc"] * len(keys)):
        if direction not in ("asc", "desc"):
            raise bad_request(f"{direction} is an invalid value for sort_dir, valid values are 'asc' and 'desc'")
        query.sort.append((key, direction == "asc"))
    if params.get("limit") is not None:
        try:
            query.limit = int(params["limit"])
        except ValueError:
            raise bad_request(f"Limit must be an integer 0 or greater and not '{params['limit']}'") from None
        if query.limit < 0:
            raise bad_request(f"Limit must be an integer 0 or greater and not '{params['limit']}'")
        query.limit = query.limit or None
    query.marker = params.get("marker")
    return query


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def _matches_value(actual: Any, wanted: list[str]) -> bool:
    if isinstance(actual, list):  # e.g. availability_zones: any element
        return any(_text(a) in wanted for a in actual)
    text = _text(actual)
    return any(text == w or (isinstance(actual, bool) and text == w.lower()) for w in wanted)


def matches(item: dict[str, Any], query: ListQuery, special: set[str] = frozenset()) -> bool:
    """Attribute filters on the shown item; unknown attributes are ignored, as Neutron does by default."""
    for key, wanted in query.filters.items():
        if key in special or key not in item:
            continue
        if not _matches_value(item[key], wanted):
            return False
    tags = set(item.get("tags", []))
    checks = {"tags": lambda want: want <= tags, "tags-any": lambda want: bool(want & tags),
              "not-tags": lambda want: not want <= tags, "not-tags-any": lambda want: not want & tags}
    return all(checks[kind](want) for kind, want in query.tags.items())


def _sort_key(item: dict[str, Any], key: str):
    value = item.get(key)
    return (value is not None, _text(value) if not isinstance(value, (int, float)) else value)


def page(request: Request, items: list[dict[str, Any]], query: ListQuery, collection: str
         ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Sort, cut one page after the marker, and the ``next`` link when more remain."""
    for key, ascending in reversed(query.sort):
        if items and key not in items[0]:
            raise bad_request(f"{key} is an invalid attribute for sort_key")
        items = sorted(items, key=lambda item: _sort_key(item, key), reverse=not ascending)
    start = 0
    if query.marker:
        ids = [item["id"] for item in items]
        start = ids.index(query.marker) + 1 if query.marker in ids else len(items)
    if query.limit is None:
        return items[start:], []
    chunk = items[start:start + query.limit]
    links = []
    if start + query.limit < len(items) and chunk:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
        base = str(request.base_url).rstrip("/")
        links.append({"rel": "next", "href": f"{base}{request.url.path}?"
                                             + urlencode(params + [("marker", chunk[-1]["id"])])})
    return chunk, links


def project(item: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    if not fields:
        return item
    return {key: item[key] for key in fields if key in item}
