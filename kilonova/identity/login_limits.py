"""Limits on wrong passwords: Keystone's account lockout, and a rate limit per source address.

Both are checked before a password is hashed, so a guessing client costs almost nothing once it is
refused: a locked account answers 401 (as Keystone, even to the right password) and a source past its
limit answers 429 until its window has room again.
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from kilonova.config import Config


def _number(conf: Config, section: str, option: str) -> float:
    return float(conf.get(section, option).strip() or 0)


@dataclass(frozen=True)
class Lockout:
    """``[security_compliance] lockout_failure_attempts`` / ``lockout_duration``, as Keystone reads them."""

    attempts: int          # 0: never locked
    duration: float        # 0: locked until an admin sets the user enabled

    @classmethod
    def from_conf(cls, conf: Config) -> "Lockout":
        return cls(int(_number(conf, "security_compliance", "lockout_failure_attempts")),
                   _number(conf, "security_compliance", "lockout_duration"))

    def _reached(self, failures: int) -> bool:
        return bool(self.attempts) and failures >= self.attempts

    def locked(self, failures: int, last_failure: datetime | None, now: datetime) -> bool:
        if not self._reached(failures):
            return False
        return not self.duration or last_failure is None or last_failure + timedelta(seconds=self.duration) > now

    def expired(self, failures: int, last_failure: datetime | None, now: datetime) -> bool:
        """A lock that has run out: the user's failures count from zero again (Keystone resets them)."""
        return self._reached(failures) and not self.locked(failures, last_failure, now)


class SourceLimitExceeded(Exception):
    def __init__(self, retry_after: float):
        super().__init__(f"too many failed logins; retry after {retry_after:.0f}s")
        self.retry_after = retry_after


class FailedLoginsBySource:
    """At most ``limit`` failed logins per source address in any ``window`` seconds (0: no limit).

    A login counts from the moment it is checked (so a burst of parallel guesses cannot all slip past the
    count before the first of them fails) until it turns out right (or malformed, or too busy to check),
    when it is taken back.
    """

    MAX_SOURCES = 10000   # memory bound: beyond it, the sources seen longest ago are forgotten

    def __init__(self, limit: int, window: float, clock=time.monotonic):
        self.limit = limit
        self.window = window
        self._clock = clock
        self._attempts: collections.OrderedDict[str, collections.deque] = collections.OrderedDict()

    @classmethod
    def from_conf(cls, conf: Config) -> "FailedLoginsBySource":
        return cls(int(_number(conf, "identity", "failed_login_limit")),
                   _number(conf, "identity", "failed_login_window"))

    def begin(self, source: str) -> object | None:
        """A ticket for ``take_back``; ``SourceLimitExceeded`` when ``source`` has used up its window."""
        if self.limit <= 0:
            return None
        now = self._clock()
        attempts = self._attempts.get(source)
        if attempts is None:
            attempts = self._attempts[source] = collections.deque()
            while len(self._attempts) > self.MAX_SOURCES:
                self._attempts.popitem(last=False)
        self._attempts.move_to_end(source)
        while attempts and attempts[0][0] <= now - self.window:
            attempts.popleft()
        if len(attempts) >= self.limit:
            raise SourceLimitExceeded(attempts[0][0] + self.window - now)
        token = (now, object())
        attempts.append(token)
        return (source, token)

    def take_back(self, ticket: object | None) -> None:
        """The login of ``ticket`` (``begin``) was no failure: right, malformed, or never checked."""
        if ticket is None:
            return
        source, token = ticket
        attempts = self._attempts.get(source)
        if attempts is not None and token in attempts:
            attempts.remove(token)
