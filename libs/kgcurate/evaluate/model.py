"""Loading an open_clip checkpoint for evaluation, and the device choice."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from kgcurate.errors import UserError


@dataclass
class LoadedModel:
    """The model in eval mode with its image transform and tokenizer, on ``device``."""

    name: str
    model: Any
    preprocess: Any
    tokenizer: Any
    device: str


def pick_device(device: str) -> str:
    """``auto``: cuda when torch sees a GPU, else cpu; ``cpu`` / ``cuda`` / ``cuda:N`` as given."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"evaluate: --device {device} but torch sees no GPU here: use --device cpu or auto")
    return device


def load(model: str, checkpoint: str, model_config_dir: str | None, device: str) -> LoadedModel:
    """``open_clip.create_model_and_transforms(model, pretrained=checkpoint)`` after registering
    ``model_config_dir`` (a folder of ``<model>.json`` configs, e.g. conf/models)."""
    import open_clip

    if not os.path.isfile(checkpoint):
        raise UserError(f"evaluate: checkpoint {checkpoint} does not exist: pass --checkpoint FILE or "
                        "--train-run-id of a finished train run")
    if model_config_dir:
        if not os.path.isdir(model_config_dir):
            raise UserError(f"evaluate: model config folder {model_config_dir} does not exist "
                            "(--model-config-dir, or the train run's manifest)")
        open_clip.add_model_config(model_config_dir)
    if model not in open_clip.list_models():
        raise UserError(f"evaluate: model {model!r} has no open_clip config: pass --model-config-dir with "
                        f"{model}.json, or one of open_clip's models")
    try:
        clip, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=checkpoint, device=device)
    except (RuntimeError, KeyError, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"evaluate: checkpoint {checkpoint} does not load as {model}: {first}") from None
    clip.eval()
    return LoadedModel(model, clip, preprocess, open_clip.get_tokenizer(model), device)
