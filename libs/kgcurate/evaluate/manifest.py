"""A train run's ``experiment_dir/manifest.json`` (written by ``kgcurate train``): model, model config
folder, checkpoint, ``loss_curve`` as [[step, loss], ...], samples seen, final loss. Read by evaluate
(which model) and the report (the loss curve)."""

from __future__ import annotations

import json
import os
from typing import Any

MANIFEST = "manifest.json"


def read_manifest(experiment_dir: str | None) -> dict[str, Any]:
    """The manifest as a dict; ``{}`` when the folder has none or it does not parse (a run killed
    before writing it), so callers fall back to the train_runs row."""
    if not experiment_dir:
        return {}
    try:
        with open(os.path.join(experiment_dir, MANIFEST), encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def loss_curve(manifest: dict[str, Any]) -> list[tuple[float, float]]:
    """(step, loss) points of the manifest's ``loss_curve``; malformed points are left out of the plot."""
    points = []
    for point in manifest.get("loss_curve") or []:
        try:
            step, loss = point
            points.append((float(step), float(loss)))
        except (TypeError, ValueError):
            continue
    return points
