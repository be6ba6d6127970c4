"""Errors of permitted-staff access, onboarding and grants; they extend the tree in `cloudsync.errors`.

    TerminalError
    └── AccessError                 the request is refused; the message says why
        ├── AuthFailed              unknown staff code, wrong PIN, disabled or locked account
        ├── PermissionDenied        the staff member's groups do not hold the permission
        ├── GrantRefused            a job message without a valid signed grant
        └── OnboardingRefused       unknown, expired or used registration, wrong code, bad venue
"""

from __future__ import annotations

from cloudsync.errors import TerminalError


class AccessError(TerminalError):
    """A refused request; `reason` is what the audit log records (may say more than the message)."""

    reason: str

    def __init__(self, message: str, **facts: object) -> None:
        facts.setdefault("reason", message)
        super().__init__(message, **facts)


class AuthFailed(AccessError):
    def __init__(self, staff: str, message: str, reason: str) -> None:
        super().__init__(message, staff=staff, reason=reason)


class PermissionDenied(AccessError):
    def __init__(self, staff: str, permission: str) -> None:
        super().__init__(
            f"staff {staff} lacks the permission {permission}; an administrator can grant it to one of "
            f"their security groups (`cloudsync group grant`)",
            staff=staff, permission=permission, reason=f"missing permission {permission}",
        )


class GrantRefused(AccessError):
    def __init__(self, job_id: object, reason: str) -> None:
        super().__init__(f"job {job_id}: message refused: {reason}", job_id=job_id, reason=reason)


class OnboardingRefused(AccessError):
    def __init__(self, customer_number: str, message: str, reason: str) -> None:
        super().__init__(message, customer_number=customer_number, reason=reason)
