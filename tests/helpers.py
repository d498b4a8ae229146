"""Helpers shared by test modules (a test module imports these, never another test module)."""

from __future__ import annotations

from kgcurate import config


def wat_cfg(lake_root: str, inputs: list[str], **wat) -> dict:
    """The default config for an ingest-wat run of ``inputs`` into ``lake_root``."""
    cfg = config.load(None)
    cfg["lake"] = lake_root
    cfg["wat"]["inputs"] = inputs
    cfg["wat"].update(wat)
    return cfg
