"""Wrong passwords, through the real `openstack` CLI and the identity API: Keystone's account lockout
(``[security_compliance]``) and the limit on failed logins per source address.

The lockout is driven from 127.0.0.1 (the CLI); the per-source limit from other loopback addresses, so the
two never count each other's failures. The CLI's own failures do count against 127.0.0.1, so the source limit
is set above every refusal the lockout tests make in the whole module (4 + 7): a slow or fast machine alike
never turns a lockout test's login into a 429.
"""
from __future__ import annotations

import shutil
import time

import httpx
import pytest

from tests.cloud import new_cloud

LOCKOUT_ATTEMPTS = 3
LOCKOUT_SECONDS = 15   # longer than a few CLI runs on a loaded machine
SOURCE_LIMIT = 12
SOURCE_WINDOW = 8


@pytest.fixture(scope="module")
def limited_cloud():
    cloud = new_cloud(hosts=1, config={
        "security_compliance": {"lockout_failure_attempts": str(LOCKOUT_ATTEMPTS),
                                "lockout_duration": str(LOCKOUT_SECONDS)},
        "identity": {"failed_login_limit": str(SOURCE_LIMIT), "failed_login_window": str(SOURCE_WINDOW)}})
    cloud.start()
    cloud.openstack("user", "create", "--domain", "default", "--project", "demo", "--password", "right-pass",
                    "guessed")
    cloud.openstack("role", "add", "--project", "demo", "--user", "guessed", "member")
    yield cloud
    cloud.stop()
    shutil.rmtree(cloud.workdir, ignore_errors=True)


def login(cloud, password: str):
    return cloud.openstack("--os-username", "guessed", "--os-password", password, "--os-project-name", "demo",
                           "token", "issue", check=False)


def assert_refused(result) -> None:
    assert result.returncode != 0 and "401" in result.stderr, result.stderr


def test_after_n_wrong_passwords_the_right_one_is_refused_until_an_admin_enables_the_user(limited_cloud):
    for _ in range(LOCKOUT_ATTEMPTS):
        assert_refused(login(limited_cloud, "wrong-pass"))
    assert_refused(login(limited_cloud, "right-pass"))

    # As Keystone documents it: setting ``enabled`` through the API unlocks (the CLI's `user set --enable`
    # sends nothing for a user that is enabled already).
    user_id = limited_cloud.openstack("user", "show", "guessed", fmt_json=True)["id"]
    with limited_cloud.http("identity") as admin:
        assert admin.patch(f"/users/{user_id}", json={"user": {"enabled": True}}).status_code == 200
    assert login(limited_cloud, "right-pass").returncode == 0


def test_a_lock_ends_after_lockout_duration_and_a_right_password_clears_the_count(limited_cloud):
    for _ in range(LOCKOUT_ATTEMPTS - 1):
        assert_refused(login(limited_cloud, "wrong-pass"))
    assert login(limited_cloud, "right-pass").returncode == 0      # count back to zero
    assert_refused(login(limited_cloud, "wrong-pass"))
    assert login(limited_cloud, "right-pass").returncode == 0      # one failure does not lock

    for _ in range(LOCKOUT_ATTEMPTS):
        assert_refused(login(limited_cloud, "wrong-pass"))
    locked_at = time.monotonic()
    assert_refused(login(limited_cloud, "right-pass"))
    time.sleep(max(0.0, locked_at + LOCKOUT_SECONDS + 0.5 - time.monotonic()))
    assert login(limited_cloud, "right-pass").returncode == 0


def password_body(user: str, password: str) -> dict:
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "password": password, "domain": {"id": "default"}}}}}}


def client_from(cloud, address: str) -> httpx.Client:
    return httpx.Client(base_url=cloud.urls["identity"], timeout=30,
                        transport=httpx.HTTPTransport(local_address=address))


def test_a_source_sending_too_many_wrong_passwords_gets_429_and_others_are_still_served(limited_cloud):
    admin = limited_cloud.auth()
    with client_from(limited_cloud, "127.0.0.7") as guesser, client_from(limited_cloud, "127.0.0.8") as other:
        answers = [guesser.post("/auth/tokens", json=password_body("nobody", f"guess-{n}")).status_code
                   for n in range(SOURCE_LIMIT)]
        assert answers == [401] * SOURCE_LIMIT
        started = time.monotonic()
        refused = guesser.post("/auth/tokens", json=password_body("admin", admin["password"]))
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == 429 and refused.json()["error"]["title"] == "Too Many Requests"
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= SOURCE_WINDOW

        assert other.post("/auth/tokens", json=password_body("admin", admin["password"])).status_code == 201
        assert login(limited_cloud, "right-pass").returncode == 0

        time.sleep(max(0.0, started + retry_after + 0.2 - time.monotonic()))
        assert guesser.post("/auth/tokens", json=password_body("admin", admin["password"])).status_code == 201


def test_a_right_password_does_not_count_against_its_source(limited_cloud):
    admin = limited_cloud.auth()
    with client_from(limited_cloud, "127.0.0.9") as client:
        for _ in range(SOURCE_LIMIT * 2):
            assert client.post("/auth/tokens", json=password_body("admin", admin["password"])).status_code == 201
