"""Password hashing with scrypt, stored as a self-describing string.

Format: ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``, so the work factor
can be raised later without invalidating stored hashes.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "scrypt"
SALT_BYTES = 16
KEY_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    n = 2 ** log_n
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * r * n + 1024 * 1024, dklen=KEY_BYTES)


def hash_password(password: str, rounds: int) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, rounds, 8, 1)
    return f"{PREFIX}${rounds}$8$1${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    """True when ``password`` matches ``stored``; False for any malformed or missing hash."""
    if not stored or not isinstance(password, str):
        return False
    try:
        prefix, log_n, r, p, salt, digest = stored.split("$")
        if prefix != PREFIX:
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(log_n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, actual)
