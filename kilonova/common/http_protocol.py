"""uvicorn's h11 protocol with a read timeout, as nova.conf's ``[wsgi] client_socket_timeout``.

uvicorn closes a keep-alive connection that stays idle after a response, but it never times out a
connection while a request is still arriving: one opened and left silent, one that sends a request's
head a byte at a time, or one that stops in the middle of a body stays open for as long as its client
likes, and a few hundred of them exhaust the process's file descriptors. Here a connection waiting
for request bytes -- a fresh one, a half-sent head, a body being read -- is closed once nothing has
arrived for ``client_socket_timeout`` seconds (0: never, as upstream). The application's own time
(the whole request received, the answer being worked out) and the keep-alive wait between requests
(uvicorn's ``timeout_keep_alive``) are not limited by it.
"""
from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

LOG = logging.getLogger(__name__)


class ReadTimeoutH11Protocol(H11Protocol):
    """Pass as ``uvicorn.Config(http=...)`` with ``config.client_socket_timeout`` set (seconds)."""

    def __init__(self, config, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        self.read_timeout = float(getattr(config, "client_socket_timeout", 0) or 0)
        self._read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a fresh connection must start its request in time

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting_for_request_bytes():
            self._arm()  # more of the head or body is due: the clock starts again from this data
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._disarm()  # between requests uvicorn's keep-alive timeout applies
        super().on_response_complete()

    def _waiting_for_request_bytes(self) -> bool:
        # IDLE after some data: the head is incomplete (a complete one moves h11 on to SEND_BODY or DONE).
        # SEND_BODY: the body is being read. DONE: the request is in; the application has the time it needs.
        return self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing()

    def _arm(self) -> None:
        self._disarm()
        if self.read_timeout > 0:
            self._read_timer = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing() or not self._waiting_for_request_bytes():
            return
        if self.flow.read_paused:
            self._arm()  # uvicorn stopped reading until the application takes the body: not the client's delay
            return
        LOG.info("closing the connection from %s: no request data for %s s",
                 "%s:%s" % self.client if self.client else "a client", self.read_timeout)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the application reading the body hears the client is gone
            self.cycle.message_event.set()
        self.transport.close()
