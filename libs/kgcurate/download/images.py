"""Turn downloaded bytes into the training JPEG: decode with Pillow whatever the Content-Type claimed,
refuse decompression bombs from the header alone, convert to RGB, shrink, re-encode at a fixed quality.

Pure (bytes in, bytes out) and deterministic for a given Pillow version.
"""

from __future__ import annotations

import functools
import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps

from kgcurate.download import status as st

RESIZE_MODES = ("keep_ratio_largest", "keep_ratio", "no")
# The raster formats a browser shows in an <img> (TIFF: Safari; img2dataset keeps it too), which is what a
# page's image links point at. Pillow opens some 40 formats; the rest stay closed: EPS hands the body (a
# PostScript program from the web) to Ghostscript with no timeout, and the rarer decoders are attack
# surface no web image needs.
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "AVIF", "BMP", "ICO", "TIFF")
_TURNED = frozenset(range(2, 9))  # EXIF orientations that flip or rotate


@dataclass(frozen=True)
class ImageConfig:
    """How a downloaded image becomes a sample.

    ``resize_mode``: ``keep_ratio_largest`` shrinks so the longer side is at most ``image_size`` (the
    whole image kept); ``keep_ratio`` so the shorter side is ``image_size`` (what a center-crop
    training transform wants); ``no`` keeps the size. ``upscale=False`` never enlarges a smaller image.
    """

    image_size: int = 256
    resize_mode: str = "keep_ratio_largest"
    upscale: bool = False
    jpeg_quality: int = 95
    max_pixels: int = 89_478_485  # Pillow's own MAX_IMAGE_PIXELS: above it, too_large before decoding

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if self.image_size < 1 or self.max_pixels < 1 or not 1 <= self.jpeg_quality <= 100:
            raise ValueError("image_size and max_pixels must be >= 1, jpeg_quality in 1..100")


@dataclass(frozen=True)
class ProcessedImage:
    jpeg: bytes
    width: int  # of the JPEG written
    height: int
    original_width: int  # as stored in the downloaded file
    original_height: int
    sha256: str  # hex digest of the downloaded bytes, before any processing


class ImageError(Exception):
    """The bytes cannot become a sample; ``status`` is decode_error or too_large."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def target_size(width: int, height: int, config: ImageConfig) -> tuple[int, int]:
    """The output size for an image of ``width`` x ``height`` under ``config`` (aspect ratio kept)."""
    if config.resize_mode == "no":
        return width, height
    side = max(width, height) if config.resize_mode == "keep_ratio_largest" else min(width, height)
    scale = config.image_size / side
    if scale >= 1 and not config.upscale:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def process_image(data: bytes, config: ImageConfig | None = None, sha256: str | None = None) -> ProcessedImage:
    """Decode, check, convert, resize and JPEG-encode ``data``; raises :class:`ImageError`. ``sha256``: the
    hex digest of ``data`` when the caller already has it (a shard hashes every body it reads)."""
    config = config or ImageConfig()
    digest = sha256 or hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data), formats=_formats()) as im:  # reads the header only
            width, height = im.size
            if width * height > config.max_pixels:
                raise ImageError(st.TOO_LARGE, f"{width}x{height} = {width * height} pixels > {config.max_pixels}")
            out_w, out_h = target_size(width, height, config)
            if (out_w, out_h) != (width, height):
                im.draft("RGB", (out_w, out_h))  # JPEG: decode at a reduced scale (still >= the target)
            im.load()
            oriented = _oriented(im)
            if oriented.size != im.size:  # a quarter turn: the target's sides swap too
                out_w, out_h = out_h, out_w
            # transparency: flattened on white and shrunk a strip at a time, not composited at full size
            rgb = _flattened(oriented, (out_w, out_h)) if _has_alpha(oriented) else _to_rgb(oriented)
    except ImageError:
        raise
    except Image.UnidentifiedImageError as e:  # not one of FORMATS: an HTML page, an EPS, a truncated header
        raise ImageError(st.DECODE_ERROR, f"{type(e).__name__}: not {_FORMAT_NAMES} image data") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(st.TOO_LARGE, st.one_line(e)) from e
    except Exception as e:  # Pillow raises many types for bad data: OSError, SyntaxError, ValueError, ...
        raise ImageError(st.DECODE_ERROR, st.one_line(f"{type(e).__name__}: {e}")) from e
    if (out_w, out_h) != rgb.size:
        rgb = rgb.resize((out_w, out_h), Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=config.jpeg_quality)
    return ProcessedImage(buffer.getvalue(), out_w, out_h, width, height, digest)


@functools.cache
def _formats() -> tuple[str, ...]:
    """:data:`FORMATS` this Pillow can open (AVIF needs a Pillow built with libavif): ``Image.open`` fails
    on a name it has no plugin for."""
    Image.init()
    return tuple(f for f in FORMATS if f in Image.OPEN)


_FORMAT_NAMES = f"{', '.join(FORMATS[:-1])} or {FORMATS[-1]}"


def _oriented(im: Image.Image) -> Image.Image:
    """The image as it is meant to be seen (EXIF orientation applied); as stored if the EXIF is unreadable,
    since a broken orientation tag should not cost a decodable image. Upright images (nearly all) are
    returned as they are: ``exif_transpose`` would copy the full-size pixels just to change nothing."""
    try:
        if im.getexif().get(ExifTags.Base.Orientation, 1) not in _TURNED:
            return im
        return ImageOps.exif_transpose(im)
    except Exception:
        return im


_STRIP_ROWS = 256
_REDUCING_GAP = 3.0  # resize: first an integer box reduction to within 3x of the target, then LANCZOS


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)


def _flattened(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """An image with transparency as RGB on white at ``size``, a strip of rows at a time: compositing the
    whole of an 89-megapixel RGBA PNG took a white RGBA copy, the composite and its RGB (~1.3 GB over the
    decoded pixels) before the resize shrank it. Each strip is composited, then box-reduced by the factor
    ``resize(reducing_gap=3.0)`` reduces by first, and the LANCZOS pass over the reduced image takes the
    box that resize passes it: the same pixels as compositing whole and resizing, at the cost of the
    reduced image and one strip."""
    w, h = im.size
    fx = max(1, int(w / size[0] / _REDUCING_GAP))
    fy = max(1, int(h / size[1] / _REDUCING_GAP))
    rows = max(fy, _STRIP_ROWS // fy * fy)  # whole reduction blocks per strip
    reduced = Image.new("RGB", (-(-w // fx), -(-h // fy)))
    for top in range(0, h, rows):
        strip = _to_rgb(im.crop((0, top, w, min(top + rows, h))))
        reduced.paste(strip.reduce((fx, fy)) if (fx, fy) != (1, 1) else strip, (0, top // fy))
    if size == (w, h):
        return reduced
    return reduced.resize(size, Image.Resampling.LANCZOS, box=(0, 0, w / fx, h / fy))


def grey16_to_8(grey: np.ndarray) -> np.ndarray:
    """0..65535 grey (values outside clipped) to 0..255, rounded to nearest: ``round(v / 257)``, in integers
    and in strips of rows, so an 88-megapixel 16-bit PNG costs one byte per pixel on top of its pixels,
    not the ~20 bytes a float64 round trip takes (about 2 GB, enough to kill a download worker)."""
    out = np.empty(grey.shape, dtype=np.uint8)
    for top in range(0, grey.shape[0], _STRIP_ROWS):
        strip = np.clip(grey[top:top + _STRIP_ROWS], 0, 65535).astype(np.uint32)
        # v * 255 / 65535 == v / 257; adding half the divisor rounds, and no v sits exactly on a half
        strip *= 255
        strip += 32767
        strip //= 65535
        out[top:top + _STRIP_ROWS] = strip
    return out


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB, with transparency composited on white (a plain convert would show the hidden colour, often black)
    and 16/32-bit grey scaled to 8 bits (a plain convert clips everything above 255 to white)."""
    if im.mode == "I" or im.mode.startswith("I;16"):
        im = Image.fromarray(grey16_to_8(np.asarray(im)), "L")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")
