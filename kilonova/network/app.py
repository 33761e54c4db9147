"""The network API's ASGI application: routes from each resource module, Neutron errors, auth."""
from __future__ import annotations

from kilonova.common import operations
from kilonova.common.auth import make_auth_hook
from kilonova.common.http import Router, ServiceApp
from kilonova.network import (floating_ips, networks, ports, quotas, routers, security_group_rules, security_groups,
                              subnets, tags, versions)
from kilonova.network.errors import format_error

RESOURCE_MODULES = (versions, networks, subnets, ports, security_groups, security_group_rules, quotas, tags,
                    routers, floating_ips)


class NetworkApp(ServiceApp):
    """Neutron accepts an optional ``.json`` suffix on every path (``/v2.0/networks.json``); the operators'
    paths (``/openapi.json``) are taken as they are."""

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].endswith(".json") and scope["path"] not in operations.PATHS:
            scope = dict(scope, path=scope["path"][:-5])
        await super().__call__(scope, receive, send)


def create_app(validator, network_service) -> NetworkApp:
    """``validator`` is anything with ``async validate(token) -> token document``."""
    router = Router()
    for module in RESOURCE_MODULES:
        module.register(router)
    app = NetworkApp("network", router, error_formatter=format_error, before=make_auth_hook(validator))
    app.state["service"] = network_service
    return app
