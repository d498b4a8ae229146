"""Servable images for a generated sample (``kgcurate make-sample --image-base-url URL``).

The generated WAT pages link images on made-up ``.example`` hosts, which nothing can download. With a
base URL every image link a page has becomes ``URL/<file>``, ``<file>`` named by a hash of the link the
page would otherwise have had, and this module writes those files: small, deterministic, real JPEG and
PNG images (a few KB), so ``kgcurate download`` on the curated pairs stores real samples (the
docker-compose demo serves the folder with ``python -m http.server``). A few links are deliberately
left without a file (the server answers 404) or with bytes that are no image (``decode_error``), so a
demo download shows failures counted, not only successes.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

MISSING_PER_MILLE = 30  # of 1000 links: no file (404)
BROKEN_PER_MILLE = 20  # of 1000 links: a file that is not an image
SIZE = 64  # pixels; the download stage keeps it (never upscales), kgc-tiny trains at 32
SERVED_NAME = re.compile(r"[0-9a-f]{20}\.(?:jpg|png)")  # what served_name gives: the only files ever removed


@dataclass(frozen=True)
class ImagesWritten:
    """The image folder: files written as images, links left missing (404) and files left broken."""

    folder: str
    images: int
    missing: int
    broken: int
    bytes: int


def _digest(url: str) -> bytes:
    return hashlib.sha256(url.encode()).digest()


def served_name(url: str) -> str:
    """The file an image link is served as: a hash of the link, ``.jpg`` or ``.png`` as the link says."""
    path = url.split("?", 1)[0].lower()
    ext = "png" if path.endswith(".png") else "jpg"
    return f"{_digest(url).hex()[:20]}.{ext}"


def served_url(base_url: str, url: str) -> str:
    return f"{base_url.rstrip('/')}/{served_name(url)}"


def kind_of(name: str) -> str:
    """``image``, ``missing`` or ``broken``, from the name's hash (the same name, the same kind)."""
    n = int(name[:8], 16) % 1000
    return "missing" if n < MISSING_PER_MILLE else "broken" if n < MISSING_PER_MILLE + BROKEN_PER_MILLE else "image"


def render(name: str) -> bytes:
    """A ``SIZE`` px image drawn from the name's hash: a background, a rectangle and an ellipse in
    three colours, encoded as the name's format."""
    from PIL import Image, ImageDraw

    h = hashlib.sha256(name.encode()).digest()
    img = Image.new("RGB", (SIZE, SIZE), tuple(h[0:3]))
    draw = ImageDraw.Draw(img)
    x0, y0 = h[3] % (SIZE // 2), h[4] % (SIZE // 2)
    draw.rectangle((x0, y0, x0 + 8 + h[5] % (SIZE // 2), y0 + 8 + h[6] % (SIZE // 2)), fill=tuple(h[7:10]))
    cx, cy, r = h[10] % SIZE, h[11] % SIZE, 6 + h[12] % 16
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(h[13:16]))
    buf = io.BytesIO()
    if name.endswith(".png"):
        img.save(buf, "PNG", optimize=False)
    else:
        img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def write_images(folder: str | Path, names: set[str]) -> ImagesWritten:
    """Write the files for ``names`` into ``folder`` (created; a previous sample's files removed, and only
    those: files named as :func:`served_name` names them, so a user's own images in ``--images`` stay),
    leaving out the ``missing`` ones and writing the ``broken`` ones as bytes no decoder accepts."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("*.jpg"), *out.glob("*.png")]:
        if stale.name not in names and SERVED_NAME.fullmatch(stale.name) and stale.is_file():
            stale.unlink()
    counts = {"image": 0, "missing": 0, "broken": 0}
    size = 0
    for name in sorted(names):
        kind = kind_of(name)
        counts[kind] += 1
        if kind == "missing":
            (out / name).unlink(missing_ok=True)
            continue
        data = render(name) if kind == "image" else b"not an image: " + name.encode()
        (out / name).write_bytes(data)
        size += len(data)
    return ImagesWritten(str(out.resolve()), counts["image"], counts["missing"], counts["broken"], size)
