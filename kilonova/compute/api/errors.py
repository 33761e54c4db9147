"""Nova's error body: ``{"itemNotFound": {"code": 404, "message": "..."}}``."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kilonova.common.http import HTTPError

FAULT_NAMES = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
               405: "badMethod", 409: "conflictingRequest", 413: "overLimit", 414: "badRequest",
               415: "badMediaType", 429: "overLimit", 431: "badRequest", 501: "notImplemented",
               503: "serviceUnavailable"}


def format_error(request: Request, error: HTTPError) -> Response:
    name = FAULT_NAMES.get(error.status, "computeFault")
    return JSONResponse({name: {"code": error.status, "message": error.message}},
                        status_code=error.status, headers=error.headers)
