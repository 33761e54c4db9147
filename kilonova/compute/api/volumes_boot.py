"""/v2.1/os-volumes_boot: upstream's old alias of /servers (boot from volume was once its own extension),
still routed to the very same handlers; registered after servers.py and server_actions.py."""
from __future__ import annotations

from kilonova.common.http import Router

_ALIASED = (("GET", ""), ("POST", ""), ("GET", "/detail"), ("GET", "/{server_id}"), ("PUT", "/{server_id}"),
            ("DELETE", "/{server_id}"), ("POST", "/{server_id}/action"))


def register(router: Router) -> None:
    for method, rest in _ALIASED:
        router.add(method, "/v2.1/os-volumes_boot" + rest, router.handler(method, "/v2.1/servers" + rest))
