"""Placement's error body and its error codes (upstream's strings, never to change).

Errors look like the API-WG guideline, as upstream renders them::

    {"errors": [{"status": 404, "title": "Not Found", "detail": "...",
                 "code": "placement.undefined_code", "request_id": "req-..."}]}

``code`` appears from microversion 1.23. A 406 from version negotiation also
carries ``min_version`` and ``max_version``. The 401 of the token check keeps
keystonemiddleware's own shape, as upstream (the middleware answers it).

That JSON is what a client gets when it accepts JSON (no Accept, or ``*/*``, counts
as JSON). As webob does for upstream, a client preferring HTML gets an HTML page
and one accepting neither a plain-text one, all three made from webob's templates.
"""
from __future__ import annotations

import html
import json
import re
from typing import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kilonova.common.http import HTTPError
from kilonova.placement import accept

DEFAULT = "placement.undefined_code"
INVENTORY_INUSE = "placement.inventory.inuse"
CONCURRENT_UPDATE = "placement.concurrent_update"
DUPLICATE_NAME = "placement.duplicate_name"
PROVIDER_IN_USE = "placement.resource_provider.inuse"
PROVIDER_CANNOT_DELETE_PARENT = "placement.resource_provider.cannot_delete_parent"
RESOURCE_PROVIDER_NOT_FOUND = "placement.resource_provider.not_found"
ILLEGAL_DUPLICATE_QUERYPARAM = "placement.query.duplicate_key"
QUERYPARAM_BAD_VALUE = "placement.query.bad_value"
QUERYPARAM_MISSING_VALUE = "placement.query.missing_value"

ERROR_CODE_VERSION = (1, 23)

TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
          405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict", 413: "Request Entity Too Large",
          414: "Request-URI Too Long", 415: "Unsupported Media Type", 431: "Request Header Fields Too Large",
          500: "Internal Server Error", 503: "Service Unavailable"}

# webob's explanations, which upstream's details start with (405, 406 and 415 have templates of their own).
EXPLANATIONS = {
    400: "The server could not comply with the request since it is either malformed or otherwise incorrect.",
    403: "Access was denied to this resource.",
    404: "The resource could not be found.",
    409: "There was a conflict when trying to complete your request.",
    413: "The request is larger than the server is willing or able to process.",
    500: "The server has either erred or is incapable of performing the requested operation.",
    503: "The server is currently unavailable. Please try again at a later time.",
}


def _webob_markup(request: Request, error: HTTPError, escape: Callable[[str], str]) -> str:
    """The body webob builds for this error (its template for the status, ``<br />`` breaks), each value
    passed through ``escape``: every format (HTML, JSON, plain text) is derived from it."""
    detail = escape(error.message)
    if error.status == 405:
        return f"The method {escape(request.method)} is not allowed for this resource. <br /><br />\n{detail}"
    if error.status == 406:   # names the Accept header upstream's request-log middleware left
        accepted = escape(effective_accept(request))
        return ("The resource could not be generated that was acceptable to your browser\n"
                f"(content of type {accepted}. <br /><br />\n{detail}")
    if error.status == 415:
        content_type = escape(request.headers.get("content-type", "None"))
        return f"The request media type {content_type} is not supported by this server.\n<br /><br />\n{detail}"
    explanation = EXPLANATIONS.get(error.status) or (error.message if error.extra.get("noauth") else "")
    if not explanation:
        return detail
    if error.message == explanation:   # raised without a detail of its own
        detail = ""
    return f"{escape(explanation)}<br /><br />\n{detail}\n\n"


def _keep(text: str) -> str:
    return text


def _html_escape(text: str) -> str:
    return html.escape(text, quote=True).encode("ascii", "xmlcharrefreplace").decode("ascii")


_BREAK = re.compile(r"<br.*?>", re.I | re.S)
_COMMENT = re.compile(r"<!--|-->")
_TAG = re.compile(r"<.*?>", re.S)


def _strip_tags(markup: str) -> str:
    """webob's text form of its markup: newlines become spaces, breaks newlines, tags vanish."""
    text = markup.replace("\n", " ").replace("\r", "")
    return _TAG.sub("", _COMMENT.sub("", _BREAK.sub("\n", text)))


def effective_accept(request: Request) -> str:
    """upstream's request-log middleware sets ``Accept: application/json`` when it is absent or ``*/*``."""
    accept = request.headers.get("accept")
    return "application/json" if not accept or accept == "*/*" else accept


def format_error(request: Request, error: HTTPError) -> Response:
    """The error as webob renders it for upstream: HTML or JSON, whichever the Accept header takes first
    (HTML when equal), else plain text. Keystone's own 401 stays JSON."""
    if error.extra.get("bare"):
        request.state.bare_error = True
    if error.status == 401 and not error.extra.get("noauth"):
        body = {"error": {"code": 401, "title": "Unauthorized", "message": error.message}}
        return JSONResponse(body, status_code=401, headers=error.headers)
    status_line = f"{error.status} {TITLES.get(error.status, 'Error')}"
    if request.method == "HEAD":   # webob answers a HEAD with its bare (HTML) response, body left out
        return Response(b"", status_code=error.status, headers=error.headers, media_type="text/html; charset=UTF-8")
    offers = accept.acceptable_offers(effective_accept(request), ("text/html", "application/json"))
    if not offers:
        text = f"{status_line}\n\n{_strip_tags(_webob_markup(request, error, _keep))}"
        return Response(text, status_code=error.status, headers=error.headers, media_type="text/plain; charset=UTF-8")
    if offers[0] == "text/html":
        page = HTML_PAGE.format(status=status_line, body=_webob_markup(request, error, _html_escape))
        return Response(page, status_code=error.status, headers=error.headers, media_type="text/html; charset=UTF-8")
    if error.extra.get("noauth"):   # noauth2 answers before placement's formatter: webob's own JSON
        body = {"message": _webob_markup(request, error, _keep), "code": status_line, "title": TITLES[401]}
    else:
        body = {"errors": [_json_entry(request, error)]}
    return Response(json.dumps(body), status_code=error.status, headers=error.headers, media_type="application/json")


HTML_PAGE = """<html>
 <head>
  <title>{status}</title>
 </head>
 <body>
  <h1>{status}</h1>
  {body}
 </body>
</html>"""


def _json_entry(request: Request, error: HTTPError) -> dict:
    entry = {"status": error.status, "title": TITLES.get(error.status, "Error"),
             "detail": _strip_tags(_webob_markup(request, error, _keep))}
    version = getattr(request.state, "version", None)
    if version is not None and version >= ERROR_CODE_VERSION:
        entry["code"] = error.code or DEFAULT
    entry["request_id"] = request.state.request_id
    if error.status == 406 and "max_version" in error.extra:
        entry["max_version"] = error.extra["max_version"]
        entry["min_version"] = error.extra["min_version"]
    return entry
