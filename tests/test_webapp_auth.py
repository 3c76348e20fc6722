"""The Mini App's sign-in over real HTTP: every /app/api/ request is answered only with
initData Telegram signed for this bot, recently, for an allow-listed user, and only for
the chat it scopes them to."""

from __future__ import annotations

import json
from datetime import timedelta

from bot.demo_kit.harness import ALICE, MALLORY, OLGA
from bot.webapp.init_data import sign
from tests.webapp_kit import MiniAppClient, miniapp

__all__ = ["miniapp"]


def forged(init_data: str, at: int) -> str:
    """`init_data` with its byte at `at` changed."""
    changed = "A" if init_data[at] != "A" else "B"
    return init_data[:at] + changed + init_data[at + 1 :]


async def test_the_shell_is_served_and_holds_no_data(miniapp: MiniAppClient) -> None:
    async with miniapp.http.get("/app/") as response:
        assert response.status == 200
        page = await response.text()
    assert "telegram-web-app.js" in page and "/app/static/app.js" in page
    async with miniapp.http.get("/app/static/app.css") as response:
        assert response.status == 200


async def test_a_signed_launch_sees_its_home(miniapp: MiniAppClient) -> None:
    answer = await miniapp.get("/home")
    assert answer.status == 200, answer.text
    assert "<h1>Today</h1>" in answer.text


async def test_a_launch_as_telegram_sends_it_today_is_accepted(miniapp: MiniAppClient) -> None:
    """Current clients add `signature` (for third parties) and `chat_instance`: both are
    among the fields the hash covers, as Telegram's check says."""
    when = str(int(miniapp.bot.clock.now().timestamp()))
    fields = {
        "user": json.dumps({"id": ALICE, "first_name": "Alice", "language_code": "en"}),
        "chat_instance": "-3788475317572404878",
        "chat_type": "sender",
        "auth_date": when,
        "signature": "SvJ3Qbs0bW6Bn1bBj9yrsk0vNKq0j5R5c0Pf8cbB9Q7a2k1dO8Fj3yZ5Ww0",
    }
    good = sign(fields, miniapp.token)
    assert (await miniapp.get("/home", init_data=good)).status == 200
    # The signature is covered: changed, the launch is refused.
    changed = good.replace("signature=Sv", "signature=Tv")
    assert (await miniapp.get("/home", init_data=changed)).status == 401


async def test_forged_missing_and_expired_sign_ins_get_401(miniapp: MiniAppClient) -> None:
    good = miniapp.init_data()
    # One byte changed anywhere (a field name, its value, the hash) is refused.
    places = [*range(0, len(good), len(good) // 12), len(good) - 1]
    refused = 0
    for at in places:
        answer = await miniapp.get("/home", init_data=forged(good, at))
        assert answer.status == 401, (at, answer.text)
        refused += 1
    assert refused == len(places) >= 12

    missing = await miniapp.get("/home", init_data="")
    assert missing.status == 401 and "button in Telegram" in missing.error
    old = await miniapp.get("/home", init_data=miniapp.init_data(age=timedelta(hours=1, seconds=5)))
    assert old.status == 401 and "expired" in old.error
    fresh = await miniapp.get("/home", init_data=miniapp.init_data(age=timedelta(minutes=59)))
    assert fresh.status == 200


async def test_a_user_not_on_the_allow_list_is_refused(miniapp: MiniAppClient) -> None:
    answer = await miniapp.get("/home", user=MALLORY)
    assert answer.status == 403 and "private" in answer.error
    assert (await miniapp.get("/home", user=OLGA)).status == 200


async def test_an_unknown_page_is_404(miniapp: MiniAppClient) -> None:
    answer = await miniapp.get("/nowhere", user=ALICE)
    assert answer.status == 404 and answer.error


async def test_failed_sign_ins_from_one_address_are_slowed_down(miniapp: MiniAppClient) -> None:
    statuses = [(await miniapp.get("/home", init_data="user=x&hash=00")).status for _ in range(25)]
    assert statuses[:20] == [401] * 20 and 429 in statuses[20:]
    # A good sign-in from that address still gets in: only failures draw on its limit.
    assert (await miniapp.get("/home")).status == 200
