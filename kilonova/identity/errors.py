"""Keystone's error body, ``{"error": {"code": 404, "title": "Not Found", "message": "..."}}``,
and the mapping of data-layer errors to it."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kilonova.common.http import HTTPError

TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
          405: "Method Not Allowed", 409: "Conflict", 413: "Request Entity Too Large",
          414: "Request-URI Too Long", 415: "Unsupported Media Type", 429: "Too Many Requests",
          431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
          503: "Service Unavailable"}


def format_error(request: Request, error: HTTPError) -> Response:
    headers = dict(error.headers)
    if error.status == 401:
        headers.setdefault("WWW-Authenticate", f'Keystone uri="{str(request.base_url).rstrip("/")}"')
    body = {"error": {"code": error.status, "title": TITLES.get(error.status, "Error"), "message": error.message}}
    return JSONResponse(body, status_code=error.status, headers=headers)
