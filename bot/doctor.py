"""`tickler doctor`: is this installation ready to run? One line per check, a fix for
each failure, exit status 1 when any fails:

    ok   settings: 1 admin, 0 operators, agent mode telegram, time zone UTC
    ok   database: /data/tickler.db is writable, schema version 7
    (or: ok   database: postgresql://tickler@db/tickler is writable, schema version 13)
    FAIL bot token: getMe answered 401 Unauthorized — fix: copy the token again ...
    FAIL agent: nothing listens at http://127.0.0.1:9000/hook (connection refused) — fix: ...
    ok   stats chart: matplotlib 3.11.2 drew a 900x720 PNG in 0.19 s (font cache /tmp/...)

The checks run at once, each with a short timeout. Nothing secret is printed: the
token, AGENT_SECRET and AGENT_TOKEN never appear, and AGENT_URL is shown without its
credentials or query string, DATABASE_URL without its password. The database check
does what a start does (creates the file if missing and migrates it; on PostgreSQL,
connects and migrates), so a database it passes is ready for the bot. The chart check
draws /stats's picture from made-up figures (it needs no settings, so it runs even when
they fail): a missing or broken matplotlib, or a font cache it cannot write, shows here
rather than at an operator's first /stats.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import sqlite3
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg
import httpx

from adapters.agent_routing import AgentSpec, resolve
from bot.runtime import default_agent
from bot.settings import MAKE_API_TOKEN, ConfigError, SettingProblem, Settings, load_settings
from storage import budgets
from storage.chat_agents import all_agents
from storage.database import DatabaseUnavailable, SchemaTooNew
from storage.locations import snapshot
from storage.readiness import DatabaseReadiness, prepare_database, prepare_postgres

__all__ = ["Check", "diagnose", "run_doctor"]

TELEGRAM_API = "https://api.telegram.org"
#: Seconds each network check may take: a healthy endpoint answers in well under one.
HTTP_TIMEOUT_S = 5.0
#: The database check may wait out a running Tickler's write (busy timeout 15 s).
DATABASE_TIMEOUT_S = 20.0
#: A chart takes about 0.2 s; the first one on a machine also builds the font cache.
CHART_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False

    def line(self) -> str:
        if self.skipped:
            return f"skip {self.name}: {self.detail}"
        if self.ok:
            return f"ok   {self.name}: {self.detail}"
        return f"FAIL {self.name}: {self.detail} — fix: {self.fix}"

    @property
    def passed(self) -> bool:
        return self.ok and not self.skipped


def run_doctor(env_file: str | None = None) -> int:
    """Print one line per check; 0 when every check passed, 1 otherwise."""
    checks = asyncio.run(diagnose(env_file))
    for check in checks:
        print(check.line(), flush=True)
    return 0 if all(check.passed for check in checks) else 1


async def diagnose(env_file: str | None = None) -> list[Check]:
    """Every check, in a fixed order (settings, database, bot token, agent, stats chart)."""
    try:
        settings = load_settings(env_file=env_file)
    except ConfigError as exc:
        skipped = "needs the settings above"
        problems = exc.problems or (
            SettingProblem("configuration", missing=False, detail=str(exc.code)),
        )
        return [
            *(_setting_check(problem) for problem in problems),
            *(Check(name, False, skipped, skipped=True) for name in _LATER_CHECKS),
            await _timed("stats chart", CHART_TIMEOUT_S, _check_chart(), _CHART_SLOW),
        ]
    results = await asyncio.gather(
        _timed("database", DATABASE_TIMEOUT_S, _check_database(settings), _DATABASE_SLOW),
        _timed("bot token", _HTTP_DEADLINE_S, _check_token(settings), _TELEGRAM_SLOW),
        _timed("agent", _HTTP_DEADLINE_S, _check_agent(settings), _AGENT_SLOW),
        _timed("stats chart", CHART_TIMEOUT_S, _check_chart(), _CHART_SLOW),
    )
    checks = [_check_settings(settings), *results]
    if results[0].passed:
        # Informational (never a failure): schedules paused at a budget wait for an admin.
        checks.insert(2, await _check_budgets(settings))
        # Each chat's own agent, after the default one.
        at = next(i for i, c in enumerate(checks) if c.name == "agent") + 1
        checks[at:at] = await _check_chat_agents(settings)
    return checks


_LATER_CHECKS = ("database", "bot token", "agent")
_SETTINGS_FIX = "set it in .env (or the environment); .env.example lists every setting"
_IDS_FIX = "write numeric Telegram user or chat ids, comma-separated (@userinfobot tells yours)"
#: The fix for each setting that is commonly got wrong; the others get _SETTINGS_FIX.
_SETTING_FIXES = {
    "TELEGRAM_BOT_TOKEN": "copy the token again from @BotFather (/mybots → your bot → API "
    "Token), with nothing around it",
    "AGENT_URL": "set it to the URL the agent listens on, e.g. http://agent:9000/hook",
    "AGENT_MODE": "set it to telegram (the agent takes Telegram updates) or openai "
    "(a chat-completions endpoint)",
    "ADMIN_IDS": _IDS_FIX,
    "OPERATOR_IDS": _IDS_FIX,
    "API_CHAT_IDS": _IDS_FIX,
    "DEFAULT_TIMEZONE": "use an IANA zone name such as Europe/Berlin",
    "WEBHOOK_URL": "use the public https:// URL Telegram should push to, e.g. "
    "https://bot.example.com/telegram, or leave it unset for long polling",
    "WEBAPP_URL": "use the public https:// address of the bot's /app/, e.g. "
    "https://tickler.example.org/app/, or leave it unset for no Mini App buttons",
    "WEBHOOK_SECRET": "set it to 1-256 characters of A-Z, a-z, 0-9, _ and - (e.g. the output "
    "of `openssl rand -hex 32`)",
    "HTTP_PORT": "use a port from 1 to 65535 (0 turns the HTTP server off)",
    "LOG_LEVEL": "use DEBUG, INFO, WARNING or ERROR",
    "LOG_FORMAT": "use plain or json",
    "API_TOKEN": f"make one with {MAKE_API_TOKEN} and set API_TOKEN to it in .env",
}


def _setting_check(problem: SettingProblem) -> Check:
    """One failed setting, in the doctor's words, with its own fix."""
    if problem.missing:
        detail = f"{problem.name} is not set"
    else:
        detail = f"{problem.name} is not usable: {problem.detail.rstrip('.')}"
    return Check("settings", False, detail, _SETTING_FIXES.get(problem.name, _SETTINGS_FIX))


#: A little over the HTTP client's own timeout, so that its more precise error wins.
_HTTP_DEADLINE_S = HTTP_TIMEOUT_S + 2
_DATABASE_SLOW = "another process holds the database's write lock (a backup?); try again"
_TELEGRAM_SLOW = "check this machine's outbound HTTPS and DNS: Telegram's API must be reachable"
_AGENT_SLOW = "see that the agent is up and that AGENT_URL is reachable from where Tickler runs"
_CHART_SLOW = "see that this machine is not overloaded; /stats still answers in text meanwhile"
_CHART_FIX = (
    "reinstall the locked dependencies (pip install --require-hashes -r requirements.lock) "
    "and give MPLCONFIGDIR a writable folder; /stats still answers in text meanwhile"
)


async def _timed(name: str, seconds: float, check: Awaitable[Check], fix: str) -> Check:
    try:
        async with asyncio.timeout(seconds):
            return await check
    except TimeoutError:
        return Check(name, False, f"no answer within {seconds:g} s", fix)


def _check_settings(settings: Settings) -> Check:
    if not settings.admin_ids and not settings.operator_ids:
        return Check(
            "settings",
            False,
            "ADMIN_IDS and OPERATOR_IDS are both empty, so the bot would serve nobody",
            "set ADMIN_IDS to your Telegram user id (@userinfobot tells it), comma-separated "
            "for several",
        )
    admins = len(settings.admin_ids)
    operators = len(settings.operator_ids)
    return Check(
        "settings",
        True,
        f"{admins} admin{'s' if admins != 1 else ''}, {operators} operator"
        f"{'s' if operators != 1 else ''}, agent mode {settings.agent_mode}, "
        f"time zone {settings.default_timezone}",
    )


# --- budgets -----------------------------------------------------------------------------
async def _check_budgets(settings: Settings) -> Check:
    where = settings.database
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_S), snapshot(where) as db:
            found = await budgets.summary(db)
    except Exception as exc:  # the database check above passed: say it, fail nothing
        return Check("budgets", True, f"not read ({type(exc).__name__})")
    detail = (
        f"{found.schedules} schedule{'s' if found.schedules != 1 else ''} and "
        f"{found.chats} chat{'s' if found.chats != 1 else ''} have a weekly budget"
    )
    if found.paused:
        names = ", ".join(f"'{name}' (chat {chat})" for chat, name in found.paused[:5])
        more = f" and {len(found.paused) - 5} more" if len(found.paused) > 5 else ""
        detail += f"; paused at their budget: {names}{more} (/budget shows the use)"
    return Check("budgets", True, detail)


# --- database ----------------------------------------------------------------------------
async def _check_chart() -> Check:
    """Draw /stats's chart from the made-up sample week, as the bot would."""
    try:
        # Imported here: a broken matplotlib is this check's failure, not the doctor's.
        import matplotlib
        from PIL import Image

        from bot.stats_chart import render_png_async, sample_stats

        started = time.perf_counter()
        png = await render_png_async(sample_stats(days=7))
        took = time.perf_counter() - started
        with Image.open(io.BytesIO(png)) as image:
            if image.format != "PNG":
                return Check("stats chart", False, "the chart is not a PNG", _CHART_FIX)
            size = image.size
        cache = matplotlib.get_cachedir()
    except Exception as exc:
        why = str(exc).strip() or type(exc).__name__
        return Check("stats chart", False, f"matplotlib could not draw it ({why})", _CHART_FIX)
    return Check(
        "stats chart",
        True,
        f"matplotlib {matplotlib.__version__} drew a {size[0]}x{size[1]} PNG in {took:.2f} s "
        f"(font cache {cache})",
    )


async def _check_database(settings: Settings) -> Check:
    if settings.database_url is not None:
        return await _check_postgres(settings.database_url.get_secret_value())
    path = settings.database_path
    where = _folder_owner_hint()
    try:
        ready = await prepare_database(path)
    except SchemaTooNew as exc:
        return Check(
            "database",
            False,
            str(exc).rstrip("."),
            "run the Tickler version that wrote it (a newer image), or restore a backup",
        )
    except (FileExistsError, NotADirectoryError):
        return Check(
            "database",
            False,
            f"cannot create {path}: part of its folder path is a file, not a folder",
            "point DATABASE_PATH at a file in a folder (in Docker keep /data/tickler.db, "
            "the volume)",
        )
    except OSError as exc:
        # Creating the folder failed (permission denied, read-only or virtual file system).
        reason = (exc.strerror or str(exc)).lower()
        return Check(
            "database",
            False,
            f"cannot create {path}: {reason}: {exc.filename or path.parent}",
            f"make sure {path.parent} exists and is writable {where}, or point "
            "DATABASE_PATH elsewhere",
        )
    except (DatabaseUnavailable, sqlite3.Error) as exc:
        # DatabaseUnavailable's own text carries a fix of its own; show what SQLite said.
        cause = exc.__cause__ if isinstance(exc, DatabaseUnavailable) else None
        return Check(
            "database",
            False,
            f"cannot open {path} for writing ({cause or exc})",
            f"make {path.parent} and the file in it writable {where}, or point "
            "DATABASE_PATH elsewhere",
        )
    if ready.created:
        state = f"created {path}, schema version {ready.version}"
    elif ready.version_before < ready.version:
        state = (
            f"{path} is writable, migrated from schema version {ready.version_before} "
            f"to {ready.version}"
        )
    else:
        state = f"{path} is writable, schema version {ready.version}"
    return Check("database", True, state)


async def _check_postgres(url: str) -> Check:
    shown = _public_database(url)
    parts = urlsplit(url)
    password = _url_password(url)
    try:
        ready = await prepare_postgres(url)
    except SchemaTooNew as exc:
        return Check(
            "database",
            False,
            str(exc).rstrip("."),
            "run the Tickler version that wrote it (a newer image), or restore a backup",
        )
    except asyncpg.exceptions.InvalidCatalogNameError:
        name = parts.path.lstrip("/") or "tickler"
        return Check(
            "database",
            False,
            f"{shown}: the server has no database {name}",
            f"create it (createdb -O {parts.username or 'tickler'} {name}), or fix the "
            "database name in DATABASE_URL",
        )
    except asyncpg.exceptions.InvalidAuthorizationSpecificationError as exc:
        return Check(
            "database",
            False,
            f"{shown} refused the login ({_unsaid(str(exc).rstrip('.'), password)})",
            "put a user and password the server accepts in DATABASE_URL (and allow this "
            "host in the server's pg_hba.conf)",
        )
    except asyncpg.exceptions.InsufficientPrivilegeError as exc:
        return Check(
            "database",
            False,
            f"{shown}: {parts.username or 'the user'} may not write Tickler's tables "
            f"({_unsaid(str(exc).rstrip('.'), password)})",
            "make the user the database's owner (ALTER DATABASE ... OWNER TO ...), or grant "
            "it every privilege on the database and its tables",
        )
    except asyncpg.exceptions.ReadOnlySQLTransactionError:
        return Check(
            "database",
            False,
            f"{shown} is read-only (a standby?)",
            "point DATABASE_URL at the primary server",
        )
    except (OSError, TimeoutError, asyncpg.exceptions.PostgresConnectionError) as exc:
        why = _unsaid(_socket_reason(exc), password)
        return Check(
            "database",
            False,
            f"nothing answers at {shown} ({why})",
            "start the PostgreSQL server, or set DATABASE_URL to where it listens (inside a "
            "container 127.0.0.1 is the container itself: use the database's service name)",
        )
    except (asyncpg.exceptions.PostgresError, asyncpg.exceptions.InterfaceError) as exc:
        return Check(
            "database",
            False,
            f"cannot use {shown} ({_unsaid(str(exc).rstrip('.'), password)})",
            "see the PostgreSQL server's log; DATABASE_URL must name a database Tickler's "
            "user owns",
        )
    return Check("database", True, _postgres_state(shown, ready))


def _postgres_state(shown: str, ready: DatabaseReadiness) -> str:
    if ready.created:
        return f"{shown} is writable, created schema version {ready.version}"
    if ready.version_before < ready.version:
        return (
            f"{shown} is writable, migrated from schema version {ready.version_before} to "
            f"{ready.version}"
        )
    return f"{shown} is writable, schema version {ready.version}"


def _public_database(url: str) -> str:
    """scheme://user@host[:port]/database: no password, no ?query (it may hold one)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:  # a port that is no number
        return "DATABASE_URL"
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{parts.path}"


def _unsaid(text: str, password: str) -> str:
    return text.replace(password, "***") if password else text


def _url_password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


def _socket_reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, TimeoutError):
        return "no answer within 10 s"
    return str(exc).rstrip(".") or type(exc).__name__


def _folder_owner_hint() -> str:
    uid = os.getuid()
    if uid == 10001:  # the image's user
        return (
            "for uid 10001 (in Docker: `docker compose run --rm --user root --entrypoint "
            "chown tickler -R 10001:10001 /data`)"
        )
    return f"for uid {uid}, the user Tickler runs as"


# --- Telegram ----------------------------------------------------------------------------
async def _check_token(settings: Settings) -> Check:
    if settings.telegram_bot_token is None or not settings.telegram_bot_token.get_secret_value():
        return Check(
            "bot token",
            False,
            "TELEGRAM_BOT_TOKEN is not set",
            "create a bot with @BotFather and put its token in TELEGRAM_BOT_TOKEN",
        )
    token = settings.telegram_bot_token.get_secret_value()
    root = (settings.telegram_api_base_url or TELEGRAM_API).rstrip("/")
    host = urlsplit(root).netloc or root
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
            response = await client.get(f"{root}/bot{token}/getMe")
    except httpx.HTTPError as exc:
        return Check(
            "bot token",
            False,
            f"cannot reach {host}: {_hide(_describe(exc), token)}",
            "check this machine's outbound HTTPS and DNS"
            + (", and TELEGRAM_API_BASE_URL" if settings.telegram_api_base_url else ""),
        )
    body = _json(response)
    if response.status_code == 200 and body.get("ok") is True:
        me = body.get("result")
        name, bot_id = (me.get("username"), me.get("id")) if isinstance(me, dict) else (None, None)
        return Check("bot token", True, f"getMe answered @{name} (id {bot_id})")
    description = _hide(str(body.get("description") or response.reason_phrase), token)
    answer = f"getMe answered {response.status_code} {description}"
    if response.status_code in (401, 404):
        return Check(
            "bot token",
            False,
            answer,
            "the token is wrong or was revoked: copy it again from @BotFather "
            "(/mybots → your bot → API Token) into TELEGRAM_BOT_TOKEN",
        )
    return Check(
        "bot token", False, answer, f"{host} is not answering as the Bot API does; retry later"
    )


# --- the agent ---------------------------------------------------------------------------
async def _check_agent(settings: Settings) -> Check:
    """The default agent (AGENT_URL and its settings)."""
    setting = "AGENT_TOKEN" if settings.agent_mode == "openai" else "AGENT_SECRET"
    return await _probe_agent(
        "agent",
        default_agent(settings),
        unreachable=(
            "start the agent, or set AGENT_URL to where it listens (inside a container "
            "127.0.0.1 is the container itself: use the agent's service name or the "
            "host's address)"
        ),
        refused=f"set {setting} to the value the agent expects",
    )


async def _check_chat_agents(settings: Settings) -> list[Check]:
    """Each chat's own agent (/agent), as its runs will reach it; one that is the
    default agent in every respect is not probed twice."""
    where = settings.database
    try:
        async with asyncio.timeout(DATABASE_TIMEOUT_S), snapshot(where) as db:
            chats = await all_agents(db)
    except Exception as exc:  # the database check above passed: say it, fail nothing
        return [Check("chat agents", True, f"not read ({type(exc).__name__})")]
    default = default_agent(settings)
    probes = [(chat.chat_id, spec) for chat in chats if (spec := resolve(default, chat)) != default]
    return list(
        await asyncio.gather(
            *(
                _timed(
                    f"agent of chat {chat_id}",
                    _HTTP_DEADLINE_S,
                    _probe_agent(
                        f"agent of chat {chat_id}",
                        spec,
                        unreachable=(
                            f"start that agent, or change it with /agent url in chat "
                            f"{chat_id} (/agent reset: the default agent)"
                        ),
                        refused=f"set the secret it expects with /agent secret in chat {chat_id}",
                    ),
                    _AGENT_SLOW,
                )
                for chat_id, spec in probes
            )
        )
    )


async def _probe_agent(name: str, spec: AgentSpec, *, unreachable: str, refused: str) -> Check:
    """A GET, never a POST: a POST would hand the agent a task. Any answer but a 5xx
    or a refusal of our credentials means Tickler's POSTs will reach it."""
    url, headers = _agent_probe(spec)
    shown = _public_url(url)
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
            response = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return Check(name, False, f"nothing answers at {shown} ({_describe(exc)})", unreachable)
    status = f"{response.status_code} {response.reason_phrase}".strip()
    if response.status_code in (401, 403):
        return Check(name, False, f"{shown} refused our credentials ({status})", refused)
    if response.status_code >= 500:
        return Check(
            name, False, f"{shown} answered {status}", "the agent is up but failing: see its logs"
        )
    return Check(name, True, f"{shown} answers (GET: {status})")


def _agent_probe(spec: AgentSpec) -> tuple[str, dict[str, str]]:
    url = spec.url
    headers: dict[str, str] = {}
    if spec.mode == "openai":
        # The models list is the side-effect-free endpoint that checks the token.
        if url.rstrip("/").endswith("/chat/completions"):
            url = url.rstrip("/").removesuffix("/chat/completions") + "/models"
        if spec.token is not None:
            headers["Authorization"] = f"Bearer {spec.token}"
    elif spec.secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = spec.secret
    return url, headers


# --- wording -----------------------------------------------------------------------------
def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {HTTP_TIMEOUT_S:g} s"
    if isinstance(exc, httpx.ConnectError):
        # httpx says "All connection attempts failed"; the socket error underneath says why.
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ConnectionRefusedError):
                return "connection refused"
            if isinstance(cause, socket.gaierror):
                return "host name not found"
            cause = cause.__cause__ or cause.__context__
        return f"cannot connect: {exc}"
    return str(exc) or type(exc).__name__


def _hide(text: str, secret: str) -> str:
    return text.replace(secret, "<token>") if secret else text


def _public_url(url: str) -> str:
    """scheme://host[:port]/path: no user:password@, no ?query (either may hold a key)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
