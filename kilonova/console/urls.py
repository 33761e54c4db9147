"""The console URLs users are given: ``[vnc] novncproxy_base_url`` plus the token.

The token travels inside noVNC's ``path`` parameter (the path its websocket
opens), as upstream Nova does since noVNC 1.1 dropped the top-level ``token``.
"""
from __future__ import annotations

from urllib.parse import urlencode

from kilonova.config import Config

WEBSOCKET_PATH = "websockify"


def proxy_host(conf: Config) -> str:
    return conf.get("vnc", "novncproxy_host") or conf.get("DEFAULT", "my_ip")


def base_url(conf: Config) -> str:
    configured = conf.get("vnc", "novncproxy_base_url")
    if configured:
        return configured
    return f"http://{proxy_host(conf)}:{conf.getint('vnc', 'novncproxy_port')}/vnc_lite.html"


def access_url(conf: Config, token: str) -> str:
    base = base_url(conf)
    separator = "&" if "?" in base else "?"
    return base + separator + urlencode({"path": f"{WEBSOCKET_PATH}?token={token}"})
