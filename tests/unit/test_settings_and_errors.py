"""Settings validation names the bad setting; errors survive pickling; DSNs are masked."""

from __future__ import annotations

import pickle

import pytest

from cloudsync.dsn import mask_dsn, parse_dsn
from cloudsync.errors import BadDSN, ChunkFailed, ConfigError, Paused, SourceUnavailable, TransientError
from cloudsync.settings import load_settings


def test_defaults_are_embedded(tmp_path):
    s = load_settings(environ={"CLOUDSYNC_HOME": str(tmp_path)})
    assert s.embedded
    assert s.control_dsn == f"sqlite:///{tmp_path / 'control.db'}"
    assert s.cloud_dsn.endswith("cloud.db")


@pytest.mark.parametrize(("env", "named"), [
    ({"CLOUDSYNC_CHUNK_ROWS": "lots"}, "CLOUDSYNC_CHUNK_ROWS"),
    ({"CLOUDSYNC_CHUNK_ROWS": "0"}, "CLOUDSYNC_CHUNK_ROWS"),
    ({"CLOUDSYNC_LOG_LEVEL": "LOUD"}, "CLOUDSYNC_LOG_LEVEL"),
    ({"CLOUDSYNC_VISIBILITY_TIMEOUT_S": "90"}, "CLOUDSYNC_VISIBILITY_TIMEOUT_S"),
    ({"CLOUDSYNC_CHUNKROWS": "5"}, "CLOUDSYNC_CHUNKROWS"),
])
def test_bad_settings_name_the_variable(env, named):
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    assert str(info.value).startswith(named)


def test_config_file_and_environment(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('chunk_rows = 123\nlog_level = "DEBUG"\n')
    s = load_settings(environ={"CLOUDSYNC_CONFIG": str(f), "CLOUDSYNC_LOG_LEVEL": "WARNING"})
    assert s.chunk_rows == 123 and s.log_level == "WARNING"


def test_describe_masks_secrets():
    s = load_settings(environ={"CLOUDSYNC_REDIS_URL": "redis://:hunter2@cache:6379/0",
                               "CLOUDSYNC_CLOUD_URL": "postgresql://u:s3cret@db/cloud",
                               "CLOUDSYNC_SECRET_KEY": "abc"})
    text = repr(s.describe())
    assert "hunter2" not in text and "s3cret" not in text and "'abc'" not in text


@pytest.mark.parametrize("dsn", [
    "postgresql+psycopg://sync:p%40ss@db.example/venue",
    "mssql+pyodbc://sa:Str0ng!Pass@venue:1433/pos?driver=ODBC+Driver+18+for+SQL+Server",
    "mysql+pyodbc:///?odbc_connect=DRIVER%3D%7BMariaDB%7D%3BUID%3Droot%3BPWD=topsecret%3B",
    "Driver={ODBC Driver 18};Server=x;UID=sa;PWD={se;cret};",
    "postgresql+psycopg://sync:my secret@db.example/venue",  # SQLAlchemy renders a space as it is
])
def test_mask_dsn_hides_passwords(dsn):
    masked = mask_dsn(dsn)
    for secret in ("p%40ss", "Str0ng!Pass", "topsecret", "se;cret", "my secret", "secret@"):
        assert secret not in masked


@pytest.mark.parametrize(("dsn", "problem"), [
    ("not a url", "not a database URL"),
    ("oracle://u:pw@h/db", "unsupported driver"),
    ("mssql+pyodbc://u:pw@/db", "no host"),
    ("mysql+pymysql://u:pw@h/db", None),
])
def test_parse_dsn(dsn, problem):
    if problem is None:
        parse_dsn(dsn, "s")
        with pytest.raises(BadDSN, match="cannot be used as a target"):
            parse_dsn(dsn, "t")
        return
    with pytest.raises(BadDSN, match=problem) as info:
        parse_dsn(dsn)
    assert "pw@" not in str(info.value)


@pytest.mark.parametrize("err", [
    Paused("v1", "re-indexing", 5.0),
    SourceUnavailable("v1", "connection refused"),
    ChunkFailed("lines", (1, 2), (3, 4), "bad value"),
    ConfigError("CLOUDSYNC_X", "bad"),
])
def test_errors_survive_pickling_with_their_facts(err):
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err) and str(back) == str(err) and back.facts == err.facts
    assert isinstance(Paused("v", "r", 1), TransientError)
