"""Decoding, bomb checks, conversion and resizing (kgcurate.download.images): real Pillow images, no server."""

from __future__ import annotations

import hashlib
import io
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from kgcurate.download import status as st
from kgcurate.download.images import _STRIP_ROWS, ImageConfig, ImageError, grey16_to_8, process_image, target_size


def encode(im: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def photo(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A smooth colour gradient (compresses like a photo, unlike noise)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB").convert(mode)


def png_claiming(width: int, height: int) -> bytes:
    """A ~100-byte PNG whose header claims ``width`` x ``height`` RGB: a decompression bomb's shape
    without building one (its data has one row, so decoding it would fail, not succeed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" * (1 + 3 * min(width, 64)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def decoded(jpeg: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(jpeg))
    assert im.format == "JPEG"
    im.load()
    return im


def test_jpeg_shrinks_longer_side_and_keeps_provenance():
    data = encode(photo(640, 480), "JPEG", quality=90)
    out = process_image(data)
    assert (out.width, out.height, out.original_width, out.original_height) == (256, 192, 640, 480)
    assert out.sha256 == hashlib.sha256(data).hexdigest()
    im = decoded(out.jpeg)
    assert (im.size, im.mode) == ((256, 192), "RGB")
    assert process_image(data).jpeg == out.jpeg  # deterministic


def test_resize_modes_and_upscaling():
    landscape = encode(photo(640, 480), "PNG")
    keep_short = process_image(landscape, ImageConfig(resize_mode="keep_ratio"))
    assert (keep_short.width, keep_short.height) == (341, 256)
    kept = process_image(landscape, ImageConfig(resize_mode="no"))
    assert (kept.width, kept.height) == (640, 480)
    small = encode(photo(100, 50), "PNG")
    assert (process_image(small).width, process_image(small).height) == (100, 50)
    grown = process_image(small, ImageConfig(upscale=True))
    assert (grown.width, grown.height) == (256, 128)
    assert decoded(grown.jpeg).size == (256, 128)
    assert target_size(3000, 10, ImageConfig()) == (256, 1)  # never 0 pixels


def test_transparency_goes_on_white_and_modes_become_rgb():
    rgba = Image.new("RGBA", (300, 200), (0, 0, 0, 0))  # fully transparent black
    rgba.paste((255, 0, 0, 255), (0, 0, 150, 200))  # left half opaque red
    out = decoded(process_image(encode(rgba, "PNG")).jpeg)
    assert out.mode == "RGB"
    right, left = out.getpixel((200, 60)), out.getpixel((20, 60))
    assert min(right) > 240  # transparent -> white, not black
    assert left[0] > 240 and left[1] < 20 and left[2] < 20
    for mode in ("L", "P", "CMYK", "1"):
        fmt = "JPEG" if mode in ("L", "CMYK") else "PNG"
        assert decoded(process_image(encode(photo(64, 48, mode), fmt)).jpeg).mode == "RGB", mode


@pytest.mark.parametrize("config", [ImageConfig(), ImageConfig(resize_mode="keep_ratio"),
                                    ImageConfig(resize_mode="no"), ImageConfig(image_size=1000)],
                         ids=["largest", "shorter", "no", "gap-under-3x"])
def test_transparency_is_flattened_a_strip_at_a_time_with_the_pixels_of_a_whole_composite(monkeypatch, config):
    """An 89-megapixel RGBA PNG took ~1.7 GB composited whole before its resize: strips bound that, and
    the JPEG is the one compositing whole and resizing made."""
    im = photo(1300, 2100, "RGBA")
    im.putalpha(Image.linear_gradient("L").resize(im.size))
    data = encode(im, "PNG")
    whole = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im).convert("RGB")
    composited: list[tuple[int, int]] = []
    real = Image.alpha_composite
    monkeypatch.setattr(Image, "alpha_composite", lambda a, b: composited.append(b.size) or real(a, b))
    out = process_image(data, config)
    assert composited and max(h for _, h in composited) <= _STRIP_ROWS
    if (out.width, out.height) != whole.size:
        whole = whole.resize((out.width, out.height), Image.Resampling.LANCZOS, reducing_gap=3.0)
    assert out.jpeg == encode(whole, "JPEG", quality=config.jpeg_quality)


def test_16_bit_grey_is_scaled_not_clipped():
    ramp = np.tile(np.linspace(0, 65535, 256), (16, 1)).astype(np.uint16)  # dark left, bright right
    data = encode(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = decoded(process_image(data).jpeg)
    dark, middle, bright = out.getpixel((0, 8)), out.getpixel((128, 8)), out.getpixel((255, 8))
    assert max(dark) < 10 and 110 < middle[0] < 145 and min(bright) > 245


def test_16_bit_to_8_bit_rounds_like_division_and_clips_32_bit_grey():
    values = np.arange(0, 65536, dtype=np.int64)
    assert np.array_equal(grey16_to_8(values.reshape(256, 256)).ravel(), np.rint(values / 257).astype(np.uint8))
    mode_i = np.array([[-5, 0, 128, 129, 65535, 70000, 2**31 - 1]], dtype=np.int32)  # mode "I" is 32-bit
    assert grey16_to_8(mode_i).tolist() == [[0, 0, 0, 1, 255, 255, 255]]


def test_16_bit_grey_costs_about_one_byte_per_pixel_beyond_its_pixels():
    """A 16-bit grey PNG near the pixel limit must not need gigabytes: the scaling works in strips."""
    grey = np.random.default_rng(0).integers(0, 65536, size=(2000, 1500), dtype=np.uint16)
    tracemalloc.start()
    try:
        out = grey16_to_8(grey)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == grey.shape and out.dtype == np.uint8
    # the output's byte per pixel plus one strip's temporaries; the float64 way took ~20 bytes per pixel
    assert peak < grey.size + 12 * _STRIP_ROWS * grey.shape[1]


def test_exif_orientation_is_applied():
    stored = photo(640, 480)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = process_image(encode(stored, "JPEG", exif=exif))
    assert (out.original_width, out.original_height) == (640, 480)
    assert (out.width, out.height) == (192, 256)
    assert decoded(out.jpeg).size == (192, 256)


@pytest.mark.parametrize(
    "data",
    [
        b"<!doctype html><html><body>not an image</body></html>",
        b"",
        encode(photo(64, 64), "JPEG")[:300],  # truncated
    ],
    ids=["html", "empty", "truncated"],
)
def test_not_an_image_is_decode_error(data):
    with pytest.raises(ImageError) as caught:
        process_image(data)
    assert caught.value.status == st.DECODE_ERROR
    assert "\n" not in str(caught.value)


def test_only_web_raster_formats_are_decoded_and_eps_never_reaches_ghostscript(monkeypatch):
    """EPS went to Ghostscript (a PostScript program from the web, no timeout); other formats Pillow knows
    are no web image either. Both are decode_error with the same message every time."""
    from PIL import EpsImagePlugin

    ran: list[object] = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: ran.append(a))
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: True)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 80\n{ } loop\n"
    small = photo(40, 30)
    others = [encode(small, fmt) for fmt in ("PPM", "TGA", "PCX", "SGI", "DDS")]
    for data in [eps, *others]:
        with pytest.raises(ImageError) as caught:
            process_image(data)
        assert caught.value.status == st.DECODE_ERROR
        assert str(caught.value) == ("UnidentifiedImageError: not JPEG, PNG, GIF, WEBP, AVIF, BMP, ICO or TIFF "
                                     "image data")
    assert not ran
    kept = ["JPEG", "PNG", "GIF", "WEBP", "BMP", "ICO", "TIFF"] + (["AVIF"] if "AVIF" in Image.SAVE else [])
    for fmt in kept:
        params = {"sizes": [small.size]} if fmt == "ICO" else {}
        assert process_image(encode(small, fmt, **params)).original_width == 40, fmt


def test_pixel_cap_is_checked_from_the_header_before_decoding(monkeypatch):
    def no_decoding(self):
        raise AssertionError("decoded a too-large image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    bomb = png_claiming(2000, 2000)
    assert len(bomb) < 200
    with pytest.raises(ImageError) as caught:
        process_image(bomb, ImageConfig(max_pixels=1_000_000))
    assert caught.value.status == st.TOO_LARGE
    assert "2000x2000" in str(caught.value)


def test_pillow_decompression_bomb_error_is_too_large():
    # 400M pixels is over twice Pillow's own limit: Image.open raises before our check, even with ours lifted.
    with pytest.raises(ImageError) as caught:
        process_image(png_claiming(20000, 20000), ImageConfig(max_pixels=10**12))
    assert caught.value.status == st.TOO_LARGE
    with pytest.raises(ImageError) as caught:
        process_image(png_claiming(20000, 20000))
    assert caught.value.status == st.TOO_LARGE


def test_image_config_validation():
    with pytest.raises(ValueError):
        ImageConfig(resize_mode="center_crop")
    with pytest.raises(ValueError):
        ImageConfig(jpeg_quality=0)
