"""Staff members, security groups and the cloud permissions they hold; PIN login with lockout.

A permission belongs to a security group and a staff member holds it through their groups, like the
"Cloud Connectivity > Onboard" option of a POS back office's clerk security groups: only the few
groups that need to resync or onboard get it. PINs are stored as salted scrypt hashes (one random
salt per staff member) and compared in constant time; five wrong PINs in a row lock the account for
fifteen minutes. Every function takes `now` so tests can drive the clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cloudsync.access.errors import AccessError, AuthFailed, PermissionDenied
from cloudsync.control.access_schema import group_permissions, security_groups, staff, staff_groups
from cloudsync.control.store import as_utc, utcnow
from cloudsync.errors import ConfigError

log = logging.getLogger(__name__)

PERMISSIONS = ("cloud.onboard", "cloud.resync", "cloud.maintenance", "cloud.reset", "cloud.admin")
ADMIN_GROUP = "administrators"
MAX_FAILED_PINS = 5
LOCK_S = 15 * 60
MIN_PIN_CHARS = 4
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_BYTES = 2**14, 8, 1, 32
CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")

# -- hashing ----------------------------------------------------------------------------------------

def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """A slow salted hash of a PIN or one-time code: `scrypt$n$r$p$salt$hash` (hex)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_BYTES,
                            maxmem=64 * 1024 * 1024)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    """True if `secret` hashes to `stored`; the comparison takes the same time whatever differs."""
    try:
        kind, n, r, p, salt_hex, digest_hex = stored.split("$")
        if kind != "scrypt":
            return False
        digest = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r), p=int(p),
                                dklen=len(digest_hex) // 2, maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, bytes.fromhex(digest_hex))


# a login with an unknown code still costs one scrypt, so timing does not tell which codes exist
_DUMMY_HASH = hash_secret("not-a-pin", b"cloudsync-dummy!")


def check_pin_policy(pin: str) -> None:
    if len(pin) < MIN_PIN_CHARS:
        raise ConfigError("PIN", f"must have at least {MIN_PIN_CHARS} characters")
    if len(pin) > 128:
        raise ConfigError("PIN", "must have at most 128 characters")


# -- lockout ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LockState:
    """The failed-PIN counter and lock of one account: pure, so its timing can be tested on its own."""

    failed_pins: int
    locked_until: dt.datetime | None

    def locked(self, now: dt.datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def after_failure(self, now: dt.datetime) -> LockState:
        failed = (0 if self.locked_until is not None and not self.locked(now) else self.failed_pins) + 1
        if failed >= MAX_FAILED_PINS:
            return LockState(0, now + dt.timedelta(seconds=LOCK_S))
        return LockState(failed, None)

    @staticmethod
    def after_success() -> LockState:
        return LockState(0, None)


# -- staff and groups -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Staff:
    code: str
    name: str
    active: bool
    locked_until: dt.datetime | None
    groups: tuple[str, ...]
    permissions: frozenset[str]

    def can(self, permission: str) -> bool:
        return permission in self.permissions


def _check_code(code: str) -> None:
    if not CODE.match(code or ""):
        raise ConfigError("staff code", f"{code!r} must be letters, digits, '.', '_', '@' or '-' (at most 64)")


def _check_permission(permission: str) -> None:
    if permission not in PERMISSIONS:
        raise ConfigError("permission", f"unknown permission {permission!r} (one of {', '.join(PERMISSIONS)})")


def _groups_of(conn: Connection, code: str) -> tuple[str, ...]:
    return tuple(r[0] for r in conn.execute(sa.select(staff_groups.c.group_name)
                                            .where(staff_groups.c.staff_code == code)
                                            .order_by(staff_groups.c.group_name)))


def _permissions_of(conn: Connection, code: str) -> frozenset[str]:
    stmt = (sa.select(group_permissions.c.permission)
            .join(staff_groups, staff_groups.c.group_name == group_permissions.c.group_name)
            .where(staff_groups.c.staff_code == code))
    return frozenset(r[0] for r in conn.execute(stmt))


def get_staff(control: Engine, code: str) -> Staff | None:
    with control.connect() as conn:
        row = conn.execute(sa.select(staff).where(staff.c.code == code)).first()
        if row is None:
            return None
        return Staff(row.code, row.name, bool(row.active), as_utc(row.locked_until), _groups_of(conn, code),
                     _permissions_of(conn, code))


def list_staff(control: Engine) -> list[Staff]:
    with control.connect() as conn:
        codes = [r[0] for r in conn.execute(sa.select(staff.c.code).order_by(staff.c.code))]
    return [s for s in (get_staff(control, c) for c in codes) if s is not None]


def staff_count(control: Engine) -> int:
    with control.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(staff)).scalar_one())


def add_staff(control: Engine, code: str, name: str, pin: str, groups: list[str] | tuple[str, ...] = (),
              now: dt.datetime | None = None) -> Staff:
    _check_code(code)
    check_pin_policy(pin)
    now = now or utcnow()
    pin_hash = hash_secret(pin)
    with control.begin() as conn:
        if conn.execute(sa.select(staff.c.code).where(staff.c.code == code)).first():
            raise AccessError(f"staff {code} already exists")
        conn.execute(staff.insert().values(code=code, name=name, pin_hash=pin_hash, active=True, failed_pins=0,
                                           created_at=now, updated_at=now))
        for group in groups:
            _require_group(conn, group)
            conn.execute(staff_groups.insert().values(staff_code=code, group_name=group))
    log.info("staff=%s added in groups %s", code, ",".join(groups) or "-")
    return _must(control, code)


def set_pin(control: Engine, code: str, pin: str) -> None:
    check_pin_policy(pin)
    with control.begin() as conn:
        changed = conn.execute(staff.update().where(staff.c.code == code).values(
            pin_hash=hash_secret(pin), failed_pins=0, locked_until=None, updated_at=utcnow())).rowcount
    if not changed:
        raise AccessError(f"unknown staff {code}")


def set_active(control: Engine, code: str, active: bool) -> None:
    with control.begin() as conn:
        changed = conn.execute(staff.update().where(staff.c.code == code).values(
            active=active, updated_at=utcnow())).rowcount
        if not changed:
            raise AccessError(f"unknown staff {code}")
        if not active:
            _keep_an_admin(conn)


def unlock(control: Engine, code: str) -> None:
    with control.begin() as conn:
        if not conn.execute(staff.update().where(staff.c.code == code).values(
                failed_pins=0, locked_until=None, updated_at=utcnow())).rowcount:
            raise AccessError(f"unknown staff {code}")


def _must(control: Engine, code: str) -> Staff:
    found = get_staff(control, code)
    if found is None:
        raise AccessError(f"unknown staff {code}")
    return found


def _require_group(conn: Connection, group: str) -> None:
    if not conn.execute(sa.select(security_groups.c.name).where(security_groups.c.name == group)).first():
        raise AccessError(f"unknown security group {group} (create it with `cloudsync group add`)")


def _keep_an_admin(conn: Connection) -> None:
    """Refuse (rolling back) a change that would leave no active staff member holding cloud.admin."""
    stmt = (sa.select(sa.func.count(sa.distinct(staff.c.code)))
            .select_from(staff.join(staff_groups, staff_groups.c.staff_code == staff.c.code)
                         .join(group_permissions, group_permissions.c.group_name == staff_groups.c.group_name))
            .where(staff.c.active.is_(True), group_permissions.c.permission == "cloud.admin"))
    if not conn.execute(stmt).scalar_one():
        raise AccessError("refused: no active staff member would hold cloud.admin any more")


def add_group(control: Engine, name: str, description: str | None = None,
              permissions: list[str] | tuple[str, ...] = ()) -> None:
    _check_code(name)
    for p in permissions:
        _check_permission(p)
    with control.begin() as conn:
        if conn.execute(sa.select(security_groups.c.name).where(security_groups.c.name == name)).first():
            raise AccessError(f"security group {name} already exists")
        conn.execute(security_groups.insert().values(name=name, description=description, created_at=utcnow()))
        for p in permissions:
            conn.execute(group_permissions.insert().values(group_name=name, permission=p))


def grant(control: Engine, group: str, permissions: list[str] | tuple[str, ...]) -> None:
    for p in permissions:
        _check_permission(p)
    with control.begin() as conn:
        _require_group(conn, group)
        held = set(group_permissions_of(conn, group))
        for p in permissions:
            if p not in held:
                conn.execute(group_permissions.insert().values(group_name=group, permission=p))


def revoke(control: Engine, group: str, permissions: list[str] | tuple[str, ...]) -> None:
    for p in permissions:
        _check_permission(p)
    with control.begin() as conn:
        _require_group(conn, group)
        conn.execute(group_permissions.delete().where(group_permissions.c.group_name == group,
                                                      group_permissions.c.permission.in_(list(permissions))))
        if "cloud.admin" in permissions:
            _keep_an_admin(conn)


def group_permissions_of(conn: Connection, group: str) -> list[str]:
    return sorted(r[0] for r in conn.execute(sa.select(group_permissions.c.permission)
                                             .where(group_permissions.c.group_name == group)))


def set_membership(control: Engine, group: str, add: list[str] | tuple[str, ...] = (),
                   remove: list[str] | tuple[str, ...] = ()) -> None:
    with control.begin() as conn:
        _require_group(conn, group)
        for code in add:
            if not conn.execute(sa.select(staff.c.code).where(staff.c.code == code)).first():
                raise AccessError(f"unknown staff {code}")
            exists = conn.execute(sa.select(staff_groups.c.staff_code).where(
                staff_groups.c.staff_code == code, staff_groups.c.group_name == group)).first()
            if not exists:
                conn.execute(staff_groups.insert().values(staff_code=code, group_name=group))
        if remove:
            conn.execute(staff_groups.delete().where(staff_groups.c.group_name == group,
                                                     staff_groups.c.staff_code.in_(list(remove))))
            _keep_an_admin(conn)


@dataclass(frozen=True)
class Group:
    name: str
    description: str | None
    permissions: tuple[str, ...]
    members: tuple[str, ...]


def list_groups(control: Engine) -> list[Group]:
    with control.connect() as conn:
        out = []
        for row in conn.execute(sa.select(security_groups).order_by(security_groups.c.name)).all():
            members = tuple(r[0] for r in conn.execute(sa.select(staff_groups.c.staff_code).where(
                staff_groups.c.group_name == row.name).order_by(staff_groups.c.staff_code)))
            out.append(Group(row.name, row.description, tuple(group_permissions_of(conn, row.name)), members))
    return out


def get_group(control: Engine, name: str) -> Group:
    for g in list_groups(control):
        if g.name == name:
            return g
    raise AccessError(f"unknown security group {name}")


def init_admin(control: Engine, code: str, name: str, pin: str) -> Staff:
    """The first administrator, in an `administrators` group holding every permission."""
    if staff_count(control):
        raise AccessError("already initialised: staff exist; an administrator adds more with `cloudsync staff add`")
    with control.connect() as conn:
        has_group = conn.execute(sa.select(security_groups.c.name).where(security_groups.c.name == ADMIN_GROUP)
                                 ).first()
    if has_group:
        grant(control, ADMIN_GROUP, PERMISSIONS)
    else:
        add_group(control, ADMIN_GROUP, "Cloud administrators: every cloud permission", PERMISSIONS)
    return add_staff(control, code, name, pin, [ADMIN_GROUP])


# -- login ------------------------------------------------------------------------------------------

def authenticate(control: Engine, code: str, pin: str, now: dt.datetime | None = None) -> Staff:
    """The staff member if `pin` is theirs; AuthFailed otherwise (counting towards the lock)."""
    now = now or utcnow()
    with control.connect() as conn:
        row = conn.execute(sa.select(staff).where(staff.c.code == code)).first()
    if row is None:
        verify_secret(pin, _DUMMY_HASH)
        raise AuthFailed(code, "wrong staff code or PIN", reason="unknown staff code")
    state = LockState(int(row.failed_pins), as_utc(row.locked_until))
    if state.locked(now):
        until = state.locked_until.strftime("%H:%M:%S UTC") if state.locked_until else "?"
        raise AuthFailed(code, f"staff {code} is locked until {until} after {MAX_FAILED_PINS} wrong PINs",
                         reason="account locked")
    if not row.active:
        raise AuthFailed(code, f"staff {code} is disabled", reason="account disabled")
    if not verify_secret(pin, row.pin_hash):
        after = _record_failure(control, code, now)
        if after.locked(now):
            raise AuthFailed(code, f"wrong PIN; staff {code} is now locked for {LOCK_S // 60} minutes",
                             reason=f"wrong PIN ({MAX_FAILED_PINS}/{MAX_FAILED_PINS}): account locked")
        left = MAX_FAILED_PINS - after.failed_pins
        raise AuthFailed(code, "wrong staff code or PIN",
                         reason=f"wrong PIN ({after.failed_pins}/{MAX_FAILED_PINS}, {left} left before lock)")
    with control.begin() as conn:
        conn.execute(staff.update().where(staff.c.code == code).values(
            failed_pins=0, locked_until=None, last_login_at=now))
    return _must(control, code)


def _record_failure(control: Engine, code: str, now: dt.datetime) -> LockState:
    """Count a wrong PIN; the row is locked so racing logins each count."""
    with control.begin() as conn:
        stmt = sa.select(staff.c.failed_pins, staff.c.locked_until).where(staff.c.code == code)
        if conn.dialect.name != "sqlite":  # SQLite serialises writers by itself
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).one()
        after = LockState(int(row.failed_pins), as_utc(row.locked_until)).after_failure(now)
        conn.execute(staff.update().where(staff.c.code == code).values(
            failed_pins=after.failed_pins, locked_until=after.locked_until, updated_at=now))
    return after


def require_permission(member: Staff, permission: str) -> None:
    _check_permission(permission)
    if not member.can(permission):
        raise PermissionDenied(member.code, permission)
