"""Throwaway PostgreSQL servers: one `Cluster` per test session (tests/conftest.py's
`pg_cluster`), an empty database per test (`postgres_url`).

A cluster is PostgreSQL's own binaries (Debian's `postgresql` package; `.ci/run` installs
it) run on a fresh data folder: `initdb`, then `pg_ctl -w start` listening only on
127.0.0.1 at a free port, trusting every local connection as the user `postgres`, with
durability turned off (fsync, synchronous commit, full-page writes) because nothing in it
outlives the session. `stop()` shuts it down at once and deletes the folder; if the
process that started it dies first, a small watchdog process does that instead.

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as the
system user `postgres` (Debian's package makes it; failing that, `tickler-pg` is made),
in a folder of its own under /tmp that the user can reach.

Usable outside pytest too (bench/, a test that starts processes of its own):

    with Cluster.start(Path(tempfile.mkdtemp())) as cluster:
        url = cluster.create_database("bench")   # postgresql://postgres@127.0.0.1:PORT/bench

and `python -m tests.postgres` starts one and prints its URL until interrupted.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

#: What a bin folder must hold to start a cluster; psql creates the databases.
SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
#: The system user the server runs as when this process is root.
DEBIAN_USER = "postgres"
FALLBACK_USER = "tickler-pg"
#: How to get PostgreSQL, said wherever it is missing.
HOW_TO_GET_IT = (
    "install Debian's postgresql package (apt-get install postgresql) or point TICKLER_PG_BIN"
    " at the folder holding initdb, pg_ctl and postgres;"
    " .ci/run installs it"
)

#: Server settings: loopback only, enough connections for tests that open pools, and no
#: durability (the data dies with the session anyway).
_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "300",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "logging_collector": "off",
}

#: Run by the watchdog: wait until the parent closes the pipe; unless the parent said it
#: stopped the server itself, stop it (SIGQUIT = pg_ctl's immediate mode) and delete the
#: folder.
_WATCHDOG = """
import os, shutil, signal, sys, time
pid, folder = int(sys.argv[1]), sys.argv[2]
if sys.stdin.read() == "stopped":
    sys.exit(0)
try:
    os.kill(pid, signal.SIGQUIT)
    for _ in range(200):  # until it is gone: its lock file is the last thing it deletes
        os.kill(pid, 0)
        if not os.path.exists(os.path.join(folder, "data", "postmaster.pid")):
            break
        time.sleep(0.05)
except ProcessLookupError:
    pass
shutil.rmtree(folder, ignore_errors=True)
"""


def _holds_server(folder: Path) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in SERVER_PROGRAMS)


def _version_key(folder: Path) -> tuple[int, ...]:
    """/usr/lib/postgresql/15/bin -> (15,); a folder not named by a version sorts first."""
    return tuple(int(part) for part in re.findall(r"\d+", folder.parent.name)) or (-1,)


def find_binaries() -> Path | None:
    """The bin folder holding initdb, pg_ctl and postgres: `$TICKLER_PG_BIN` when set (then
    nowhere else), else `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`
    (Debian keeps the server off PATH), else the folder of `initdb` on PATH."""
    chosen = os.environ.get("TICKLER_PG_BIN", "")
    if chosen:
        return Path(chosen) if _holds_server(Path(chosen)) else None
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            folder = Path(out.stdout.strip())
            if out.stdout.strip() and _holds_server(folder):
                return folder
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for folder in debian:
        if _holds_server(folder):
            return folder
    initdb = shutil.which("initdb")
    if initdb and _holds_server(Path(initdb).parent):
        return Path(initdb).parent
    return None


def _psql(bindir: Path) -> Path | None:
    beside = bindir / "psql"
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("psql")
    return Path(found) if found else None


def available() -> str | None:
    """None when a cluster can be started here, else one sentence saying why not."""
    chosen = os.environ.get("TICKLER_PG_BIN", "")
    bindir = find_binaries()
    if bindir is None:
        if chosen:
            return f"PostgreSQL not found in TICKLER_PG_BIN={chosen}: {HOW_TO_GET_IT}"
        return f"PostgreSQL not found: {HOW_TO_GET_IT}"
    if _psql(bindir) is None:
        return f"PostgreSQL's psql not found beside {bindir} nor on PATH: {HOW_TO_GET_IT}"
    return None


def _server_user() -> pwd.struct_passwd | None:
    """The user the server runs as: None (this process's own) unless this process is root,
    which PostgreSQL refuses; then `postgres`, or a system user made for the purpose."""
    if os.geteuid() != 0:
        return None
    for name in (DEBIAN_USER, FALLBACK_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(FALLBACK_USER)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ClusterError(RuntimeError):
    """A cluster could not be started, or a statement failed; the message has the output."""


class Cluster:
    """One running PostgreSQL server on 127.0.0.1 (see the module's docstring)."""

    def __init__(
        self, bindir: Path, folder: Path, user: pwd.struct_passwd | None, psql: Path
    ) -> None:
        self.bindir = bindir
        #: The cluster's own folder: data/, server.log, and the unix socket.
        self.folder = folder
        self.data_dir = folder / "data"
        self.log_file = folder / "server.log"
        self.user = user
        self.port = 0
        self._psql = psql
        self._watchdog: subprocess.Popen[str] | None = None
        self._running = False

    # --- starting and stopping -------------------------------------------------------------
    @classmethod
    def start(cls, base_dir: Path, *, bindir: Path | None = None) -> Cluster:
        """initdb + start a new cluster. Its folder is `base_dir/postgres`, or when this
        process is root a folder under /tmp that the server's user can reach (`base_dir`
        may sit under a 0700 folder of root's). Raises ClusterError when it cannot."""
        bindir = bindir or find_binaries()
        if bindir is None:
            raise ClusterError(available() or "PostgreSQL not found")
        psql = _psql(bindir)
        if psql is None:
            raise ClusterError(available() or "psql not found")
        user = _server_user()
        if user is None:
            folder = Path(tempfile.mkdtemp(prefix="postgres-", dir=base_dir))
            if len(str(folder)) > 80:  # a unix socket's path is at most ~107 bytes
                shutil.rmtree(folder)
                folder = Path(tempfile.mkdtemp(prefix="tickler-pg-"))
        else:
            folder = Path(tempfile.mkdtemp(prefix="tickler-pg-", dir="/tmp"))
            os.chmod(folder, 0o755)
            os.chown(folder, user.pw_uid, user.pw_gid)
        cluster = cls(bindir, folder, user, psql)
        try:
            cluster._initdb()
            cluster._start_server()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A server program, as the server's user, in the cluster's folder."""
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        if self.user is not None:
            env.update(HOME=self.user.pw_dir, USER=self.user.pw_name, LOGNAME=self.user.pw_name)
        return subprocess.run(
            args,
            cwd=self.folder,
            env=env,
            user=self.user.pw_uid if self.user else None,
            group=self.user.pw_gid if self.user else None,
            extra_groups=[] if self.user else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def _initdb(self) -> None:
        done = self._run(
            [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        if done.returncode != 0:
            raise ClusterError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def _start_server(self) -> None:
        conf = self.data_dir / "postgresql.conf"
        base = conf.read_text(encoding="utf-8")
        socket_dir = str(self.folder).replace("'", "''")
        settings = {**_SETTINGS, "unix_socket_directories": f"'{socket_dir}'"}
        for attempt in range(5):  # the free port may be taken between finding and binding
            self.port = _free_port()
            lines = [f"{key} = {value}" for key, value in {**settings, "port": self.port}.items()]
            conf.write_text(base + "\n# tests/postgres.py\n" + "\n".join(lines) + "\n", "utf-8")
            done = self._run(
                [
                    str(self.bindir / "pg_ctl"),
                    "--pgdata",
                    str(self.data_dir),
                    "--log",
                    str(self.log_file),
                    "--wait",
                    "--timeout=60",
                    "start",
                ]
            )
            if done.returncode == 0:
                self._running = True
                self._start_watchdog()
                return
            log = self.log_file.read_text(encoding="utf-8", errors="replace")
            if "could not bind" not in log or attempt == 4:
                raise ClusterError(
                    f"pg_ctl start failed ({done.returncode}):\n{done.stdout}{done.stderr}\n"
                    f"{self.log_file}:\n{log[-4000:]}"
                )

    def _postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid_file = self.data_dir / "postmaster.pid"
            return int(pid_file.read_text(encoding="utf-8").splitlines()[0])
        return None

    def _start_watchdog(self) -> None:
        pid = self._postmaster_pid()
        if pid is None:
            return
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(pid), str(self.folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # Ctrl-C in the terminal is not for it
        )

    def halt(self) -> None:
        """Stop the server at once (as a crash would), keeping its data for `resume`."""
        self._pg_ctl("--mode=immediate", "stop")
        self._running = False

    def resume(self) -> None:
        """Start a halted server again, on the same port with the same data."""
        self._pg_ctl("--log", str(self.log_file), "--timeout=60", "start")
        self._running = True

    def _pg_ctl(self, *args: str) -> None:
        done = self._run(
            [str(self.bindir / "pg_ctl"), "--pgdata", str(self.data_dir), "--wait", *args]
        )
        if done.returncode != 0:
            raise ClusterError(
                f"pg_ctl {args[-1]} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )

    def stop(self) -> None:
        """Stop the server at once (`pg_ctl stop -m immediate`) and delete its folder.
        Safe to call twice."""
        if self._running:
            self._running = False
            self._run(
                [
                    str(self.bindir / "pg_ctl"),
                    "--pgdata",
                    str(self.data_dir),
                    "--mode=immediate",
                    "--wait",
                    "stop",
                ]
            )
        if self._watchdog is not None:
            watchdog, self._watchdog = self._watchdog, None
            with contextlib.suppress(OSError):
                assert watchdog.stdin is not None
                watchdog.stdin.write("stopped")
                watchdog.stdin.close()
            try:
                watchdog.wait(timeout=10)
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- using it --------------------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        """The URL asyncpg (and libpq) connect with: no password, loopback TCP."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run `sql` with psql (one statement or several; each in its own transaction
        unless the text says otherwise); its unaligned, tuples-only output. A blocking
        subprocess: fine from a fixture, or from inside a running event loop for a
        statement that takes milliseconds."""
        done = subprocess.run(
            [
                str(self._psql),
                "--no-psqlrc",
                "--quiet",
                "--no-align",
                "--tuples-only",
                "--set=ON_ERROR_STOP=1",
                f"--dbname={self.url(dbname)}",
                "--command",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        )
        if done.returncode != 0:
            raise ClusterError(f"psql failed ({done.returncode}) on {sql!r}:\n{done.stderr}")
        return done.stdout

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (empty, UTF8, owned by postgres); its URL."""
        self.psql(f'CREATE DATABASE "{_identifier(name)}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE `name`, closing any connection still open to it."""
        self.psql(f'DROP DATABASE IF EXISTS "{_identifier(name)}" WITH (FORCE)')


def _identifier(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]{1,63}", name):
        raise ValueError(f"a database name of 1-63 letters, digits and _, not {name!r}")
    return name


def main() -> None:
    """`python -m tests.postgres`: start a cluster, print its URL, stop it on Ctrl-C/SIGTERM."""
    reason = available()
    if reason:
        sys.exit(reason)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Cluster.start(Path(tempfile.gettempdir())) as cluster:
        print(cluster.url(), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
