"""Control-plane tables for permitted staff and onboarding: staff, security groups, their permissions,
and venue registrations waiting to be onboarded.

Like the clerk security groups of a POS back office, a permission is held by a group and a staff
member holds it through the groups they belong to. The audit log itself is `audit_log` in
`cloudsync.control.schema`; migration 0003 makes it append-only.
"""

from __future__ import annotations

import sqlalchemy as sa

from cloudsync.control.schema import metadata

staff = sa.Table(
    "staff",
    metadata,
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("pin_hash", sa.Text, nullable=False),  # scrypt$n$r$p$salt_hex$hash_hex (per-user salt)
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("failed_pins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", sa.DateTime(timezone=True)),
    sa.Column("last_login_at", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

security_groups = sa.Table(
    "security_groups",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("description", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

group_permissions = sa.Table(
    "group_permissions",
    metadata,
    sa.Column("group_name", sa.String(64), sa.ForeignKey("security_groups.name", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("permission", sa.String(64), primary_key=True),
)

staff_groups = sa.Table(
    "staff_groups",
    metadata,
    sa.Column("staff_code", sa.String(64), sa.ForeignKey("staff.code", ondelete="CASCADE"), primary_key=True),
    sa.Column("group_name", sa.String(64), sa.ForeignKey("security_groups.name", ondelete="CASCADE"),
              primary_key=True),
)

# One row per customer number: the newest registration replaces an older one (and its code).
venue_registrations = sa.Table(
    "venue_registrations",
    metadata,
    sa.Column("customer_number", sa.String(64), primary_key=True),
    sa.Column("company_name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("code_hash", sa.Text, nullable=False),  # the one-time code, hashed like a PIN
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True)),
    sa.Column("used_by", sa.String(64)),
    sa.Column("venue_id", sa.String(64)),
    sa.Column("registered_by", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
