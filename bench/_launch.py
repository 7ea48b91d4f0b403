"""``python -m bench._launch CONFIG_JSON``: ``bankmesh up`` as the bench runs it.

The same ``mesh.runtime.launcher.launch`` the CLI calls, in a process of its
own (it installs signal handlers and watches until SIGTERM), with the
database, Redis, data directory and replicas the bench chose.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mesh.runtime.launcher import DEFAULT_SERVICES, MeshConfig, launch, with_replicas


def main(argv: list[str]) -> int:
    config = json.loads(argv[0])
    return launch(
        MeshConfig(
            data_dir=Path(config["data_dir"]),
            database_url=config["database_url"],
            redis_url=config["redis_url"],
            services=with_replicas(DEFAULT_SERVICES, config["replicas"]),
            ready_timeout=120.0,
        )
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
