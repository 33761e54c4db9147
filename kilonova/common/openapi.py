"""An OpenAPI 3.1 description of a service's API (``GET /openapi.json``), generated from its route table.

Every route of the service's router is a path item: its methods, path parameters and each handler's
summary (the first line of its docstring). A handler that validates its body against a JSON Schema kept
in its module (a module-level dict the handler's code names: how Kilonova's handlers keep them) has that
schema as its request body; schemas are written in JSON Schema draft 4, as Nova's are, which the
document declares as its ``jsonSchemaDialect``. Versioned APIs take the ``OpenStack-API-Version`` header.

The document is built once per process, on first request; no token is needed (as for ``/healthcheck``),
and it holds nothing but what the API reference publishes.
"""
from __future__ import annotations

import inspect
import json
import re
from importlib import metadata
from typing import Any, Callable


_PARAM = re.compile(r"{([^}/]+)}")
# The API name a microversion header carries, per service (Placement's and the volume API's too).
VERSIONED = {"compute": "compute", "placement": "placement", "volume": "volume"}
DRAFT4 = "http://json-schema.org/draft-04/schema#"


def document(app: Any) -> dict[str, Any]:
    """The OpenAPI document of ``app`` (a ``ServiceApp``)."""
    paths: dict[str, dict[str, Any]] = {}
    for method, template in app.router.endpoints():
        if method == "HEAD":
            continue
        handler = app.router.handler(method, template)
        path = paths.setdefault(template, {})
        params = _PARAM.findall(template)
        if params:
            path["parameters"] = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                                  for name in params]
        path[method.lower()] = _operation(app.name, method, template, handler)
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Kilonova {app.name} API", "version": _version(),
                 "description": f"Every route the {app.name} service answers, generated from its route table."},
        "jsonSchemaDialect": DRAFT4,
        "servers": [{"url": app.prefix or "/"}],
        "paths": paths,
        "components": {"securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}}},
        "security": [{"token": []}],
    }


def _version() -> str:
    try:
        return metadata.version("kilonova")
    except metadata.PackageNotFoundError:  # run from a source tree without installing it
        return "0"


def _operation(service: str, method: str, template: str, handler: Callable) -> dict[str, Any]:
    target = inspect.unwrap(handler)
    doc = inspect.getdoc(target) or ""
    operation: dict[str, Any] = {
        "operationId": f"{method.lower()}:{template}",
        "summary": doc.splitlines()[0] if doc else f"{method} {template}",
        "tags": [_tag(template)],
        "responses": {"default": {"description": "The answer of the API reference (an error: an OpenStack "
                                                 "error body)."}},
    }
    if service in VERSIONED:
        operation["parameters"] = [{"name": "OpenStack-API-Version", "in": "header", "required": False,
                                    "schema": {"type": "string"},
                                    "description": f"'{VERSIONED[service]} X.Y': the microversion asked for"}]
    schemas = _body_schemas(target) if method in ("POST", "PUT", "PATCH") else []
    if schemas:
        schema = schemas[0] if len(schemas) == 1 else {"oneOf": schemas}
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return operation


def _tag(template: str) -> str:
    first = template.strip("/").split("/")[0]
    return first if first and not first.startswith("{") else "root"


def _body_schemas(handler: Callable) -> list[dict]:
    """The JSON Schemas among the module-level dicts the handler's code names."""
    code = getattr(handler, "__code__", None)
    found = []
    if code is None:
        return found
    names = set(code.co_names)
    for const in code.co_consts:  # nested functions and comprehensions of the handler
        if inspect.iscode(const):
            names.update(const.co_names)
    module_globals = getattr(handler, "__globals__", {})
    for name in sorted(names):
        value = module_globals.get(name)
        if isinstance(value, dict) and value.get("type") == "object" and "properties" in value:
            try:
                found.append(json.loads(json.dumps(value)))  # only what JSON can say
            except (TypeError, ValueError):
                continue
    return found
