"""The demo model's definition and where its trained weights are cached, without torch.

The GUI and the CLI read this to know whether the demo must train first (and with which recipe);
the worker builds and trains the model (models/demo.py). Trained weights are cached under
``DATA_DIR/models/demo-KEY`` where KEY hashes the model config, the dataset and the training
recipe, so changing any of them trains a new model instead of reusing a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from wattlab.core.models.demo_data import VERSION as DATA_VERSION
from wattlab.core.paths import models_dir

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


ENV_DEFINITION = "WATTLAB_DEMO_DEFINITION"


def demo_definition() -> dict[str, Any]:
    """The shipped definition, or the file named by $WATTLAB_DEMO_DEFINITION (a smaller demo for
    tests and slow machines; its different content gives it its own cache key)."""
    from wattlab.resources import RESOURCES_DIR

    path = os.environ.get(ENV_DEFINITION) or RESOURCES_DIR / "demo_model.json"
    return json.loads(Path(path).read_text())


def cache_key(
    recipe_overrides: dict[str, Any] | None = None,
    dataset: str = "demo",
    dataset_digest: str | None = None,
) -> str:
    d = demo_definition()
    recipe = {**d["recipe"], **(recipe_overrides or {})}
    blob = json.dumps(
        {
            "model": d["model"],
            "data": d["data"],
            "data_version": DATA_VERSION,
            "recipe": recipe,
            "dataset": dataset,
            "digest": dataset_digest,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_dir(key: str, data_dir: Path | None = None) -> Path:
    return models_dir(data_dir) / f"demo-{key}"


def is_cached(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
