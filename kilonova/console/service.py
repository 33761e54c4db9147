"""The ``novncproxy`` service: serves noVNC and relays its websockets to guests' VNC servers.

Tokens are read from the API database, where the compute API records them. The
HTTP server runs in threads; token checks hop onto the event loop so that they
share the database's worker threads (and SQLite's single writer) with the API.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
from urllib.parse import urlsplit

from kilonova.common.db import Database
from kilonova.common.service import Service, ServiceEnv
from kilonova.compute.db import console_tokens
from kilonova.compute.db.console_tokens import Target
from kilonova.console import urls

LOG = logging.getLogger(__name__)
DB_TIMEOUT = 30.0


class LoopTokenStore:
    """The proxy's ``TokenStore``: blocking calls (from its threads) run as database jobs on ``loop``."""

    def __init__(self, api_db: Database, loop: asyncio.AbstractEventLoop):
        self.api_db = api_db
        self.loop = loop

    def peek(self, token: str) -> Target | None:
        return self._wait(self.api_db.read(console_tokens.peek, token))

    def consume(self, token: str) -> Target | None:
        return self._wait(self.api_db.write(console_tokens.consume, token))

    def _wait(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(DB_TIMEOUT)


class NoVNCProxyService(Service):
    name = "novncproxy"

    def __init__(self, env: ServiceEnv):
        super().__init__(env)
        self.api_db = Database.shared(self.conf.get("api_database", "connection"), name="nova_api")
        self.server = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        from kilonova.console.proxy import ConsoleProxyServer  # websockify (and numpy) only when serving

        web_dir = self.conf.get("vnc", "novnc_web")
        if not os.path.isdir(web_dir):
            LOG.warning("noVNC's files are not in %s ([vnc] novnc_web; Debian's package 'novnc' installs them): "
                        "console pages will answer 404, websockets still work", web_dir)
        host = urls.proxy_host(self.conf)
        port = self.conf.getint("vnc", "novncproxy_port")
        allowed = {name for name in (urlsplit(urls.base_url(self.conf)).hostname,) if name}
        tokens = LoopTokenStore(self.api_db, asyncio.get_running_loop())
        try:
            self.server = ConsoleProxyServer((host, port), tokens, web_dir, allowed)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or not self._may_move():
                raise SystemExit(f"novncproxy cannot listen on {host}:{port}: {exc}") from None
            # Another cloud on this machine has the port (parallel test clouds): the compute API of
            # this process builds its URLs from the port we publish below, so any port will do.
            self.server = ConsoleProxyServer((host, 0), tokens, web_dir, allowed)
            LOG.warning("novncproxy: port %s is in use, serving consoles on port %s instead "
                        "(set [vnc] novncproxy_port)", port, self.server.port)
        self.conf.set("vnc", "novncproxy_port", str(self.server.port))
        self._thread = threading.Thread(target=self.server.serve_forever, name="novncproxy", daemon=True)
        self._thread.start()

    def _may_move(self) -> bool:
        """True when the URLs handed out follow the port: no fixed base URL and the compute API in-process."""
        return not self.conf.get("vnc", "novncproxy_base_url") and "compute" in self.env.endpoints.apps

    async def stop(self) -> None:
        if self.server is None:
            return
        await asyncio.get_running_loop().run_in_executor(None, self.server.shutdown)
        self.server.server_close()
        self.server = None
