"""Verify and repair by key range: checksums computed in each database, bisected to small ranges,
and only the ranges that differ resynced (see DESIGN.md, "Verify and repair")."""
