"""Errors as Glance renders them (webob's error pages).

With ``Accept: application/json`` the body is
``{"message": "...", "code": "404 Not Found", "title": "Not Found"}``; with only
``text/plain`` acceptable, webob's plain-text page; otherwise (no Accept, ``*/*``,
HTML) its HTML page, whose lines openstacksdk joins into "403 Forbidden: why".
"""
from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kilonova.common.http import HTTPError

TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
          405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict", 410: "Gone",
          413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
          416: "Requested Range Not Satisfiable", 431: "Request Header Fields Too Large",
          500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}


def format_error(request: Request, error: HTTPError) -> Response:
    title = TITLES.get(error.status, "Error")
    status = f"{error.status} {title}"
    accept = request.headers.get("accept", "")
    headers = dict(error.headers)
    if "json" in accept:
        return JSONResponse({"message": error.message, "code": status, "title": title},
                            status_code=error.status, headers=headers)
    if "text/plain" not in accept or "html" in accept or "*/*" in accept:
        body = (f"<html>\n <head>\n  <title>{status}</title>\n </head>\n <body>\n  <h1>{status}</h1>\n"
                f"  {html.escape(error.message)}<br /><br />\n\n\n\n </body>\n</html>")
        return Response(body, status_code=error.status, headers=headers, media_type="text/html")
    return Response(f"{status}\n\n{error.message}\n\n   ", status_code=error.status, headers=headers,
                    media_type="text/plain")


def image_not_found(image_id: str) -> HTTPError:
    return HTTPError(404, f"No image found with ID {image_id}")


def not_authorized(action: str) -> HTTPError:
    return HTTPError(403, f"You are not authorized to complete {action} action.")
