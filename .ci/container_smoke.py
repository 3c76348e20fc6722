"""The Docker image's entry, without Docker: `./dev python .ci/container_smoke.py`.

Does what the image does, from the Dockerfile itself: a fresh virtual environment with
the locked runtime dependencies (hash-checked) and the project installed non-editable
from the same files the image copies; the final stage's ENV; its ENTRYPOINT + CMD run
exactly, as a non-root user (uid 65534 when this runs as root, as CI does), with
DATABASE_PATH in a fresh /data-like folder and the working folder there (WORKDIR). Then,
against the strict test Bot API server and the agent stub on 127.0.0.1:

  `tickler doctor` passes; the bot starts; a user's /start is answered; GET /healthz
  is 200 and the image's HEALTHCHECK command exits 0; SIGTERM stops it with status 0
  within docker-compose.yml's stop_grace_period.

Prints what it checked and how long each step took; exits 1 on the first failure.

With `--docker IMAGE` it runs the built image itself instead (`docker run` on the host
network with docker-compose.yml's hardening: read-only root, no capabilities), and waits
for Docker's own health status; CI does not use this (no Docker engine there).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.demo_kit.agent_stub import AgentStub  # noqa: E402
from bot.demo_kit.telegram_server import TelegramServer  # noqa: E402

#: The unprivileged user when this runs as root: "nobody" on Debian and most distros.
NOBODY = 65534
ADMIN = 4242
START_TIMEOUT_S = 60.0


class SmokeFailure(Exception):
    pass


@dataclass
class ImageSpec:
    """The parts of the Dockerfile's final stage that decide how the process runs."""

    entry: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    healthcheck: list[str] = field(default_factory=list)
    workdir: str = "/"
    user: str = "root"


def project_files(path: Path) -> list[str]:
    """What the Dockerfile's builder copies from the build context (its COPY lines
    without --from), and so what gets installed: a package added to the image is
    installed here too."""
    names: list[str] = []
    for line in path.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            names += [w for w in words[1:-1] if not w.startswith("--")]
    return names


def read_dockerfile(path: Path) -> ImageSpec:
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        elif stages:
            stages[-1].append(line)
    spec = ImageSpec()
    entrypoint: list[str] = []
    cmd: list[str] = []
    for line in stages[-1]:
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        match word.upper():
            case "ENTRYPOINT":
                entrypoint = json.loads(rest)
            case "CMD":
                cmd = json.loads(rest)
            case "ENV":
                for pair in shlex.split(rest):
                    name, _, value = pair.partition("=")
                    spec.env[name] = value
            case "WORKDIR":
                spec.workdir = rest
            case "USER":
                spec.user = rest
            case "HEALTHCHECK":
                spec.healthcheck = json.loads(rest[rest.index("CMD ") + 4 :])
    spec.entry = entrypoint + cmd
    return spec


def stop_grace_seconds(compose: Path) -> float:
    found = re.search(r"stop_grace_period:\s*(\d+)s", compose.read_text(encoding="utf-8"))
    if found is None:
        raise SmokeFailure(f"{compose.name} sets no stop_grace_period in seconds")
    return float(found.group(1))


def step(label: str, started: float) -> None:
    print(f"container-smoke: ok   {label} ({time.monotonic() - started:.1f} s)", flush=True)


def run(cmd: list[str], **kwargs: object) -> None:
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def build_venv(work: Path) -> Path:
    """The image's /opt/venv: the lock (hash-checked), then the project, no deps."""
    src = work / "src"
    src.mkdir()
    for name in project_files(ROOT / "Dockerfile"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, src / name)
    shutil.copy2(ROOT / "requirements.lock", src / "requirements.lock")
    venv = work / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    run([base_python, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "-qq"]
    run([*pip, "install", "--require-hashes", "--no-deps", "-r", str(src / "requirements.lock")])
    run([*pip, "install", "--no-deps", str(src)], cwd=work)
    run([*pip, "check"])
    return venv


def as_unprivileged(home: Path) -> list[str]:
    """A prefix that runs a command as `nobody` when we are root (as CI is)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise SmokeFailure("running as root needs setpriv (util-linux) to drop privileges")
    os.chown(home, NOBODY, NOBODY)
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def get_health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            status: int = answer.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


class Target:
    """Where the entry command runs: a fresh venv (as CI does) or the image."""

    data: Path

    async def doctor(self, env: dict[str, str]) -> tuple[int, str]:
        raise NotImplementedError

    async def start(self, env: dict[str, str]) -> None:
        raise NotImplementedError

    def exited(self) -> int | None:
        raise NotImplementedError

    async def check_user(self) -> str:
        raise NotImplementedError

    async def healthcheck(self, env: dict[str, str]) -> str:
        raise NotImplementedError

    async def stop(self, grace: float) -> int:
        """SIGTERM, then the exit status; SmokeFailure if it outlives `grace`."""
        raise NotImplementedError

    async def cleanup(self) -> None:
        raise NotImplementedError


class VenvTarget(Target):
    def __init__(self, work: Path, spec: ImageSpec) -> None:
        self.spec = spec
        self.venv = build_venv(work)
        # The /data volume and the user's home, both owned by the unprivileged user.
        self.data = work / "data"
        self.home = work / "home"
        self.data.mkdir()
        self.home.mkdir()
        self.drop = as_unprivileged(self.home)
        if self.drop:
            os.chown(self.data, NOBODY, NOBODY)
        os.chmod(work, 0o755)
        self.proc: asyncio.subprocess.Process | None = None

    def _env(self, env: dict[str, str]) -> dict[str, str]:
        return {
            **self.spec.env,
            **env,
            "PATH": f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "DATABASE_PATH": str(self.data / "tickler.db"),
        }

    async def doctor(self, env: dict[str, str]) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *self.drop,
            str(self.venv / "bin" / "tickler"),
            "doctor",
            cwd=self.data,
            env=self._env(env),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()

    async def start(self, env: dict[str, str]) -> None:
        entry = [str(self.venv / "bin" / self.spec.entry[0]), *self.spec.entry[1:]]
        self.proc = await asyncio.create_subprocess_exec(
            *self.drop, *entry, cwd=self.data, env=self._env(env)
        )

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def check_user(self) -> str:
        assert self.proc is not None
        uid = _process_uid(self.proc.pid)
        owner = (self.data / "tickler.db").stat().st_uid
        if uid == 0 or owner != uid:
            raise SmokeFailure(f"the bot runs as uid {uid}; the database belongs to {owner}")
        return f"the bot runs as uid {uid}; the database is its own"

    async def healthcheck(self, env: dict[str, str]) -> str:
        probe = await asyncio.create_subprocess_exec(
            *self.drop, *self.spec.healthcheck, cwd=self.data, env=self._env(env)
        )
        if await probe.wait() != 0:
            raise SmokeFailure(f"the HEALTHCHECK command exited {probe.returncode}")
        return "the Dockerfile's HEALTHCHECK command exits 0"

    async def stop(self, grace: float) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                return await self.proc.wait()
        except TimeoutError:
            raise SmokeFailure(f"still running {grace:g} s after SIGTERM") from None

    async def cleanup(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


class DockerTarget(Target):
    #: docker-compose.yml's hardening, so the image is tried as compose runs it.
    HARDENING = (
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges:true",
    )

    def __init__(self, work: Path, image: str) -> None:
        self.image = image
        self.name = f"tickler-smoke-{os.getpid()}"
        self.data = work / "data"
        self.data.mkdir()
        # The image's user owns its volume (a named volume gets this from the image).
        os.chown(self.data, 10001, 10001)
        self.container: str | None = None

    def _run(self, env: dict[str, str]) -> list[str]:
        flags = [f"--env={name}={value}" for name, value in env.items()]
        return ["docker", "run", "--network=host", f"--volume={self.data}:/data", *flags]

    async def doctor(self, env: dict[str, str]) -> tuple[int, str]:
        cmd = [*self._run(env), "--rm", *self.HARDENING, self.image, "doctor"]
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()

    async def start(self, env: dict[str, str]) -> None:
        cmd = [*self._run(env), "--detach", f"--name={self.name}", *self.HARDENING, self.image]
        self.container = (await _output(cmd)).strip()

    def exited(self) -> int | None:
        return None

    async def check_user(self) -> str:
        user = (await _output(["docker", "exec", self.name, "id", "-u"])).strip()
        if user == "0":
            raise SmokeFailure("the container runs as root")
        owner = (self.data / "tickler.db").stat().st_uid
        return f"the container runs as uid {user}; the database belongs to uid {owner}"

    async def healthcheck(self, env: dict[str, str]) -> str:
        # The HEALTHCHECK's first probe comes one --interval (30 s) after the start.
        deadline = time.monotonic() + 90
        fmt = "--format={{.State.Health.Status}}"
        while (status := await _output(["docker", "inspect", fmt, self.name])).strip() != "healthy":
            if time.monotonic() > deadline:
                raise SmokeFailure(f"Docker reports the container {status.strip()}")
            await asyncio.sleep(1)
        return "Docker reports the container healthy (its HEALTHCHECK)"

    async def stop(self, grace: float) -> int:
        await _output(["docker", "stop", f"--time={int(grace)}", self.name])
        fmt = "--format={{.State.ExitCode}}"
        return int(await _output(["docker", "inspect", fmt, self.name]))

    async def cleanup(self) -> None:
        if self.container is not None:
            proc = await asyncio.create_subprocess_exec(
                "docker", "rm", "--force", self.name, stdout=asyncio.subprocess.DEVNULL
            )
            await proc.wait()


async def _output(cmd: list[str]) -> str:
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SmokeFailure(f"{shlex.join(cmd)} exited {proc.returncode}")
    return out.decode()


async def smoke(work: Path, image: str | None) -> None:
    spec = read_dockerfile(ROOT / "Dockerfile")
    grace = stop_grace_seconds(ROOT / "docker-compose.yml")
    print(f"container-smoke: entry command {spec.entry}, user {spec.user}, workdir {spec.workdir}")
    if spec.user in ("", "root", "0", "0:0"):
        raise SmokeFailure("the Dockerfile's final stage runs as root")

    started = time.monotonic()
    target: Target
    if image is None:
        target = VenvTarget(work, spec)
        step("fresh venv: requirements.lock (hash-checked) + the project, non-editable", started)
    else:
        target = DockerTarget(work, image)

    async with TelegramServer() as telegram, AgentStub() as agent:
        port = free_port()
        env = {
            # The image listens on 0.0.0.0 in its own network namespace; on the host's
            # network, loopback is the equivalent.
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(port),
            # What docker-compose.yml's .env provides.
            "TELEGRAM_BOT_TOKEN": telegram.token,
            "TELEGRAM_API_BASE_URL": telegram.url,
            "ADMIN_IDS": str(ADMIN),
            "AGENT_URL": agent.url,
            "AGENT_SECRET": "smoke-secret",
        }
        try:
            started = time.monotonic()
            code, out = await target.doctor(env)
            print(out.rstrip())
            if code != 0:
                raise SmokeFailure(f"tickler doctor exited {code}")
            step("tickler doctor passes as the image's user", started)

            started = time.monotonic()
            await target.start(env)
            await wait_healthy(target, port)
            step(f"started: GET /healthz answers 200 on port {port}", started)
            print(f"container-smoke: ok   {await target.check_user()}")

            started = time.monotonic()
            user = telegram.user(ADMIN, "Ada")
            await user.send("/start")
            reply = await user.wait_reply(timeout=15)
            if not reply.text:
                raise SmokeFailure("/start got an empty answer")
            step(f"/start answered: {reply.text.splitlines()[0]!r}", started)

            started = time.monotonic()
            step(await target.healthcheck(env), started)

            started = time.monotonic()
            code = await target.stop(grace)
            if code != 0:
                raise SmokeFailure(f"exited with status {code} after SIGTERM")
            step(f"SIGTERM: exit status 0 (grace period {grace:g} s)", started)
        finally:
            await target.cleanup()


async def wait_healthy(target: Target, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while await asyncio.to_thread(_health_or_zero, port) != 200:
        if (code := target.exited()) is not None:
            raise SmokeFailure(f"the bot exited with status {code} at start")
        if time.monotonic() > deadline:
            raise SmokeFailure(f"/healthz not 200 within {START_TIMEOUT_S:g} s")
        await asyncio.sleep(0.2)


def _health_or_zero(port: int) -> int:
    try:
        return get_health(port)
    except OSError:
        return 0


def _process_uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    found = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)
    return int(found.group(1)) if found else -1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docker", metavar="IMAGE", help="run this built image instead")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tickler-smoke-"))
    try:
        asyncio.run(smoke(work, args.docker))
    except (SmokeFailure, subprocess.CalledProcessError) as failure:
        print(f"container-smoke: FAIL {failure}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("container-smoke: passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
