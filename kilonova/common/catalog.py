"""Where each service's API lives: ``[endpoints]`` per service, else ``[DEFAULT] my_ip``, with ``[ports]``.

Services on separate hosts are described by ``[endpoints] <service>_host`` (the address the other
services and the internal/admin catalog entries use) and ``<service>_public_url`` (what users are
given, e.g. a proxy in front; empty = the internal URL). With nothing set, every service is at
``my_ip``, as in the all-in-one.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from kilonova.config import Config, ConfigError

# Path each service's catalog URL adds to its root.
# Block storage as Cinder's: the project in the path, which the identity service fills in per token.
CATALOG_PATHS = {"identity": "/v3", "compute": "/v2.1", "placement": "", "image": "", "network": "",
                 "block-storage": "/v3/$(project_id)s"}


def root_urls(conf: Config) -> dict[str, str]:
    """The root URL each service is reached at by the other services."""
    default_host = conf.get("DEFAULT", "my_ip")
    return {service: f"http://{conf.get('endpoints', f'{service}_host') or default_host}"
                     f":{conf.getint('ports', service)}"
            for service in CATALOG_PATHS}


def catalog_urls(conf: Config, interface: str = "public") -> dict[str, str]:
    """The URL each service is published under in the identity catalog, for ``interface``."""
    urls = {service: url + CATALOG_PATHS[service] for service, url in root_urls(conf).items()}
    if interface == "public":
        for service in urls:
            public = conf.get("endpoints", f"{service}_public_url").rstrip("/")
            if public:
                if urlsplit(public).scheme not in ("http", "https") or not urlsplit(public).netloc:
                    raise ConfigError(f"[endpoints] {service}_public_url = {public!r} is not an http(s) URL")
                urls[service] = public
    return urls
