"""The compute API's ASGI application: routes from each resource module, auth, microversions."""
from __future__ import annotations

import importlib
import re

from starlette.requests import Request
from starlette.responses import Response

from kilonova.common.auth import TokenValidator, make_auth_hook
from kilonova.common.http import Handler, HTTPError, Router, ServiceApp
from kilonova.compute.api import microversions
from kilonova.compute.api.common import permits
from kilonova.compute.api.errors import format_error

# Each module defines ``register(router)``; order does not matter but for volumes_boot (after servers).
RESOURCE_MODULES = [
    "versions", "servers", "server_actions", "server_metadata", "flavors", "keypairs",
    "services", "hypervisors", "availability_zones", "limits", "quota_sets", "aggregates",
    "remote_consoles", "server_topology", "instance_actions", "migrations", "server_migrations_actions",
    "server_diagnostics", "server_external_events", "floating_ips", "security_groups",
    "server_interfaces", "volume_attachments", "volumes_proxy", "server_groups",
    "server_tags", "server_shares", "server_ips", "server_password", "assisted_volume_snapshots",
    # Upstream's remaining resources: os-hosts, usage, audit log, quota classes, the proxies, extensions, 410s.
    "hosts", "simple_tenant_usage", "instance_usage_audit_log", "quota_classes", "images", "image_metadata",
    "network_proxies", "baremetal_nodes", "extensions", "removed", "console_auth_tokens",
    "volumes_boot",  # after servers and server_actions: it routes to their handlers
]

_PROJECT_IN_URL = re.compile(r"^/v2(?:\.1)?/([0-9a-f]{32}|[0-9a-f-]{36})(?=/|$)")
URL_PROJECT = "kilonova.url_project_id"


def build_router() -> Router:
    router = Router()
    for name in RESOURCE_MODULES:
        importlib.import_module(f"kilonova.compute.api.{name}").register(router)
    return router


class ComputeApp(ServiceApp):
    """Strips the optional ``/{project_id}`` URL segment (allowed since 2.18) before routing."""

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"]
            match = _PROJECT_IN_URL.match(path)
            if match and not path.startswith("/v2.1/os-"):
                prefix = "/v2.1" if path.startswith("/v2.1") else "/v2"
                scope = dict(scope, path=prefix + path[match.end():], **{URL_PROJECT: match.group(1)})
        await super().__call__(scope, receive, send)


def create_app(validator: TokenValidator, compute_api: object) -> ComputeApp:
    async def negotiate(request: Request, handler: Handler) -> None:
        request.state.version = microversions.MIN
        request.state.version = microversions.negotiate(request)
        _check_url_project(request)
        context = getattr(request.state, "context", None)
        if context is not None:   # Nova's context.is_admin: the context_is_admin rule (as overridden), not the role
            context.admin_by_policy = permits(compute_api, context, "context_is_admin")

    def add_version_headers(request: Request, response: Response) -> None:
        version = microversions.version_text(getattr(request.state, "version", microversions.MIN))
        response.headers["OpenStack-API-Version"] = f"compute {version}"
        response.headers["X-OpenStack-Nova-API-Version"] = version
        response.headers["Vary"] = "OpenStack-API-Version, X-OpenStack-Nova-API-Version"
        # Upstream's compute_req_id middleware answers the request id under Nova's older name too.
        response.headers["x-compute-request-id"] = request.state.request_id

    app = ComputeApp("compute", build_router(), error_formatter=format_error,
                     before=make_auth_hook(validator, extra=negotiate), after=add_version_headers)
    app.state["compute_api"] = compute_api
    app.state["validator"] = validator  # the version document at /v2.1/ authenticates itself (versions.py)
    return app


def _check_url_project(request: Request) -> None:
    """A URL naming a project answers only for the token's own project, as upstream: 400 otherwise,
    never the caller's servers under another project's URL (administrators included)."""
    url_project = request.scope.get(URL_PROJECT)
    context = getattr(request.state, "context", None)
    if url_project and context is not None and url_project != context.project_id:
        raise HTTPError(400, f"Malformed request URL: URL's project_id '{url_project}' doesn't match Context's "
                             f"project_id '{context.project_id}'")


def compute_api(request: Request):
    """The ComputeAPI object behind this app (databases, clients, RPC)."""
    return request.state.app.state["compute_api"]
