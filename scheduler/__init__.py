"""Periodic work: incremental syncs per venue, the resync reaper and the nightly verification hook."""
