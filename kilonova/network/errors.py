"""Neutron's faults and error body: ``{"NeutronError": {"type", "message", "detail"}}``.

Each fault is an ``HTTPError`` whose ``code`` is Neutron's exception name, so the
data layer can raise the very fault a client expects (``IpAddressAlreadyAllocated``
...) and the app renders it.
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kilonova.common.http import HTTPError

HTTP_TYPES = {400: "HTTPBadRequest", 401: "HTTPUnauthorized", 403: "HTTPForbidden", 404: "HTTPNotFound",
              405: "HTTPMethodNotAllowed", 409: "HTTPConflict", 413: "HTTPRequestEntityTooLarge",
              414: "HTTPRequestURITooLong", 415: "HTTPUnsupportedMediaType",
              431: "HTTPRequestHeaderFieldsTooLarge", 500: "HTTPInternalServerError",
              503: "HTTPServiceUnavailable"}


def format_error(request: Request, error: HTTPError) -> Response:
    kind = error.code or HTTP_TYPES.get(error.status, "NeutronException")
    return JSONResponse({"NeutronError": {"type": kind, "message": error.message, "detail": ""}},
                        status_code=error.status, headers=error.headers)


def fault(status: int, kind: str, message: str) -> HTTPError:
    return HTTPError(status, message, code=kind)


def not_found(resource: str, resource_id: str) -> HTTPError:
    """NetworkNotFound / SubnetNotFound / PortNotFound."""
    kind = resource.capitalize()
    return fault(404, f"{kind}NotFound", f"{kind} {resource_id} could not be found.")


def policy_denied(rule: str) -> HTTPError:
    return fault(403, "PolicyNotAuthorized", f"({rule}) is disallowed by policy")


def bad_request(message: str) -> HTTPError:
    return fault(400, "HTTPBadRequest", message)


def invalid_input(message: str) -> HTTPError:
    return fault(400, "InvalidInput", f"Invalid input for operation: {message}.")


def ip_already_allocated(ip: str, subnet_id: str) -> HTTPError:
    return fault(409, "IpAddressAlreadyAllocated", f"IP address {ip} already allocated in subnet {subnet_id}")


def ip_generation_failure(network_id: str) -> HTTPError:
    return fault(409, "IpAddressGenerationFailure", f"No more IP addresses available on network {network_id}.")


def mac_in_use(network_id: str, mac: str) -> HTTPError:
    return fault(409, "MacAddressInUse", f"Unable to complete operation for network {network_id}. "
                                         f"The mac address {mac} is in use.")


def network_in_use(network_id: str) -> HTTPError:
    return fault(409, "NetworkInUse", f"Unable to complete operation on network {network_id}. "
                                      "There are one or more ports still in use on the network.")


def subnet_in_use(subnet_id: str) -> HTTPError:
    return fault(409, "SubnetInUse", f"Unable to complete operation on subnet {subnet_id}: "
                                     "One or more ports have an IP allocation from this subnet.")
