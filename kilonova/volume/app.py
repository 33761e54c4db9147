"""The block-storage API's ASGI application: routes from each resource module, Cinder faults, auth,
microversions."""
from __future__ import annotations

from kilonova.common.auth import make_auth_hook
from kilonova.common.http import Router, ServiceApp
from kilonova.volume import quotas, snapshots, types, versions, volumes, zones
from kilonova.volume.errors import format_error

RESOURCE_MODULES = (versions, volumes, snapshots, types, quotas, zones)


def create_app(validator, volume_service) -> ServiceApp:
    router = Router()
    for module in RESOURCE_MODULES:
        module.register(router)
    app = ServiceApp("volume", router, error_formatter=format_error,
                     before=make_auth_hook(validator, versions.negotiate), after=versions.annotate)
    app.state["service"] = volume_service
    return app
