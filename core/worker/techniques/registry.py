"""Where the worker finds how to apply a technique. Declarations (name, parameters, where a
technique applies) live in core/techniques/ and are read by the GUI and the CLI without torch;
the implementations here subclass them and add ``apply`` (and ``finalize``), so they may import
torch, ONNX Runtime or torchao freely."""

from __future__ import annotations

from typing import Any

from wattlab.core.techniques.base import Applied, Technique


class Implementation(Technique):
    """A technique the worker can run: its declaration plus what it does to the model."""

    def apply(self, ctx: Any, params: dict[str, Any]) -> Applied:
        raise NotImplementedError

    def finalize(self, ctx: Any, params: dict[str, Any], applied: Applied) -> None:
        """After training (e.g. make pruning masks permanent)."""


IMPLEMENTATIONS: dict[str, Implementation] = {}


def implements(cls: type[Implementation]) -> type[Implementation]:
    IMPLEMENTATIONS[cls.name] = cls()
    return cls
