"""Signed job grants: proof that a job's messages come from cloudsync itself, not from whoever can
write into Redis.

A grant is `v1.<payload>.<mac>`: the payload (job, venue, action, staff, expiry) as base64url JSON
and an HMAC-SHA256 over it with the server secret. It is signed when a job is created (stored on
`jobs.grant`), travels in every message of the job, and a worker checks it before doing any work; a
message without a valid grant is refused and audited. The secret is `secret_key` from the settings,
or a random key generated on first use and kept in `HOME/secret.key` (mode 0600). It is never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from cloudsync.access import audit
from cloudsync.access.errors import GrantRefused
from cloudsync.control import jobs as jobrepo
from cloudsync.errors import ConfigError, UnknownJob
from cloudsync.settings import Settings

log = logging.getLogger(__name__)

VERSION = "v1"
GRANT_TTL_S = 3 * 86400  # a job resumed later gets a fresh grant from whoever resumes it
RENEW_BEFORE_S = 3600  # dispatching with less validity left than this signs a new grant first
SYSTEM_STAFF = "system"
SECRET_FILE = "secret.key"
_secrets: dict[str, bytes] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Claims:
    job: int
    venue: str
    action: str
    staff: str
    exp: int  # expiry, seconds since the epoch (UTC)


def server_secret(settings: Settings) -> bytes:
    """The signing key: configured, or generated once per HOME and kept there with mode 0600."""
    if settings.secret_key:
        if len(settings.secret_key) < 16:
            raise ConfigError("CLOUDSYNC_SECRET_KEY", "must have at least 16 characters")
        return settings.secret_key.encode()
    path = settings.home_path / SECRET_FILE
    key = str(path)
    with _lock:
        if key not in _secrets:
            _secrets[key] = _load_or_create(path)
        return _secrets[key]


def _load_or_create(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        log.info("generated a new grant signing key in %s", path.parent)
    for _ in range(50):  # another process may have created the file a moment ago and not written it yet
        text = path.read_text().strip()
        if text:
            return text.encode()
        time.sleep(0.02)
    raise ConfigError("CLOUDSYNC_SECRET_KEY", f"empty and {path} holds no key")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: bytes, claims: Claims) -> str:
    payload = _b64(json.dumps(claims.__dict__, sort_keys=True, separators=(",", ":")).encode())
    mac = hmac.new(secret, f"{VERSION}.{payload}".encode(), hashlib.sha256).digest()
    return f"{VERSION}.{payload}.{_b64(mac)}"


def verify(secret: bytes, token: object, *, job: int, venue: str, action: str, staff: str | None = None,
           now_s: float | None = None) -> Claims:
    """The grant's claims if it is signed with `secret`, unexpired and for exactly this job; else GrantRefused."""
    if not token or not isinstance(token, str):
        raise GrantRefused(job, "no grant")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise GrantRefused(job, "malformed grant")
    try:
        mac = _unb64(parts[2])
        expected = hmac.new(secret, f"{VERSION}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            raise GrantRefused(job, "bad grant signature")
        data: dict[str, Any] = json.loads(_unb64(parts[1]))
        claims = Claims(int(data["job"]), str(data["venue"]), str(data["action"]), str(data["staff"]),
                        int(data["exp"]))
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise GrantRefused(job, "malformed grant") from None
    if (claims.job, claims.venue, claims.action) != (int(job), venue, action):
        raise GrantRefused(job, f"grant is for job {claims.job} {claims.action} of venue {claims.venue}")
    if staff is not None and claims.staff != staff:
        raise GrantRefused(job, f"grant was signed for staff {claims.staff}, the job was requested by {staff}")
    if (time.time() if now_s is None else now_s) >= claims.exp:
        raise GrantRefused(job, "grant expired")
    return claims


def job_action(kind: str) -> str:
    return f"resync.{kind}"


def issue_job_grant(settings: Settings, control: Engine, job_id: int, ttl_s: int = GRANT_TTL_S,
                    job: jobrepo.Job | None = None) -> str:
    """Sign a grant for the job as its requester and store it on the job row (`job`: as just read)."""
    job = jobrepo.job_or_read(control, job_id, job)
    claims = Claims(job.id, job.venue_id, job_action(job.kind), job.requested_by or SYSTEM_STAFF,
                    int(time.time()) + ttl_s)
    token = sign(server_secret(settings), claims)
    jobrepo.set_job(control, job_id, None, grant=token)
    log.info("venue=%s job=%s grant signed for staff %s (%s)", job.venue_id, job_id, claims.staff, claims.action)
    return token


def job_grant(settings: Settings, control: Engine, job_id: int, job: jobrepo.Job | None = None) -> str:
    """The job's stored grant, signed anew when it is missing or close to expiry (dispatching is trusted).

    `job`: the job as the caller just read it, if it did.
    """
    job = jobrepo.job_or_read(control, job_id, job)
    if job.grant:
        try:
            verify(server_secret(settings), job.grant, job=job.id, venue=job.venue_id, action=job_action(job.kind),
                   staff=job.requested_by or SYSTEM_STAFF, now_s=time.time() + RENEW_BEFORE_S)
            return job.grant
        except GrantRefused:
            pass
    return issue_job_grant(settings, control, job_id, job=job)


def check_job_grant(settings: Settings, control: Engine, job_id: int, grant: object, task: str,
                    job: jobrepo.Job | None = None) -> Claims:
    """A worker's check before any work: GrantRefused (audited as refused) unless the grant is valid.

    `job`: the job as the caller already read it (saves a round trip per chunk).
    """
    try:
        if job is None or job.id != int(job_id):
            job = jobrepo.get_job(control, int(job_id))
    except (UnknownJob, ValueError, TypeError):
        audit.record(control, task, "refused", reason=f"message for unknown job {job_id!r}",
                     details={"task": task})
        raise GrantRefused(job_id, "unknown job") from None
    try:
        return verify(server_secret(settings), grant, job=job.id, venue=job.venue_id, action=job_action(job.kind),
                      staff=job.requested_by or SYSTEM_STAFF)
    except GrantRefused as err:
        audit.record(control, task, "refused", staff=None, venue_id=job.venue_id, job_id=job.id,
                     reason=str(err.reason), details={"task": task})
        log.warning("venue=%s job=%s %s message refused: %s", job.venue_id, job.id, task, err.reason)
        raise
