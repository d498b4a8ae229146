"""Offline labelled sets for tests and smoke runs, from images that PyPI packages ship (no network):
scikit-learn's 8x8 handwritten digits and scikit-image's sample photos, written as PNGs in the
``DIR/<class>/<image>`` layout so :func:`kgcurate.evaluate.folders.read_folder` reads them like any
folder. Deterministic: the same arguments write the same files.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# skimage.data loader -> class folder (its name, "_" as spaces, is the prompt's class name)
SKIMAGE_PHOTOS = {
    "astronaut": "astronaut", "coffee": "cup_of_coffee", "chelsea": "cat", "rocket": "rocket",
    "camera": "photographer", "coins": "coins", "moon": "moon", "horse": "horse", "clock": "clock",
    "hubble_deep_field": "galaxies", "brick": "brick_wall", "grass": "grass", "gravel": "gravel",
    "text": "text", "retina": "retina",
}
OFFLINE = ("digits", "skimage")


def write_digits(out: str, per_class: int | None = None, size: int = 32) -> str:
    """sklearn's digits (1,797 images of 8x8 grey levels 0..16) as ``out/<digit name>/NNNN.png``,
    upscaled to ``size`` pixels; ``per_class`` keeps the first that many of each digit."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    seen = dict.fromkeys(range(10), 0)
    for i, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
        label = int(target)
        if per_class is not None and seen[label] >= per_class:
            continue
        seen[label] += 1
        grey = (255 - pixels * (255 / 16)).clip(0, 255).astype(np.uint8)  # dark ink on white, as written
        folder = os.path.join(out, DIGIT_NAMES[label])
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(grey, "L").resize((size, size), Image.Resampling.NEAREST).save(
            os.path.join(folder, f"{i:04d}.png"))
    return out


def write_skimage(out: str, max_side: int = 512) -> str:
    """scikit-image's sample photos, one class folder each (``out/cat/chelsea.png``), the larger ones
    scaled down to ``max_side`` (models see 224 px or less; the 1411 px retina costs seconds to write)."""
    import skimage.data

    for loader, name in SKIMAGE_PHOTOS.items():
        array = np.asarray(getattr(skimage.data, loader)())
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        image = Image.fromarray(array).convert("RGB")
        image.thumbnail((max_side, max_side))
        image.save(os.path.join(folder, f"{loader}.png"))
    return out


def write_offline(name: str, out: str, per_class: int | None = None) -> str:
    """Write the offline set ``name`` (``digits`` or ``skimage``) into ``out``; returns ``out``."""
    if name == "digits":
        return write_digits(out, per_class)
    if name == "skimage":
        return write_skimage(out)
    raise ValueError(f"no offline set {name!r}: one of {', '.join(OFFLINE)}")
