"""Helpers shared by test modules (a test module imports these, never another test module)."""

from __future__ import annotations

from kgcurate import config
from kgcurate.context import execute_stage


def wat_cfg(lake_root: str, inputs: list[str], **wat) -> dict:
    """The default config for an ingest-wat run of ``inputs`` into ``lake_root``."""
    cfg = config.load(None)
    cfg["lake"] = lake_root
    cfg["wat"]["inputs"] = inputs
    cfg["wat"].update(wat)
    return cfg


def execute(stage, spark, cfg: dict, *args, **kwargs):
    """Run a stage module's ``execute`` in the shared session, as the CLI does (one context per run)."""
    return execute_stage(stage, cfg, spark, *args, **kwargs)
