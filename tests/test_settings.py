"""The settings file read in-process: bad values fall back per field (moved from
test_cli_engine.py, whose tests all start the CLI; these start nothing)."""

from __future__ import annotations

import os


def test_bad_settings_file_falls_back_to_defaults(tmp_path):
    from wattlab.core.settings import Settings, config_path

    p = config_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text('{"interval_s": "fast", "idle_s": 0.5, "region": "FR", "pue": true}')
    s = Settings.load()
    assert (s.interval_s, s.idle_s, s.region, s.pue) == (0.1, 0.5, "FR", 1.0)
    p.write_text("not json")
    assert Settings.load() == Settings()
    assert os.environ["WATTLAB_CONFIG_DIR"] in str(p)  # never the user's file


def test_settings_types_are_checked_per_field():
    from wattlab.core.settings import Settings, config_path

    p = config_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(
        '{"intensity_g_per_kwh": "lots", "price_per_kwh": 0.3, "data_dir": 5, '
        '"currency": "USD", "cooldown_s": 2}'
    )
    s = Settings.load()
    assert (s.intensity_g_per_kwh, s.price_per_kwh, s.data_dir, s.currency, s.cooldown_s) == (
        None,
        0.3,
        None,
        "USD",
        2.0,
    )
