"""Bad-inputs case 8: password guessing is limited per account, atomically, whatever address
the tries come from, on every way in (the API, the sign-in page)."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from django.conf import global_settings
from django.contrib.auth.hashers import make_password
from django.core.cache import cache
from django.test import Client, override_settings

from tests.conftest import LiveStack
from tests.factories import PASSWORD, make_project, make_user


@pytest.fixture(autouse=True)
def no_failures_counted_yet() -> None:
    """Usernames repeat from run to run (user1, user2, ...) and the counters live in Redis:
    a count left by an earlier run must not lock this run's user out."""
    cache.clear()


def api_sign_in(client: Client, username: str, password: str) -> Any:
    client.get("/api/v1/auth/csrf")
    return client.post(
        "/api/v1/auth/login",
        {"username": username, "password": password},
        content_type="application/json",
        headers={"X-CSRFToken": client.cookies["csrftoken"].value},
    )


@pytest.mark.django_db
# The lockout window starts at the first failure, and five PBKDF2 checks on a loaded 2-core
# machine can take longer than a 2 s window: this user's password is stored with a fast hash.
@override_settings(
    LOUPE_LOGIN_MAX_FAILURES=5,
    LOUPE_LOGIN_LOCKOUT_SECONDS=2,
    PASSWORD_HASHERS=[*global_settings.PASSWORD_HASHERS, "django.contrib.auth.hashers.MD5PasswordHasher"],
)
def test_after_the_allowed_failures_the_account_refuses_even_the_right_password_until_the_lockout_ends() -> None:
    user = make_user(make_project())
    user.password = make_password(PASSWORD, hasher="md5")
    user.save(update_fields=["password"])
    client = Client(enforce_csrf_checks=True)

    answers = [api_sign_in(client, user.username, "wrong-password-guess").status_code for _ in range(7)]
    locked = api_sign_in(client, user.username, PASSWORD)

    assert answers == [400] * 5 + [429] * 2
    assert locked.status_code == 429 and locked.json()["code"] == "locked_out"
    assert locked["Retry-After"] == "2"
    # The server-rendered sign-in page shares the limit.
    page = Client().post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert page.status_code == 200 and "_auth_user_id" not in page.wsgi_request.session
    time.sleep(2.2)
    assert api_sign_in(client, user.username, PASSWORD).status_code == 200


@pytest.mark.django_db
@override_settings(LOUPE_LOGIN_MAX_FAILURES=5)
def test_a_successful_sign_in_clears_the_count() -> None:
    user = make_user(make_project())
    client = Client(enforce_csrf_checks=True)
    for _ in range(4):
        api_sign_in(client, user.username, "wrong-password-guess")

    assert api_sign_in(client, user.username, PASSWORD).status_code == 200
    assert [api_sign_in(Client(), user.username, "nope-nope-nope").status_code for _ in range(5)] == [400] * 5


@pytest.mark.django_db(transaction=True)
def test_200_concurrent_guesses_from_rotating_addresses_reach_the_password_check_at_most_the_limit(
    live: LiveStack,
) -> None:
    from django.conf import settings

    user = make_user(make_project())
    session = requests.Session()
    session.get(f"{live.base_url}/api/v1/auth/csrf", timeout=10)
    token = session.cookies["csrftoken"]

    def guess(index: int) -> tuple[int, str]:
        response = requests.post(
            f"{live.base_url}/api/v1/auth/login",
            json={"username": user.username, "password": f"guess-{index}"},
            headers={
                "X-CSRFToken": token,
                "Cookie": f"csrftoken={token}",
                "X-Forwarded-For": f"203.0.{index // 250}.{index % 250 + 1}",  # a new address each time
                "Origin": live.origin,
                "Referer": live.origin + "/",
            },
            timeout=60,
        )
        return response.status_code, response.json().get("code", "")

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = Counter(pool.map(guess, range(200)))
    right = requests.post(
        f"{live.base_url}/api/v1/auth/login",
        json={"username": user.username, "password": PASSWORD},
        headers={"X-CSRFToken": token, "Cookie": f"csrftoken={token}", "Origin": live.origin},
        timeout=60,
    )

    checked = answers[(400, "invalid_credentials")]
    assert checked <= settings.LOUPE_LOGIN_MAX_FAILURES, answers
    assert answers[(429, "locked_out")] >= 200 - settings.LOUPE_LOGIN_MAX_FAILURES - answers[(429, "throttled")]
    assert right.status_code == 429 and right.json()["code"] == "locked_out"
