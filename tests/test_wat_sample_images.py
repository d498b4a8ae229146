"""make-sample --image-base-url: the pages link servable files, the files are real images (a few
deliberately missing or broken), the parser still finds exactly the manifest's pairs."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image, UnidentifiedImageError

from kgcurate import cli
from kgcurate.wat.sample import load_manifest, write_sample
from kgcurate.wat.sample_images import kind_of, served_name
from test_wat_sample import parse_file

BASE = "http://images:8000"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    return write_sample(root / "wat", files=2, records=60, seed=3, image_base_url=BASE, images_dir=root / "images")


def test_every_pair_links_a_served_file_and_the_parser_agrees(served):
    pairs = [p for v in served.pairs_by_file.values() for p in v]
    assert pairs and all(p[0].startswith(f"{BASE}/") and "?" not in p[0] for p in pairs)
    for path in served.files:
        got, _, _ = parse_file(path)
        assert Counter(got) == Counter(served.pairs_by_file[Path(path).name])
    plain = write_sample(Path(served.out_dir).parent / "plain", files=2, records=60, seed=3)
    # the same pages, texts and counts: only the image links differ
    assert sorted(p[1:] for p in pairs) == sorted(p[1:] for v in plain.pairs_by_file.values() for p in v)
    assert served.bad_records == plain.bad_records and served.records == plain.records
    assert {f"{BASE}/{served_name(u)}" for u, *_ in plain.pairs} == {p[0] for p in served.pairs}


def test_files_are_real_images_a_few_missing_or_broken(served):
    folder = Path(served.images.folder)
    names = {p[0].rsplit("/", 1)[1] for p in served.pairs}
    decoded = 0
    for name in names:
        kind, path = kind_of(name), folder / name
        if kind == "missing":
            assert not path.exists()
            continue
        data = path.read_bytes()
        if kind == "broken":
            with pytest.raises(UnidentifiedImageError):
                Image.open(io.BytesIO(data)).load()
            continue
        img = Image.open(io.BytesIO(data))
        img.load()
        assert img.format == ("PNG" if name.endswith(".png") else "JPEG") and img.size == (64, 64)
        assert 200 < len(data) < 16_000
        decoded += 1
    m = served.images
    assert decoded > 0.85 * len(names) and m.missing >= 1 and m.broken >= 1
    assert m.images + m.broken == len(list(folder.iterdir()))
    assert load_manifest(served.out_dir).images == m


def test_deterministic_and_a_plain_sample_is_unchanged(tmp_path, served):
    again = write_sample(tmp_path / "wat", files=2, records=60, seed=3, image_base_url=BASE,
                         images_dir=tmp_path / "images")
    for a, b in zip(served.files, again.files, strict=True):
        assert Path(a).read_bytes() == Path(b).read_bytes()
    for f in Path(served.images.folder).iterdir():
        assert (tmp_path / "images" / f.name).read_bytes() == f.read_bytes()
    plain = write_sample(tmp_path / "plain", files=1, records=20, seed=3)
    assert "images" not in json.loads((tmp_path / "plain" / "manifest.json").read_text()) and plain.images is None
    # a later sample into the same folder leaves no stale image behind, and none of the user's own files
    own = {"holiday.jpg": b"my photo", "logo.png": b"a logo", "0123456789abcdef0123.jpg.bak": b"kept"}
    for name, data in own.items():
        (tmp_path / "images" / name).write_bytes(data)
    later = write_sample(tmp_path / "wat", files=1, records=10, seed=4, image_base_url=BASE,
                         images_dir=tmp_path / "images")
    left = {f.name for f in (tmp_path / "images").iterdir()}
    linked = {p[0].rsplit("/", 1)[1] for p in later.pairs}
    assert len(left - set(own)) == later.images.images + later.images.broken
    assert {n for n in linked if kind_of(n) != "missing"} <= left
    assert all((tmp_path / "images" / name).read_bytes() == data for name, data in own.items())


def test_cli_writes_images_beside_the_sample_by_default(tmp_path, capsys):
    assert cli.main(["make-sample", "--out", str(tmp_path), "--files", "1", "--records", "31",
                     "--image-base-url", "http://127.0.0.1:8765/img"]) == 0
    out = capsys.readouterr().out
    assert f"images in {tmp_path / 'images'}" in out and "left missing (404)" in out
    m = load_manifest(tmp_path / "wat")
    assert all(u.startswith("http://127.0.0.1:8765/img/") for u, *_ in m.pairs)
    assert m.images.folder == str((tmp_path / "images").resolve()) and m.images.images > 0
    assert cli.main(["make-sample", "--out", str(tmp_path), "--image-base-url", "images:8000"]) == 2
    assert "--image-base-url must be an http(s) URL" in capsys.readouterr().err
    assert cli.main(["make-sample", "--out", str(tmp_path), "--images", str(tmp_path / "x")]) == 2
    assert "pass --image-base-url too" in capsys.readouterr().err
