"""The app's language for messages written for the CLI: core names its flags (``--text-column``);
a user of the window has never seen them, so each flag becomes the control that sets it."""

from __future__ import annotations

import re

# flag -> the control in the window that sets the same field
CONTROL_FOR_FLAG: dict[str, str] = {
    "--text-column": "the Text column picker",
    "--label-column": "the Label column picker",
    "--dataset": "the Dataset picker (Open CSV/JSONL...)",
    "--model": "the Model picker",
    "--mode": "the Mode picker",
    "--device": "the Device picker",
    "--batch-size": "Batch size",
    "--seq-len": "Sequence length",
    "--epochs": "Epochs",
    "--save-model": "the Save the trained model box",
    "--infer-batches": "Inference batches",
    "--repeats": "Repeats",
    "--queries": "RAG queries",
    "--repeat-rate": "RAG repeat rate",
    "--interval": "Sampling interval (Settings)",
    "--idle": "Idle baseline (Settings)",
    "--cooldown": "Cool-down (Settings)",
    "--min-measure": "Minimum measured duration (Settings)",
    "--carbon-intensity": "the carbon intensity override (Settings)",
    "--pue": "PUE (Settings)",
    "--price": "price per kWh (Settings)",
    "--region": "Carbon region (Settings)",
    "--show-output": "the Log tab",
}

_FLAG = re.compile(r"--[a-z][a-z0-9-]*")


def in_app_words(message: str) -> str:
    """``message`` with every flag the window has a control for named by that control; flags
    it has none for stay as they are (still true, and searchable in the README)."""
    return _FLAG.sub(lambda m: CONTROL_FOR_FLAG.get(m.group(0), m.group(0)), message)


# The Script workload's fields (core.run.script.FIELDS) -> the control that sets each
CONTROL_FOR_FIELD: dict[str, str] = {
    "command": "Script or command",
    "arguments": "Arguments",
    "folder": "Working folder",
    "compare": "Compare with",
}


def field_message(field: str, message: str) -> str:
    """Core's refusal of a Script workload, led by the control to fix: "Compare with: ..."."""
    control = CONTROL_FOR_FIELD.get(field)
    return f"{control}: {message}" if control else message
