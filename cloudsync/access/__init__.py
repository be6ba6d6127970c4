"""Permitted staff only: staff and security groups (`staff`), the append-only audit log (`audit`), signed
job grants (`grants`) and the pre-resync summary (`preview`).

The engine side of issue 5; the CLI side is `cloudsync/cli/auth.py` (the `require(permission)` check)
and the `init`, `staff`, `group`, `audit`, `venue register` and `onboard` commands.
"""
