"""Where each service's API lives, derived from ``[DEFAULT] my_ip`` and ``[ports]``."""
from __future__ import annotations

from kilonova.config import Config

# Path each service's catalog URL adds to its root.
CATALOG_PATHS = {"identity": "/v3", "compute": "/v2.1", "placement": "", "image": "", "network": ""}


def root_urls(conf: Config) -> dict[str, str]:
    host = conf.get("DEFAULT", "my_ip")
    return {service: f"http://{host}:{conf.getint('ports', service)}" for service in CATALOG_PATHS}


def catalog_urls(conf: Config) -> dict[str, str]:
    """The URL each service is published under in the identity catalog."""
    return {service: url + CATALOG_PATHS[service] for service, url in root_urls(conf).items()}
