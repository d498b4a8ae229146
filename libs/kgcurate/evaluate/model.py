"""Loading an open_clip checkpoint for evaluation, and the device choice."""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass
from typing import Any

from kgcurate.errors import UserError
from kgcurate.train.trainer_args import OPEN_CLIP_PREFIXES, known_model


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
    if model_config_dir and not os.path.isdir(model_config_dir):
        raise UserError(f"evaluate: model config folder {model_config_dir} does not exist "
                        "(--model-config-dir, or the train run's manifest)")
    if model.startswith(OPEN_CLIP_PREFIXES):
        raise UserError(f"evaluate: model {model!r} names its own weights, which open_clip loads instead of "
                        "--checkpoint: pass the architecture's name (e.g. ViT-B-32, with --model-config-dir for "
                        "a config of your own)")
    if not known_model(model, model_config_dir, schemas=False):
        raise UserError(f"evaluate: model {model!r} has no open_clip config: pass --model-config-dir with "
                        f"{model}.json, or one of open_clip's models")
    logging.disable(logging.INFO)  # open_clip narrates every load step at INFO on the root logger
    try:
        clip, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=checkpoint, device=device)
        tokenizer = open_clip.get_tokenizer(model)
    except (pickle.UnpicklingError, EOFError):  # EOFError: an empty file
        raise UserError(f"evaluate: checkpoint {checkpoint} is not a torch checkpoint (or holds more than weights): "
                        "pass the .pt open_clip_train saved, a state dict or .safetensors") from None
    except (RuntimeError, KeyError, OSError, ValueError) as exc:
        why = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2]) or type(exc).__name__
        raise UserError(f"evaluate: checkpoint {checkpoint} does not load as {model}: {why[:240]} (is --model the "
                        "model it was trained as?)") from None
    finally:
        logging.disable(logging.NOTSET)
    clip.eval()
    return LoadedModel(model, clip, preprocess, tokenizer, device)
