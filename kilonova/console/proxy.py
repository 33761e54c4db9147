"""The noVNC proxy's HTTP server: noVNC's files, and websockets relayed to guests' VNC servers.

websockify does the websocket work (handshake, framing, the relay loop); this
module decides who may connect where. A websocket is accepted only with a
token the API handed out that has not expired nor been used: it is consumed
before the handshake, so a URL opens one console session. The server runs
in threads (one per connection), beside the asyncio services of the process.
"""
from __future__ import annotations

import logging
import socket
import socketserver
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import HTTPServer
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from websockify.websocketproxy import ProxyRequestHandler

from kilonova.compute.db.console_tokens import Target

LOG = logging.getLogger(__name__)

BAD_TOKEN = "The console token is invalid, expired or already used."
MAX_TOKEN_LENGTH = 255
CONNECT_TIMEOUT = 10.0


class TokenStore(Protocol):
    """What the proxy needs of the token table (called from the server's threads)."""

    def peek(self, token: str) -> Target | None: ...

    def consume(self, token: str) -> Target | None: ...


def token_from_query(path: str) -> str | None:
    """The token of a request path: ``?token=`` (the websocket), or inside noVNC's ``?path=`` (the page)."""
    query = parse_qs(urlsplit(path).query)
    if query.get("token"):
        return query["token"][0].strip()
    for nested in query.get("path", []):
        inner = parse_qs(urlsplit(nested).query)
        if inner.get("token"):
            return inner["token"][0].strip()
    return None


def token_from_cookie(header: str | None) -> str | None:
    """Older noVNC clients carry the token in a ``token`` cookie."""
    if not header:
        return None
    cookie = SimpleCookie()
    try:
        cookie.load(header)
    except CookieError:
        return None
    return cookie["token"].value if "token" in cookie else None


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ConsoleProxyHandler(ProxyRequestHandler):
    """websockify's proxy handler with token checks; ``self.server`` is a ``ConsoleProxyServer``."""

    target: Target | None = None

    def translate_path(self, path: str) -> str:
        # Static files come from the noVNC directory, never from the process's working directory.
        self.directory = self.server.web_dir
        return super().translate_path(path)

    def do_GET(self) -> None:
        """A plain GET (no websocket upgrade): noVNC's files, refused when the URL's token is bad."""
        path = urlsplit(self.path).path
        token = token_from_query(self.path)
        is_socket_path = path.rstrip("/").endswith("/websockify")
        if token is not None or is_socket_path:
            if token is None or len(token) > MAX_TOKEN_LENGTH or self.server.tokens.peek(token) is None:
                self.send_error(HTTPStatus.FORBIDDEN, BAD_TOKEN)
                return
            if is_socket_path:
                self.send_error(HTTPStatus.BAD_REQUEST, "This address takes a websocket (open the console URL).")
                return
        super().do_GET()

    def handle_upgrade(self) -> None:
        try:
            super().handle_upgrade()  # calls validate_connection() before the handshake
        except _Refused as exc:
            LOG.info("console websocket from %s refused: %s", self.client_address[0], exc.message)
            self.send_error(exc.status, exc.message)

    def validate_connection(self) -> None:
        self._check_origin()
        token = token_from_query(self.path) or token_from_cookie(self.headers.get("Cookie"))
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise _Refused(HTTPStatus.FORBIDDEN, BAD_TOKEN)
        try:
            target = self.server.tokens.consume(token)
        except Exception:  # noqa: BLE001 - the database is down: refuse, do not crash the thread
            LOG.exception("console token check failed")
            raise _Refused(HTTPStatus.SERVICE_UNAVAILABLE, "Console tokens cannot be checked now.") from None
        if target is None:
            raise _Refused(HTTPStatus.FORBIDDEN, BAD_TOKEN)
        self.target = target

    def _check_origin(self) -> None:
        """A browser page of another site must not open consoles with a user's URL (upstream checks the same)."""
        origin = self.headers.get("Origin")
        if not origin:
            return
        origin_host = urlsplit(origin).hostname
        host_header = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        if origin_host not in {host_header, *self.server.allowed_origin_hosts}:
            raise _Refused(HTTPStatus.FORBIDDEN, f"Origin {origin} may not open consoles here.")

    def new_websocket_client(self) -> None:
        target = self.target
        try:
            guest = socket.create_connection((target.host, target.port), timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            LOG.warning("console of %s: cannot reach %s:%s: %s", target.instance_uuid, target.host, target.port, exc)
            raise self.CClose(1011, "The console of this server cannot be reached.") from None
        guest.settimeout(None)
        guest.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.do_proxy(guest)
        finally:
            try:
                guest.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            guest.close()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        LOG.debug("%s %s", self.client_address[0], format % args)


class ConsoleProxyServer(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], tokens: TokenStore, web_dir: str,
                 allowed_origin_hosts: set[str] | None = None):
        self.tokens = tokens
        self.web_dir = web_dir
        self.allowed_origin_hosts = set(allowed_origin_hosts or ())
        # What websockify's handlers read from their server.
        self.only_upgrade = False
        self.file_only = True  # no directory listings
        self.verbose = False
        self.daemon = False
        self.record = ""
        self.run_once = False
        self.handler_id = 0
        self.traffic = False
        self.web_auth = False
        self.host_token = False
        self.heartbeat = None
        self.token_plugin = None
        self.auth_plugin = None
        self.unix_listen = None
        self.logger = LOG
        super().__init__(address, ConsoleProxyHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS lookup we have no use for.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def port(self) -> int:
        return self.server_address[1]
