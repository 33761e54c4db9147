"""Finding projects by name through the identity API, as the service user.

The image and network services own default resources (the ``kilonova-tiny``
image, the ``private`` network) that belong to the admin project; they learn
its id at start-up with ``GET /v3/projects?name=...``.
"""
from __future__ import annotations

import asyncio
import logging

from kilonova.common.clients import ServiceAuth, ServiceClient
from kilonova.config import Config

LOG = logging.getLogger(__name__)


def service_client(conf: Config, endpoints, service_type: str) -> ServiceClient:
    """A client to ``service_type``'s API authenticated as ``[service_user]``."""
    identity = endpoints.http_client("identity")
    auth = ServiceAuth(identity, conf.get("service_user", "username"), conf.get("service_user", "password"),
                       conf.get("service_user", "project_name"))
    return ServiceClient(identity if service_type == "identity" else endpoints.http_client(service_type), auth)


def identity_service_client(conf: Config, endpoints) -> ServiceClient:
    """A client to the identity API authenticated as ``[service_user]``."""
    return service_client(conf, endpoints, "identity")


class ProjectLookupError(RuntimeError):
    pass


async def project_id_by_name(client: ServiceClient, name: str, *, domain_id: str = "default",
                             attempts: int = 5, delay: float = 0.5) -> str:
    """The id of project ``name`` in ``domain_id``; retries briefly while identity warms up."""
    last = "no answer"
    for attempt in range(attempts):
        try:
            response = await client.get("/v3/projects", params={"name": name, "domain_id": domain_id})
        except Exception as exc:  # noqa: BLE001 - identity may not be reachable yet (or refused the service user)
            last = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code == 200:
                projects = response.json().get("projects", [])
                if projects:
                    return projects[0]["id"]
                raise ProjectLookupError(f"the identity service has no project named {name!r} "
                                         f"in domain {domain_id!r}")
            last = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code < 500:  # refused, not warming up: retrying will not help
                break
        if attempt + 1 < attempts:
            await asyncio.sleep(delay * (2 ** attempt))
    raise ProjectLookupError(f"could not look up project {name!r} through the identity service ({last}); "
                             "check that the service user has the admin role")
