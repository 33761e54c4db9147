"""The block-storage API's ASGI application: routes from each resource module, Cinder faults, auth,
microversions."""
from __future__ import annotations

from kilonova.common.auth import make_auth_hook
from kilonova.common.http import HTTPError, Router, ServiceApp
from kilonova.volume import (attachments, messages, quotas, snapshot_actions, snapshots, summaries, types, versions,
                             volume_actions, volumes, zones)
from kilonova.volume.errors import format_error

RESOURCE_MODULES = (versions, summaries, volumes, volume_actions, snapshots, snapshot_actions, types, quotas, zones,
                    attachments, messages)
PROJECT_PREFIX = "/v3/{project_id}/"
PROJECTLESS = (3, 67)


def _projectless(handler):
    """3.67: the same call without the project in the URL, on behalf of the token's project."""
    async def call(request, **params):
        if not versions.at_least(request, PROJECTLESS):
            raise HTTPError(404, "The resource could not be found.")
        return await handler(request, project_id=request.state.context.project_id, **params)
    return call


def create_app(validator, volume_service) -> ServiceApp:
    router = Router()
    for module in RESOURCE_MODULES:
        module.register(router)
    for method, template in router.endpoints():   # after every project route, so those match first
        if template.startswith(PROJECT_PREFIX) and method != "HEAD":
            router.add(method, "/v3/" + template[len(PROJECT_PREFIX):],
                       _projectless(router.handler(method, template)))
    app = ServiceApp("volume", router, error_formatter=format_error,
                     before=make_auth_hook(validator, versions.negotiate), after=versions.annotate)
    app.state["service"] = volume_service
    return app
