""" "Recommended for this machine" is decided in one place, from detected CPU features."""

from __future__ import annotations

import pytest

from wattlab.core import hardware
from wattlab.core.cli.session import demo_preset
from wattlab.core.techniques import recommend


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            {"avx512_bf16", "avx512f"},
            {"name": "mixed-precision", "params": {"dtype": "bf16", "mode": "cast"}},
        ),
        (
            {"amx_bf16", "amx_tile"},
            {"name": "mixed-precision", "params": {"dtype": "bf16", "mode": "cast"}},
        ),
        ({"avx2"}, {"name": "quantization", "params": {"backend": "ort"}}),
    ],
)
def test_the_choice_follows_the_detected_cpu_and_the_cli_demo_uses_it(monkeypatch, flags, expected):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
    rec = recommend.recommended()
    assert rec.techniques()[0]["name"] == expected["name"]
    assert expected["params"].items() <= rec.techniques()[0]["params"].items()
    assert demo_preset() == list(rec.cli_texts)
    assert rec.reason
