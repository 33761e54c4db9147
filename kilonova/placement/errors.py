"""Placement's error body and its error codes (upstream's strings, never to change).

Errors look like the API-WG guideline, as upstream renders them::

    {"errors": [{"status": 404, "title": "Not Found", "detail": "...",
                 "code": "placement.undefined_code", "request_id": "req-..."}]}

``code`` appears from microversion 1.23. A 406 from version negotiation also
carries ``min_version`` and ``max_version``. The 401 of the token check keeps
keystonemiddleware's own shape, as upstream (the middleware answers it).
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from kilonova.common.http import HTTPError

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

TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict", 413: "Request Entity Too Large",
    415: "Unsupported Media Type", 500: "Internal Server Error", 503: "Service Unavailable",
}

# webob's explanations, which upstream's details start with.
EXPLANATIONS = {
    400: "The server could not comply with the request since it is either malformed or otherwise incorrect.",
    403: "Access was denied to this resource.",
    404: "The resource could not be found.",
    405: "The method specified is not allowed for this resource.",
    406: "The resource could not be generated that was acceptable to your browser.",
    409: "There was a conflict when trying to complete your request.",
    413: "The request is larger than the server is willing or able to process.",
    415: "The request media type is not supported by this server.",
    500: "The server has either erred or is incapable of performing the requested operation.",
    503: "The server is currently unavailable. Please try again at a later time.",
}


def detail_text(status: int, message: str) -> str:
    """webob's text: its explanation, then the message (none, as for a route absent at the requested
    microversion, leaves the blank line and the spaces around it)."""
    explanation = EXPLANATIONS.get(status, "")
    if not explanation:
        return message
    if message == explanation:
        message = ""
    return f"{explanation}\n\n {message}  "


def format_error(request: Request, error: HTTPError) -> Response:
    if error.status == 401 and error.extra.get("noauth"):
        return _webob_unauthorized(request, error)
    if error.status == 401:
        body = {"error": {"code": 401, "title": "Unauthorized", "message": error.message}}
        return JSONResponse(body, status_code=401, headers=error.headers)
    if error.status == 405:   # webob's own 405 text names the method
        detail = f"The method {request.method} is not allowed for this resource. \n\n {error.message}"
    else:
        detail = detail_text(error.status, error.message)
    entry = {"status": error.status, "title": TITLES.get(error.status, "Error"), "detail": detail}
    version = getattr(request.state, "version", None)
    if version is not None and version >= ERROR_CODE_VERSION:
        entry["code"] = error.code or DEFAULT
    entry["request_id"] = request.state.request_id
    if error.status == 406 and "max_version" in error.extra:
        entry["max_version"] = error.extra["max_version"]
        entry["min_version"] = error.extra["min_version"]
    return JSONResponse({"errors": [entry]}, status_code=error.status, headers=error.headers)


def _webob_unauthorized(request: Request, error: HTTPError) -> Response:
    """The 401 upstream's noauth2 middleware answers: webob's own page, JSON when asked for."""
    if "application/json" in request.headers.get("accept", ""):
        body = {"message": error.message + "<br /><br />\n\n\n", "code": "401 Unauthorized", "title": "Unauthorized"}
        return JSONResponse(body, status_code=401)
    return PlainTextResponse(f"401 Unauthorized\n\n{error.message}\n\n   ", status_code=401)
