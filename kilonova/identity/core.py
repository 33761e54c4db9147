"""What the identity API handlers share: the database, the token formatter and revocations."""
from __future__ import annotations

import secrets
from typing import Any, Callable, TypeVar

from kilonova.common import policy as kilonova_policy
from kilonova.common.cpu_pool import CpuPool, Overloaded
from kilonova.common.db import Database
from kilonova.common.http import HTTPError
from kilonova.config import Config
from kilonova.identity import keys, passwords
from kilonova.identity import policy as identity_policy
from kilonova.identity.login_limits import FailedLoginsBySource, Lockout
from kilonova.identity.revocation import RevocationList
from kilonova.identity.token_data import TokenInvalid, build
from kilonova.identity.tokens import Payload, TokenError, TokenFormatter

T = TypeVar("T")


class IdentityCore:
    def __init__(self, conf: Config, db: Database):
        # Keystone's rules with the operator's overrides, read at start (a malformed file stops it).
        self.policy = kilonova_policy.from_conf(conf, "identity", identity_policy.RULES)
        self.conf = conf
        self.db = db
        self.revocations = RevocationList()
        self._formatter: TokenFormatter | None = None
        self._dummy_hash: str | None = None
        # Password hashing is the one CPU-heavy thing identity does: off the event loop, bounded.
        self.hashing = CpuPool("passwords", conf.getint("identity", "password_hash_workers"),
                               conf.getint("identity", "password_hash_queue_limit"))
        self.lockout = Lockout.from_conf(conf)
        self.failed_logins = FailedLoginsBySource.from_conf(conf)

    @property
    def token_lifetime(self) -> float:
        return self.conf.getfloat("token", "expiration")

    @property
    def formatter(self) -> TokenFormatter:
        if self._formatter is None:
            self.load_keys()
        assert self._formatter is not None
        return self._formatter

    def load_keys(self) -> None:
        repository = self.conf.get("fernet_tokens", "key_repository")
        keys.ensure_keys(repository)
        self._formatter = TokenFormatter(keys.load_keys(repository))

    @property
    def hash_rounds(self) -> int:
        return self.conf.getint("identity", "password_hash_rounds")

    def hash_password(self, password: str) -> str:
        return passwords.hash_password(password, self.hash_rounds)

    async def _hashing(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self.hashing.run(fn, *args)
        except Overloaded:
            raise HTTPError(503, "The service is busy checking passwords; try again shortly.",
                            headers={"Retry-After": "1"}) from None

    async def new_hash(self, password: str) -> str:
        """``hash_password`` off the event loop; 503 when too many hashes are waiting already."""
        return await self._hashing(self.hash_password, password)

    async def verify_password(self, password: str, stored: str | None) -> bool:
        """``passwords.verify_password`` off the event loop; 503 when too many hashes are waiting already."""
        return await self._hashing(passwords.verify_password, password, stored or self.dummy_hash)

    @property
    def dummy_hash(self) -> str:
        """A hash nobody knows the password of: unknown users cost as much to refuse as known ones."""
        if self._dummy_hash is None:
            self._dummy_hash = self.hash_password(secrets.token_urlsafe(16))
        return self._dummy_hash

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self.db.read(fn, *args, **kwargs)

    async def write(self, fn: Callable[..., T], *args: Any, revokes: bool = False, **kwargs: Any) -> T:
        """Run ``fn`` in a write transaction; ``revokes``: it recorded revocation events."""
        try:
            return await self.db.write(fn, *args, **kwargs)
        finally:
            if revokes:
                self.revocations.invalidate()

    def open(self, token: str) -> Payload:
        return self.formatter.open(token)

    async def validate(self, token: str, *, include_catalog: bool = True) -> tuple[Payload, dict]:
        """The payload and token document of a valid token; ``TokenError``/``TokenInvalid`` otherwise."""
        payload = self.formatter.open(token)
        body = await self.db.read(build, payload, self.revocations, include_catalog=include_catalog)
        return payload, body


__all__ = ["IdentityCore", "TokenError", "TokenInvalid"]
