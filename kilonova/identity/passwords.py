"""Password hashing with scrypt, stored as a self-describing string.

Format: ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``: each hash keeps its own
parameters, so the work factor can be raised without invalidating stored hashes (a
successful login re-hashes a password stored with other ones: ``needs_rehash``).
New hashes use OWASP's recommendation for scrypt by default: N=2^17, r=8, p=1.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "scrypt"
SALT_BYTES = 16
KEY_BYTES = 32
BLOCK_SIZE = 8       # r
PARALLELISM = 1      # p


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    n = 2 ** log_n
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * r * n + 1024 * 1024, dklen=KEY_BYTES)


def hash_password(password: str, rounds: int) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, rounds, BLOCK_SIZE, PARALLELISM)
    return f"{PREFIX}${rounds}${BLOCK_SIZE}${PARALLELISM}${_b64(salt)}${_b64(digest)}"


def needs_rehash(stored: str | None, rounds: int) -> bool:
    """True when ``stored`` was made with other parameters than ``hash_password(..., rounds)`` uses."""
    return not stored or stored.split("$")[:4] != [PREFIX, str(rounds), str(BLOCK_SIZE), str(PARALLELISM)]


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
