"""docker-compose.yml, the Dockerfile and .dockerignore: what can be checked without a Docker engine.

The compose file parses; every service has a health check or is a one-shot others wait for; every
cloudsync service runs a real `cloudsync` command whose arguments click accepts; its environment is
valid cloudsync configuration; the Dockerfile installs the project from pyproject.toml and the ODBC
driver the compose DSNs name. tests/integration/test_compose_commands.py runs the commands for real.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest
from click.testing import CliRunner
from packaging.specifiers import SpecifierSet

from cloudsync.cli import cli
from cloudsync.processes import ALL_QUEUES
from cloudsync.settings import load_settings
from tests import compose_file as cf

PYPROJECT = tomllib.loads((cf.ROOT / "pyproject.toml").read_text())
HEALTHY, COMPLETED = "service_healthy", "service_completed_successfully"


def _resolve(args: list[str]) -> tuple[list[str], click.Command, list[str]]:
    """Walk `cloudsync a b …` down click's groups: (command path, command, its own arguments)."""
    command: click.Command = cli
    path: list[str] = []
    ctx = click.Context(cli, info_name="cloudsync")
    rest = list(args)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(ctx, rest[0])
        assert sub is not None, f"`cloudsync {' '.join(path + rest[:1])}` is not a cloudsync command"
        path.append(rest.pop(0))
        command = sub
    return path, command, rest


def test_compose_file_parses_with_the_expected_services() -> None:
    services = cf.services()
    assert {"redis", "postgres", "mssql", "venue-seed", "worker-resync", "worker-incremental", "beat",
            "flower"} <= set(services)
    assert services["mssql"]["image"] == "mcr.microsoft.com/mssql/server:2022-latest"
    assert set(cf.load()["volumes"]) >= {"redis-data", "pg-data", "mssql-data"}


def test_required_secrets_must_be_given() -> None:
    for name in cf.REQUIRED_ENV:
        env = {k: v for k, v in cf.REQUIRED_ENV.items() if k != name}
        with pytest.raises(cf.MissingVariable, match=name):
            cf.load(env)


def test_every_service_has_a_healthcheck_or_is_a_one_shot_others_wait_for() -> None:
    services = cf.services()
    completed = {dep for s in services.values() for dep, how in (s.get("depends_on") or {}).items()
                 if how["condition"] == COMPLETED}
    for name, service in services.items():
        if cf.is_one_shot(service):
            assert "healthcheck" not in service, name
            assert name in completed, f"{name} is one-shot but nothing waits for it to complete"
        else:
            test = service.get("healthcheck", {}).get("test")
            assert test and test[0] in {"CMD", "CMD-SHELL"} and test != ["NONE"], f"{name} has no health check"
            assert service.get("restart") in {"unless-stopped", "always"}, name


def test_dependencies_wait_for_health_or_completion() -> None:
    services = cf.services()
    for name, service in services.items():
        deps = service.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions, not a plain list"
        for dep, how in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cf.is_one_shot(services[dep]):
                assert how["condition"] == COMPLETED, f"{name} → {dep}"
            else:
                assert how["condition"] == HEALTHY and "healthcheck" in services[dep], f"{name} → {dep}"
    for name in ("worker-resync", "worker-incremental", "beat"):
        assert set(services[name]["depends_on"]) == {"redis", "postgres", "venue-seed"}, name
    assert set(services["venue-seed"]["depends_on"]) == {"mssql", "postgres"}


def test_redis_persists_and_never_evicts() -> None:
    cmd = cf.command(cf.services()["redis"])
    pairs = dict(zip(cmd[1::2], cmd[2::2]))
    assert cmd[0] == "redis-server"
    assert pairs["--appendonly"] == "yes" and pairs["--maxmemory-policy"] == "noeviction"
    assert any(v.endswith(":/data") for v in cf.services()["redis"]["volumes"])


@pytest.mark.parametrize("name", [n for n, s in cf.services().items() if cf.is_cloudsync(s)])
def test_cloudsync_service_runs_a_real_cloudsync_command(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    args = cf.command(cf.services()[name])
    for key, value in cf.environment(cf.services()[name]).items():
        if not key.startswith("CLOUDSYNC_"):  # options read from the environment (DEMO_VENUE_DSN)
            monkeypatch.setenv(key, value)
    assert args[0] == "cloudsync", f"{name}: command must start with cloudsync, got {args}"
    path, command, rest = _resolve(args[1:])
    assert path, f"{name}: no subcommand"
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    # click parses the service's own arguments (types, choices, unknown options) without running it
    command.make_context(" ".join(path), list(rest), parent=click.Context(cli, info_name="cloudsync"))


@pytest.mark.parametrize("name", [n for n, s in cf.services().items() if cf.is_cloudsync(s)])
def test_cloudsync_service_environment_is_valid_configuration(name: str) -> None:
    env = cf.environment(cf.services()[name])
    settings = load_settings(environ={k: v for k, v in env.items() if k.startswith("CLOUDSYNC_")})
    assert urlsplit(settings.redis_url).hostname == "redis"
    assert {urlsplit(settings.control_url).hostname, urlsplit(settings.cloud_url).hostname} == {"postgres"}
    assert settings.control_url != settings.cloud_url
    assert settings.secret_key == cf.REQUIRED_ENV["CLOUDSYNC_SECRET_KEY"]


def test_all_cloudsync_services_share_broker_databases_and_key() -> None:
    shared = {"CLOUDSYNC_REDIS_URL", "CLOUDSYNC_CONTROL_URL", "CLOUDSYNC_CLOUD_URL", "CLOUDSYNC_SECRET_KEY"}
    seen = {tuple(sorted((k, v) for k, v in cf.environment(s).items() if k in shared))
            for s in cf.services().values() if cf.is_cloudsync(s)}
    assert len(seen) == 1 and len(next(iter(seen))) == len(shared)


def test_workers_split_the_queues_and_one_beat_sends_work() -> None:
    services = cf.services()
    queues = {}
    for name, service in services.items():
        args = cf.command(service)
        if args[:2] == ["cloudsync", "worker"]:
            queues[name] = args[args.index("-Q") + 1]
    assert queues == {"worker-resync": "resync", "worker-incremental": "incremental,control"}
    assert sorted(",".join(queues.values()).split(",")) == sorted(ALL_QUEUES.split(","))
    beats = [n for n, s in services.items() if cf.command(s)[:2] == ["cloudsync", "beat"]]
    assert beats == ["beat"] and "deploy" not in services["beat"]  # never scaled: exactly one beat


def test_flower_has_basic_auth_from_the_environment() -> None:
    raw_env = cf.environment(cf.raw()["services"]["flower"])
    assert raw_env["CLOUDSYNC_FLOWER_PASSWORD"].startswith("${FLOWER_PASSWORD:?")
    env = cf.environment(cf.services()["flower"])
    assert env["CLOUDSYNC_FLOWER_USER"] and env["CLOUDSYNC_FLOWER_PASSWORD"] == cf.REQUIRED_ENV["FLOWER_PASSWORD"]
    assert "--insecure-local" not in cf.command(cf.services()["flower"])
    assert any(p.endswith(":5555") for p in cf.services()["flower"]["ports"])


def test_seed_builds_the_sql_server_demo_venue_with_change_tracking() -> None:
    seed = cf.services()["venue-seed"]
    args = cf.command(seed)
    assert args[:2] == ["cloudsync", "demo-venue"]
    assert {"--create-database", "--change-tracking", "--keep-existing"} <= set(args)
    dsn = cf.environment(seed)["DEMO_VENUE_DSN"]
    url = urlsplit(dsn)
    assert url.scheme == "mssql+pyodbc" and url.hostname == "mssql" and url.path == "/venue_demo"
    assert "--dsn" not in args, "the DSN (with its password) comes from the environment, not the command line"


def test_postgres_creates_both_cloudsync_databases() -> None:
    services = cf.services()
    pg = cf.environment(services["postgres"])
    env = cf.environment(services["worker-resync"])
    control, cloud = urlsplit(env["CLOUDSYNC_CONTROL_URL"]), urlsplit(env["CLOUDSYNC_CLOUD_URL"])
    assert cloud.path.strip("/") == pg["POSTGRES_DB"] and cloud.username == control.username == pg["POSTGRES_USER"]
    assert cloud.password == control.password == pg["POSTGRES_PASSWORD"]
    mounts = [v.split(":") for v in services["postgres"]["volumes"] if v.startswith("./")]
    init = [cf.ROOT / host for host, inside, *_ in mounts if inside.startswith("/docker-entrypoint-initdb.d/")]
    assert init and all(p.exists() for p in init)
    sql = " ".join(p.read_text() for p in init)
    assert re.search(rf"CREATE DATABASE {control.path.strip('/')}\b", sql)


# -- Dockerfile ------------------------------------------------------------------------------------

def _runs() -> list[str]:
    return [args for word, args in cf.dockerfile_instructions() if word == "RUN"]


def test_dockerfile_base_image_satisfies_requires_python() -> None:
    froms = [args for word, args in cf.dockerfile_instructions() if word == "FROM"]
    assert froms == ["python:3.11-slim-bookworm"]
    version = re.match(r"python:(\d+\.\d+)", froms[0]).group(1)  # type: ignore[union-attr]
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(version + ".0")


def test_dockerfile_installs_the_project_from_pyproject() -> None:
    copies = [args.split() for word, args in cf.dockerfile_instructions() if word == "COPY"]
    assert any(src in (".", "pyproject.toml") for c in copies for src in c[:-1]), "pyproject.toml never copied"
    installs = [seg.split()[2:] for run in _runs() for seg in re.split(r"&&|;", run)
                if re.match(r"\s*(python -m )?pip install\b", seg.strip())]
    assert installs, "no pip install"
    extras = set(PYPROJECT["project"].get("optional-dependencies", {}))
    project = 0
    for args in installs:
        targets = [a for a in args if not a.startswith("-")]
        assert "-r" not in args and "--requirement" not in args, "a separate requirements list"
        for target in targets:
            m = re.fullmatch(r"(\.|/src)(\[(?P<extras>[\w,-]+)\])?", target)
            if m:
                project += 1
                assert set(filter(None, (m["extras"] or "").split(","))) <= extras
            else:
                assert target in {"pip", "setuptools", "wheel"}, f"{target} installed outside pyproject.toml"
    assert project == 1, "the project must be installed once, from pyproject.toml"
    assert not list(cf.ROOT.glob("requirements*.txt"))
    assert "cloudsync" in PYPROJECT["project"]["scripts"]
    assert any("cloudsync --version" in run for run in _runs()), "the image checks its entry point"


def test_odbc_driver_is_the_one_the_compose_dsns_name() -> None:
    runs = " ".join(_runs())
    installed = {pkg: name for pkg, name in cf.ODBC_PACKAGES.items() if re.search(rf"\b{pkg}\b", runs)}
    assert len(installed) == 1, f"exactly one SQL Server ODBC driver, got {installed}"
    assert re.search(r"\bunixodbc\b", runs), "pyodbc needs unixODBC"
    assert "pyodbc" in " ".join(PYPROJECT["project"]["dependencies"])
    (driver,) = installed.values()
    assert f'odbcinst -q -d -n "{driver}"' in runs, "the build checks the driver is registered"
    dsns = [s for s in cf.all_strings(cf.load()) if s.startswith("mssql+pyodbc://")]
    assert dsns and {cf.odbc_driver(d) for d in dsns} == {driver}
    doc = (cf.ROOT / "docs" / "beyond-one-machine.md").read_text()
    assert {cf.odbc_driver(d) for d in re.findall(r"mssql\+pyodbc://\S+?driver=[^&\s`]+", doc)} == {driver}


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path, pat.removeprefix("**/")):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_what_pip_install_needs() -> None:
    patterns = cf.dockerignore_patterns()
    packages = [p for pat in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
                for p in [pat.rstrip("*")] if (cf.ROOT / p).is_dir()]
    assert {"cloudsync", "worker", "tasks"} <= set(packages)
    for kept in ["pyproject.toml", PYPROJECT["project"]["readme"], *packages]:
        assert not _ignored(kept, patterns), f".dockerignore drops {kept}"
    for dropped in [".git", ".venv", ".cloudsync", ".env", "cloudsync/__pycache__"]:
        assert _ignored(dropped, patterns) or _ignored(Path(dropped).name, patterns), f"{dropped} is sent"
