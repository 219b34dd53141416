"""The locations of the database, the configuration and the pair sets.

Each location has one environment variable that moves it, so tests and users
can keep separate experiments apart.
"""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "wordorder-tui"


def default_db_path() -> Path:
    """Return `WORDORDER_DB`, else `wordorder.db` in the user data directory."""
    override = os.environ.get("WORDORDER_DB")
    if override:
        return Path(override).expanduser()
    import platformdirs  # imported here: it costs start-up time when the variable is set

    return Path(platformdirs.user_data_dir(APP_NAME)) / "wordorder.db"


def default_config_path() -> Path:
    """Return `WORDORDER_CONFIG`, else `config.toml` in the user config directory."""
    override = os.environ.get("WORDORDER_CONFIG")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def default_pairs_dir() -> Path:
    """Return `WORDORDER_PAIRS`, else `./pairs`, else the `pairs/` folder of this checkout."""
    override = os.environ.get("WORDORDER_PAIRS")
    if override:
        return Path(override).expanduser()

    here = Path.cwd() / "pairs"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parent.parent / "pairs"
