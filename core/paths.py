"""Where WattLab keeps things. Nobody else builds these paths, so the worker can find its caches
without importing the store, and a test can move everything with two environment variables."""

from __future__ import annotations

import os
from pathlib import Path

ENV_DATA_DIR = "WATTLAB_DATA_DIR"
ENV_CONFIG_DIR = "WATTLAB_CONFIG_DIR"


def data_dir() -> Path:
    """Runs database, trained demo weights, exit heads, embedding caches."""
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("wattlab", appauthor=False))


def config_dir() -> Path:
    """settings.json."""
    env = os.environ.get(ENV_CONFIG_DIR)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("wattlab", appauthor=False))


def models_dir(base: Path | None = None) -> Path:
    """Models WattLab trains itself (the demo classifier, the RAG demo's encoder and generator)."""
    return (base or data_dir()) / "models"


def exit_heads_dir() -> Path:
    return data_dir() / "exit-heads"


def rag_embeddings_db() -> Path:
    return data_dir() / "rag" / "embeddings.sqlite"
