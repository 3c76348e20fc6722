#!/usr/bin/env python3
"""Exit 0 when requirements.lock pins every runtime dependency of pyproject.toml and
requirements-dev.lock every runtime and dev dependency, each at a version the
specifier allows; otherwise name what is missing and how to regenerate the locks.

Run by ./dev (with its .venv's python: needs `packaging`) after an install.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", re.MULTILINE)


def pins(lock: Path) -> dict[str, Version]:
    text = lock.read_text(encoding="utf-8")
    return {canonicalize_name(name): Version(version) for name, version in PIN.findall(text)}


def missing(requirements: list[str], lock: Path, extra: str) -> list[str]:
    locked = pins(lock)
    problems = []
    for line in requirements:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        version = locked.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"pyproject.toml asks for {req}, which {lock.name} lacks")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"pyproject.toml asks for {req}, but {lock.name} pins {version}")
    return problems


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime: list[str] = project["dependencies"]
    dev: list[str] = project.get("optional-dependencies", {}).get("dev", [])
    problems = missing(runtime, ROOT / "requirements.lock", "") + missing(
        runtime + dev, ROOT / "requirements-dev.lock", "dev"
    )
    if not problems:
        return 0
    for problem in problems:
        print(f"lock out of date: {problem}.", file=sys.stderr)
    print("Regenerate the locks with: .ci/lock   (see docs/deployment.md)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
