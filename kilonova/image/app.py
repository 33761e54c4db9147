"""The image API's ASGI application: routes from each resource module, Glance errors, auth."""
from __future__ import annotations

from kilonova.common.auth import make_auth_hook
from kilonova.common.http import Router, ServiceApp
from kilonova.image import actions, data, images, members, schemas, tags, versions
from kilonova.image.errors import format_error

RESOURCE_MODULES = (versions, images, data, tags, members, schemas, actions)


def create_app(validator, image_service) -> ServiceApp:
    """``validator`` is anything with ``async validate(token) -> token document``."""
    router = Router()
    for module in RESOURCE_MODULES:
        module.register(router)
    app = ServiceApp("image", router, error_formatter=format_error, before=make_auth_hook(validator))
    app.state["service"] = image_service
    return app
