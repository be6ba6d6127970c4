"""PIN hashing, lockout timing and signed grants, without services (SQLite files in tmp only)."""

from __future__ import annotations

import datetime as dt
import os
import stat

import pytest

from cloudsync.access import grants
from cloudsync.access import staff as access
from cloudsync.access.errors import AuthFailed, GrantRefused, PermissionDenied
from cloudsync.control.store import control_engine
from cloudsync.settings import load_settings

T0 = dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.UTC)
SECRET = b"k" * 32


def test_pin_hash_is_salted_slow_and_verifies_only_the_same_pin():
    a, b = access.hash_secret("1234"), access.hash_secret("1234")
    assert a != b  # a fresh salt per hash
    assert a.startswith("scrypt$16384$8$1$") and "1234" not in a
    assert access.verify_secret("1234", a) and access.verify_secret("1234", b)
    assert not access.verify_secret("1235", a)
    assert not access.verify_secret("1234", "md5$whatever")
    assert not access.verify_secret("1234", "garbage")


def test_lock_state_locks_on_the_fifth_failure_for_fifteen_minutes():
    state = access.LockState(0, None)
    for i in range(1, 5):
        state = state.after_failure(T0)
        assert state.failed_pins == i and not state.locked(T0)
    state = state.after_failure(T0)
    assert state.locked(T0)
    assert state.locked(T0 + dt.timedelta(minutes=14, seconds=59))
    assert not state.locked(T0 + dt.timedelta(minutes=15))
    # after the lock ran out, counting starts again from one
    later = state.after_failure(T0 + dt.timedelta(minutes=16))
    assert later.failed_pins == 1 and not later.locked(T0 + dt.timedelta(minutes=16))


@pytest.fixture
def control(tmp_path):
    engine = control_engine(f"sqlite:///{tmp_path / 'control.db'}")
    yield engine
    engine.dispose()


def test_five_wrong_pins_lock_then_the_lock_expires_with_the_clock(control):
    access.add_group(control, "ops", permissions=["cloud.resync"])
    access.add_staff(control, "ann", "Ann", "2468", ["ops"])
    for i in range(4):
        with pytest.raises(AuthFailed, match="wrong staff code or PIN") as err:
            access.authenticate(control, "ann", "0000", now=T0 + dt.timedelta(seconds=i))
        assert f"({i + 1}/5" in err.value.reason
    with pytest.raises(AuthFailed, match="now locked for 15 minutes"):
        access.authenticate(control, "ann", "0000", now=T0 + dt.timedelta(seconds=5))
    with pytest.raises(AuthFailed, match="locked until 09:15:05 UTC"):  # even the right PIN
        access.authenticate(control, "ann", "2468", now=T0 + dt.timedelta(minutes=15))
    member = access.authenticate(control, "ann", "2468", now=T0 + dt.timedelta(minutes=15, seconds=5))
    assert member.can("cloud.resync") and not member.can("cloud.reset")


def test_a_right_pin_resets_the_count(control):
    access.add_group(control, "ops", permissions=["cloud.resync"])
    access.add_staff(control, "ann", "Ann", "2468", ["ops"])
    for _ in range(4):
        with pytest.raises(AuthFailed):
            access.authenticate(control, "ann", "0000", now=T0)
    access.authenticate(control, "ann", "2468", now=T0)
    for _ in range(4):
        with pytest.raises(AuthFailed, match="wrong staff code"):
            access.authenticate(control, "ann", "0000", now=T0)


def test_unknown_and_disabled_staff_and_permissions(control):
    access.init_admin(control, "boss", "Boss", "9999")
    with pytest.raises(AuthFailed, match="wrong staff code or PIN") as err:
        access.authenticate(control, "nobody", "9999")
    assert err.value.reason == "unknown staff code"
    access.add_group(control, "floor", permissions=["cloud.onboard"])
    access.add_staff(control, "kim", "Kim", "1357", ["floor"])
    kim = access.authenticate(control, "kim", "1357")
    with pytest.raises(PermissionDenied, match="lacks the permission cloud.resync"):
        access.require_permission(kim, "cloud.resync")
    access.set_active(control, "kim", False)
    with pytest.raises(AuthFailed, match="disabled"):
        access.authenticate(control, "kim", "1357")
    # the last administrator cannot be disabled or lose cloud.admin
    with pytest.raises(access.AccessError, match="cloud.admin"):
        access.set_active(control, "boss", False)
    with pytest.raises(access.AccessError, match="cloud.admin"):
        access.revoke(control, access.ADMIN_GROUP, ["cloud.admin"])
    assert access.authenticate(control, "boss", "9999").can("cloud.admin")


def test_short_pins_and_bad_codes_are_refused(control):
    from cloudsync.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 4"):
        access.add_staff(control, "ann", "Ann", "12")
    with pytest.raises(ConfigError, match="staff code"):
        access.add_staff(control, "bad code!", "Ann", "1234")


def _claims(**over):
    values = dict(job=7, venue="v1", action="resync.full", staff="ann", exp=2_000_000_000)
    values.update(over)
    return grants.Claims(**values)


def test_grant_signs_and_verifies_for_exactly_its_job():
    token = grants.sign(SECRET, _claims())
    claims = grants.verify(SECRET, token, job=7, venue="v1", action="resync.full", staff="ann", now_s=1_900_000_000)
    assert claims.staff == "ann"
    for kwargs, reason in [
        (dict(job=8, venue="v1", action="resync.full"), "grant is for job 7"),
        (dict(job=7, venue="v2", action="resync.full"), "of venue v1"),
        (dict(job=7, venue="v1", action="resync.repair"), "resync.full"),
        (dict(job=7, venue="v1", action="resync.full", staff="bob"), "signed for staff ann"),
    ]:
        with pytest.raises(GrantRefused, match=reason):
            grants.verify(SECRET, token, now_s=1_900_000_000, **kwargs)


def test_grant_expires():
    token = grants.sign(SECRET, _claims(exp=1000))
    grants.verify(SECRET, token, job=7, venue="v1", action="resync.full", now_s=999)
    with pytest.raises(GrantRefused, match="expired"):
        grants.verify(SECRET, token, job=7, venue="v1", action="resync.full", now_s=1000)


def test_a_tampered_or_foreign_grant_is_refused():
    token = grants.sign(SECRET, _claims())
    version, payload, mac = token.split(".")
    forged_payload = grants.sign(b"other" * 8, _claims(job=9)).split(".")[1]
    cases = {
        "no grant": [None, "", 42],
        "malformed grant": ["v1.abc", "v2." + payload + "." + mac],
        "bad grant signature": [f"{version}.{forged_payload}.{mac}", grants.sign(b"x" * 32, _claims()),
                                f"{version}.{payload}.{mac[:-2]}AA", "v1.!!!.***"],
    }
    for reason, tokens in cases.items():
        for bad in tokens:
            with pytest.raises(GrantRefused, match=reason):
                grants.verify(SECRET, bad, job=7, venue="v1", action="resync.full", now_s=1)


def test_secret_is_generated_once_per_home_with_mode_0600(tmp_path):
    settings = load_settings(environ={}, home=str(tmp_path / "home"))
    first = grants.server_secret(settings)
    path = tmp_path / "home" / "secret.key"
    assert path.exists() and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    grants._secrets.clear()
    assert grants.server_secret(settings) == first  # read back, not regenerated
    configured = load_settings(environ={}, home=str(tmp_path / "home"), secret_key="s" * 20)
    assert grants.server_secret(configured) == b"s" * 20
    assert "s" * 20 not in str(configured.describe())


def test_no_code_path_updates_or_deletes_audit_rows():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"audit_log\s*\.\s*(update|delete)\s*\(|(UPDATE|DELETE\s+FROM|TRUNCATE)\s+audit_log", re.I)
    offenders = []
    for folder in ("cloudsync", "tasks", "worker", "scheduler"):
        for path in (root / folder).rglob("*.py"):
            if "migrations" in path.parts:
                continue  # the migration names the table in the triggers that refuse these statements
            if pattern.search(path.read_text()):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


def test_require_logs_in_only_when_asked_and_audits_each_attempt(tmp_path):
    import click
    from click.testing import CliRunner

    from cloudsync.access import audit
    from cloudsync.cli.auth import current_staff, require
    from cloudsync.cli.common import SafeGroup

    @click.group(cls=SafeGroup)
    def root() -> None:
        pass

    @root.command("check")
    @click.argument("venue_id")
    @click.option("--fix", is_flag=True)
    @require("cloud.resync", when=lambda kw: kw["fix"])
    def check(venue_id: str, fix: bool) -> None:
        click.echo(f"fixed by {current_staff().code}" if fix else "read only")

    home = str(tmp_path / "home")
    env = {"CLOUDSYNC_HOME": home}
    runner = CliRunner()
    assert runner.invoke(root, ["check", "v1"], env=env).output == "read only\n"
    from cloudsync.context import Context

    ctx = Context.from_settings(load_settings(environ=env))
    access.init_admin(ctx.control, "boss", "Boss", "9876")
    refused = runner.invoke(root, ["check", "v1", "--fix", "--staff", "boss"], env=env, input="1111\n")
    assert refused.exit_code == 1 and "wrong staff code or PIN" in refused.stderr
    allowed = runner.invoke(root, ["check", "v1", "--fix"], env={**env, "CLOUDSYNC_STAFF": "boss",
                                                                   "CLOUDSYNC_PIN": "9876"})
    assert allowed.exit_code == 0 and allowed.stdout == "fixed by boss\n", allowed.output
    entries = [(e.staff, e.action, e.venue_id, e.outcome) for e in audit.read(ctx.control)]
    assert entries == [("boss", "check", "v1", "refused"), ("boss", "check", "v1", "allowed")]
