"""The chaos suite: faults injected into real services while a full resync runs (see docs/reliability.md)."""
