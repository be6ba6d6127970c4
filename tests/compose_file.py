"""docker-compose.yml and the Dockerfile read as Compose and Docker read them, for the tests.

No Docker engine runs here, so the tests read the files themselves: YAML with merge keys (PyYAML),
`${VAR}`, `${VAR:-default}`, `${VAR:?message}` and `$$` interpolated by Compose's rules, Dockerfile
instructions with their line continuations joined.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

#: what a user must provide (see the compose file's header); everything else has a default
REQUIRED_ENV = {"CLOUDSYNC_SECRET_KEY": "compose-test-secret", "FLOWER_PASSWORD": "flower-test-pw"}

#: the ODBC driver each Debian package registers with unixODBC
ODBC_PACKAGES = {
    "msodbcsql18": "ODBC Driver 18 for SQL Server",
    "msodbcsql17": "ODBC Driver 17 for SQL Server",
    "tdsodbc": "FreeTDS",
}

_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                  r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")


class MissingVariable(KeyError):
    """A `${VAR:?message}` whose variable is unset: Compose refuses to start."""


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's interpolation, applied to every string in `value`."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m["name"] or m["bare"]
        op, arg, got = m["op"], m["arg"] or "", env.get(name)
        if op == ":-":
            return got if got else arg
        if op == "-":
            return got if got is not None else arg
        if op in (":?", "?"):
            if (not got) if op == ":?" else got is None:
                raise MissingVariable(f"{name}: {arg}")
            return got or ""
        return got or ""

    return _VAR.sub(sub, value)


def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def load(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file with merge keys resolved and variables interpolated from `env`."""
    return interpolate(raw(), REQUIRED_ENV if env is None else env)


def services(env: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    return load(env)["services"]


def is_cloudsync(service: Mapping[str, Any]) -> bool:
    return "build" in service or str(service.get("image", "")).startswith("cloudsync")


def is_one_shot(service: Mapping[str, Any]) -> bool:
    return str(service.get("restart", "")) == "no"


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command(service: Mapping[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def healthcheck_shell(service: Mapping[str, Any]) -> str:
    """The health check as a shell command line (CMD-SHELL as is, CMD joined and quoted)."""
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return test
    kind, *rest = test
    return rest[0] if kind == "CMD-SHELL" else shlex.join(rest)


def all_strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in all_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in all_strings(v)]
    return [value] if isinstance(value, str) else []


def odbc_driver(url: str) -> str | None:
    """The `driver=` of an mssql+pyodbc URL, decoded as SQLAlchemy passes it to unixODBC."""
    return (parse_qs(urlsplit(url).query).get("driver") or [None])[0]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        pending += " " + stripped.rstrip("\\").strip() if pending else stripped.rstrip("\\").strip()
        if stripped.endswith("\\"):
            continue
        word, _, args = pending.partition(" ")
        out.append((word.upper(), args.strip()))
        pending = ""
    return out


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
