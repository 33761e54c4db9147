"""Password hashing in the identity service: off the event loop and bounded, and stored hashes made with
older parameters still log in (and are stored anew with the current ones)."""
from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
import sqlalchemy as sa

from kilonova.identity import passwords
from kilonova.identity.models import User
from tests.unit.test_identity import client, make_conf, make_service, password_auth  # noqa: F401 - client: a fixture on this module's service


@pytest.fixture
def service(tmp_path):
    service = make_service(make_conf(tmp_path, password_hash_workers="1", password_hash_queue_limit="2"))
    yield service
    service.db.close()


def _stored_hash(session, name: str) -> str:
    return session.scalar(sa.select(User.password_hash).where(User.name == name))


def _set_hash(session, name: str, value: str) -> None:
    session.execute(sa.update(User).where(User.name == name).values(password_hash=value))


async def test_a_hash_with_older_parameters_logs_in_and_is_stored_with_the_current_ones(service, client):
    old = passwords.hash_password("demo-secret", 3)
    await service.core.write(_set_hash, "demo", old)

    assert (await client.post("/v3/auth/tokens", json=password_auth("demo"))).status_code == 201
    renewed = await service.core.read(_stored_hash, "demo")
    assert renewed != old and renewed.startswith("scrypt$4$8$1$")
    assert not passwords.needs_rehash(renewed, 4)
    assert (await client.post("/v3/auth/tokens", json=password_auth("demo"))).status_code == 201


async def test_hashing_runs_off_the_event_loop_and_a_full_queue_answers_503(service, client):
    release = threading.Event()
    loop_threads = {threading.get_ident()}

    def blocked() -> int:
        release.wait(10)
        return threading.get_ident()

    # The one hashing thread is busy and one more job waits: the queue (2) is full.
    jobs = [asyncio.ensure_future(service.core.hashing.run(blocked)) for _ in range(2)]
    await asyncio.sleep(0.05)
    response = await client.post("/v3/auth/tokens", json=password_auth("demo"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == 503 and response.json()["error"]["title"] == "Service Unavailable"

    release.set()
    assert not loop_threads & set(await asyncio.gather(*jobs))
    assert (await client.post("/v3/auth/tokens", json=password_auth("demo"))).status_code == 201


async def test_only_wrong_passwords_count_against_their_source(tmp_path):
    service = make_service(make_conf(tmp_path, failed_login_limit="2"))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app),
                                     base_url="http://identity") as client:
            malformed = password_auth("demo")
            del malformed["auth"]["identity"]["password"]["user"]["password"]
            for _ in range(3):
                assert (await client.post("/v3/auth/tokens", json=malformed)).status_code == 400
            for _ in range(3):
                assert (await client.post("/v3/auth/tokens", json=password_auth("demo"))).status_code == 201
            for _ in range(2):
                assert (await client.post("/v3/auth/tokens", json=password_auth("demo", "wrong"))).status_code == 401
            refused = await client.post("/v3/auth/tokens", json=password_auth("demo"))
            assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    finally:
        service.db.close()


def test_new_hashes_use_owasps_scrypt_parameters_by_default(tmp_path):
    """OWASP's recommendation for scrypt: N=2^17, r=8, p=1 (issue 12: the old default was 2^14)."""
    from kilonova.config import Config

    rounds = Config.load(state_dir=tmp_path).getint("identity", "password_hash_rounds")
    assert rounds == 17
    prefix = passwords.hash_password("secret", 4).split("$")[:4]
    assert prefix == ["scrypt", "4", "8", "1"]   # r=8, p=1 whatever N
    assert passwords.needs_rehash("$".join(["scrypt", "14", "8", "1", "c2FsdA", "ZGlnZXN0"]), rounds)
