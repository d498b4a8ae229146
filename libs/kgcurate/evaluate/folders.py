"""Labelled image folders, ``DIR/<class>/<image>`` (the ImageFolder layout of ImageNet, iNat and the
offline sets): the file list and class names come from torchvision's folder scan; images are opened
one by one so an unreadable file is counted and reported, never a crash and never silently skipped.

Class names, in sorted folder order: ``DIR/classnames.txt`` (one per line) when present; else the
ImageNet names of open_clip when the folders are the 1000 ImageNet WordNet ids, or some of them (ImageNet-R,
ImageNet-A, a subset: each id's name through ImageNet-1k's sorted id list, from timm); the species' binomial
(genus and epithet) when they are iNaturalist 2021's ``id_kingdom_..._genus_epithet``; else the folder
names with ``_`` as spaces.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import IO, Any

from PIL import Image

from kgcurate.errors import UserError

CLASSNAMES_FILE = "classnames.txt"
_WNID = re.compile(r"n\d{8}")
# iNaturalist 2021: "00000_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Lumbricus_terrestris", an id
# and the seven ranks kingdom .. species epithet; the prompt's name is the binomial, "Lumbricus terrestris"
_INAT = re.compile(r"\d+(?:_[^_]+){5}_([^_]+)_([^_]+)")


@dataclass(frozen=True)
class LabelledFolder:
    """What a folder holds: (path, class index) per image and the class names, by index."""

    root: str
    samples: list[tuple[str, int]]
    classnames: list[str]
    folders: list[str] = field(default_factory=list)

    @property
    def empty_classes(self) -> list[str]:
        """Class folders without an image: still classes the model can predict, scored on no image."""
        found = {label for _, label in self.samples}
        return [f for i, f in enumerate(self.folders) if i not in found]


def _no_images(root: str) -> UserError:
    return UserError(f"evaluate: dataset folder {root} holds no images in class folders: lay it out as "
                     "DIR/<class>/<image>.jpg|png")


def _class_folders(root: str) -> list[str]:
    from torchvision.datasets.folder import find_classes

    if not os.path.isdir(root):
        raise UserError(f"evaluate: dataset folder {root} does not exist: pass a folder laid out as "
                        "DIR/<class>/<image>, or digits / skimage for the offline sets")
    try:
        return find_classes(root)[0]
    except FileNotFoundError:  # no class folder at all
        raise _no_images(root) from None


def check_folder(root: str) -> None:
    """Before the model loads: one line for a folder that is missing or has no image in any class folder
    (it stops at the first image found). Empty class folders beside others with images are fine
    (see :func:`read_folder`)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

    for folder in _class_folders(root):
        for _, _, names in os.walk(os.path.join(root, folder), followlinks=True):
            if any(has_file_allowed_extension(n, IMG_EXTENSIONS) for n in names):
                return
    raise _no_images(root)


def read_folder(root: str) -> LabelledFolder:
    """Scan ``root``; a path that is not such a folder, or has no image, is one :class:`UserError` line.
    A class folder without images stays a class (a candidate the model can predict, scored on no image):
    refusing it threw away a whole evaluation after the model had loaded and earlier sets were scored."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    folders = _class_folders(root)
    samples = make_dataset(root, {f: i for i, f in enumerate(folders)}, extensions=IMG_EXTENSIONS,
                           allow_empty=True)
    if not samples:
        raise _no_images(root)
    return LabelledFolder(root, list(samples), classnames_of(root, folders), folders)


def classnames_of(root: str, folders: list[str]) -> list[str]:
    """Human class names for the prompts, one per folder (see the module docstring)."""
    listed = os.path.join(root, CLASSNAMES_FILE)
    if os.path.isfile(listed):
        with open(listed, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
        if len(names) != len(folders):
            raise UserError(f"evaluate: {listed} lists {len(names)} class names for {len(folders)} class folders: "
                            "give one name per folder, in sorted folder order")
        return names
    if folders and all(_WNID.fullmatch(f) for f in folders):
        return _imagenet_names(root, folders)
    if folders and all(_INAT.fullmatch(f) for f in folders):
        return [" ".join(_INAT.fullmatch(f).groups()) for f in folders]
    return [f.replace("_", " ") for f in folders]


def _imagenet_names(root: str, folders: list[str]) -> list[str]:
    """open_clip's ImageNet class names of WordNet-id folders: all 1000 in order, or any of them (200 for
    ImageNet-R and -A) by its place in ImageNet-1k's sorted ids. Prompting "a photo of a n01443537." scores
    about chance, so a WordNet id outside ImageNet-1k is one line asking for the names."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    if len(folders) == len(IMAGENET_CLASSNAMES):
        return list(IMAGENET_CLASSNAMES)
    from timm.data import ImageNetInfo  # open_clip's dependency: ImageNet-1k's synset ids, sorted

    index = {wnid: i for i, wnid in enumerate(ImageNetInfo().label_names())}
    unknown = [f for f in folders if f not in index]
    if unknown:
        raise UserError(f"evaluate: {root}: class folder {unknown[0]} is a WordNet id outside ImageNet-1k "
                        f"({len(unknown)} such): write {CLASSNAMES_FILE} there with one name per folder")
    return [IMAGENET_CLASSNAMES[index[f]] for f in folders]


def open_image(source: str | IO[bytes]) -> tuple[Image.Image | None, str | None]:
    """The image (a path or an open binary file) as RGB, or None and why it could not be read. Any
    exception: Pillow raises more than OSError and ValueError for damaged data (SyntaxError for a bad
    PNG chunk, TypeError for some TIFFs), and one such file must not end an evaluation."""
    try:
        with Image.open(source) as im:
            return im.convert("RGB"), None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:200]}"


class TransformedFolder:
    """A map-style dataset over a folder's samples: (tensor or None, label, path, error) per item, so a
    DataLoader worker hands unreadable files back to the caller instead of raising."""

    def __init__(self, folder: LabelledFolder, transform: Any) -> None:
        self.folder, self.transform = folder, transform

    def __len__(self) -> int:
        return len(self.folder.samples)

    def __getitem__(self, i: int) -> tuple[Any, int, str, str | None]:
        path, label = self.folder.samples[i]
        image, error = open_image(path)
        return (self.transform(image) if image is not None else None), label, path, error
