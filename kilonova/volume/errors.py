"""Cinder's fault body: ``{"badRequest": {"message": ..., "code": 400}}``, the key named by the status."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kilonova.common.http import HTTPError

FAULT_NAMES = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
               405: "badMethod", 409: "conflictingRequest", 413: "overLimit", 415: "badMediaType",
               501: "notImplemented", 503: "serviceUnavailable"}


def format_error(request: Request, error: HTTPError) -> Response:
    name = FAULT_NAMES.get(error.status, "computeFault")
    return JSONResponse({name: {"message": error.message, "code": error.status}}, status_code=error.status,
                        headers=error.headers)


def bad_request(message: str) -> HTTPError:
    return HTTPError(400, message)


def volume_not_found(volume_id: str) -> HTTPError:
    return HTTPError(404, f"Volume {volume_id} could not be found.")


def type_not_found(type_id: str) -> HTTPError:
    return HTTPError(404, f"Volume type {type_id} could not be found.")


def policy_denied(action: str) -> HTTPError:
    return HTTPError(403, f"Policy doesn't allow {action} to be performed.")


def over_quota(message: str) -> HTTPError:
    return HTTPError(413, message)
