"""Child-process step before identity starts: its keys, made on first start, checked after.

``python -m mesh.runtime._identity_keys`` runs with the identity service's
environment (``BANKMESH_IDENTITY_KEY_DIR``, ``BANKMESH_IDENTITY_DATA_KEYS``)
and calls the identity service's own start-up code for its keys
(``services.identity.app.signing_keys`` and ``data_keyring``): an empty
directory gets its first signing key, data key and blind-index key, random
from the operating system, 0600 files in a 0700 directory; existing keys are
never replaced, only checked the way the service checks them (no placeholder,
no file or directory others can read). So a bad key stops ``bankmesh up``
with the reason before the service would, and the service itself never
starts on an empty directory.

A child process, like migrations: the identity code stays out of the
supervisor.
"""

from __future__ import annotations

import logging
import os
import sys


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from mesh.config import ServiceEnvironment
    from services.identity.app import IdentityConfig, data_keyring, signing_keys

    env = ServiceEnvironment.from_env("identity")
    try:
        config = IdentityConfig.from_env(env)
        signing_keys(config.key_dir, insecure_dev=env.insecure_dev)
        data_keyring(config.data_key_dir, os.environ, insecure_dev=env.insecure_dev)
    except SystemExit as exc:  # identity's UnsafeConfiguration, with its reason
        print(exc, file=sys.stderr, flush=True)
        return 1
    print(f"identity keys ready in {config.key_dir} and {config.data_key_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
