-- The compose PostgreSQL holds two databases: the cloud copy (POSTGRES_DB, created by the image) and
-- cloudsync's control database. Control tables and a venue's tables never share a namespace.
CREATE DATABASE cloudsync_control OWNER cloudsync;
