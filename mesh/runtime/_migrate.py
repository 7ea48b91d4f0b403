"""Child-process entry point that runs one service's migrations.

``python -m mesh.runtime._migrate services.account.app`` imports the module
and calls its ``migrate(database_url)`` with ``BANKMESH_DATABASE_URL``. The
URL travels in the environment rather than argv because argv, password
included, is visible to every user through ps.
"""

from __future__ import annotations

import importlib
import os
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m mesh.runtime._migrate <module>", file=sys.stderr)
        return 2
    module_name = argv[1]
    database_url = os.environ.get("BANKMESH_DATABASE_URL")
    if not database_url:
        print("BANKMESH_DATABASE_URL is not set", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not f"{module_name}.".startswith(f"{exc.name}."):
            raise  # the module exists but one of its imports is missing: show where
        print(f"No module named {exc.name!r}: cannot import {module_name}", file=sys.stderr)
        return 2
    migrate = getattr(module, "migrate", None)
    if not callable(migrate):
        print(f"{module_name} has no migrate(database_url) function", file=sys.stderr)
        return 2
    migrate(database_url)
    print(f"{module_name}.migrate finished", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
