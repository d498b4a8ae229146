"""Evaluation inputs without a real model: the folder reader on the offline sets, class names,
unreadable files, webdataset shards for retrieval, and zero-shot through a model that cannot miss."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from kgcurate.download.shards import TarSample, write_shard
from kgcurate.errors import UserError
from kgcurate.evaluate import folders, offline, retrieval, zeroshot
from kgcurate.evaluate.model import LoadedModel


def jpg(color: tuple[int, int, int], size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, "JPEG")
    return buf.getvalue()


def png_with_a_bad_chunk_length() -> bytes:
    """A PNG whose IDAT length is halved, so its next "chunk" header is pixel data: Pillow raises
    SyntaxError on it, not OSError or ValueError."""
    buf = io.BytesIO()
    Image.frombytes("RGB", (40, 30), bytes((i * 97) % 256 for i in range(3600))).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    i = data.index(b"IDAT") - 4
    data[i:i + 4] = (int.from_bytes(data[i:i + 4], "big") // 2).to_bytes(4, "big")
    return bytes(data)


def test_digits_are_written_as_class_folders_and_read_back(tmp_path) -> None:
    root = offline.write_digits(str(tmp_path / "digits"), per_class=3, size=32)
    f = folders.read_folder(root)
    assert f.classnames == sorted(offline.DIGIT_NAMES)  # folder names, sorted: eight, five, four, ...
    assert len(f.samples) == 30
    by_class = {name: sum(1 for _, y in f.samples if f.classnames[y] == name) for name in f.classnames}
    assert set(by_class.values()) == {3}
    path, label = f.samples[0]
    image, error = folders.open_image(path)
    assert error is None and image is not None and image.size == (32, 32)
    assert os.path.basename(os.path.dirname(path)) == f.classnames[label]


def test_digits_keep_their_sklearn_labels(tmp_path) -> None:
    """The PNG in folder ``three`` is sklearn's image of a 3 (upscaled, dark ink on white)."""
    from sklearn.datasets import load_digits

    root = offline.write_digits(str(tmp_path / "d"), per_class=1, size=8)
    d = load_digits()
    for name in offline.DIGIT_NAMES:
        (png,) = os.listdir(os.path.join(root, name))
        i = int(png.split(".")[0])
        assert offline.DIGIT_NAMES[int(d.target[i])] == name
        pixels = torch.from_numpy(np.asarray(Image.open(os.path.join(root, name, png))))
        expected = (255 - torch.tensor(d.images[i]) * (255 / 16)).clamp(0, 255).to(torch.uint8)
        assert torch.equal(pixels.to(torch.uint8), expected)


def test_skimage_photos_are_one_class_each_with_spoken_names(tmp_path) -> None:
    f = folders.read_folder(offline.write_skimage(str(tmp_path / "sk"), max_side=64))
    assert len(f.samples) == len(offline.SKIMAGE_PHOTOS) == len(f.classnames)
    assert {"cat", "cup of coffee", "brick wall", "astronaut", "rocket"} <= set(f.classnames)
    for path, _ in f.samples:
        image, error = folders.open_image(path)
        assert error is None and max(image.size) <= 64 and image.mode == "RGB"


def test_class_names_come_from_classnames_txt_or_imagenet_ids(tmp_path) -> None:
    for name in ("b_cls", "a_cls"):
        os.makedirs(tmp_path / name)
        Image.new("RGB", (8, 8)).save(tmp_path / name / "x.png")
    assert folders.read_folder(str(tmp_path)).classnames == ["a cls", "b cls"]
    (tmp_path / "classnames.txt").write_text("first thing\nsecond thing\n")
    assert folders.read_folder(str(tmp_path)).classnames == ["first thing", "second thing"]
    (tmp_path / "classnames.txt").write_text("only one\n")
    with pytest.raises(UserError, match="lists 1 class names for 2 class folders"):
        folders.read_folder(str(tmp_path))
    wnids = [f"n{i:08d}" for i in range(1000)]
    names = folders.classnames_of(str(tmp_path / "nowhere"), wnids)
    assert names[0] == "tench" and names[1] == "goldfish" and len(names) == 1000
    # some of them (ImageNet-R/-A: 200): each by its own id, not the folder name as a prompt
    subset = ["n01443537", "n01484850", "n02106662"]
    assert folders.classnames_of(str(tmp_path / "nowhere"), subset) == ["goldfish", "great white shark",
                                                                          "German Shepherd Dog"]
    with pytest.raises(UserError, match="n00000001 is a WordNet id outside ImageNet-1k.*classnames.txt"):
        folders.classnames_of(str(tmp_path / "nowhere"), ["n00000001", *subset])
    inat = ["00000_Animalia_Annelida_Clitellata_Haplotaxida_Lumbricidae_Lumbricus_terrestris",
            "09999_Plantae_Tracheophyta_Magnoliopsida_Vitales_Vitaceae_Vitis_vinifera"]
    assert folders.classnames_of(str(tmp_path / "nowhere"), inat) == ["Lumbricus terrestris", "Vitis vinifera"]
    # one folder not in that form: the plain rule for all (a mix would name classes two ways)
    assert folders.classnames_of(str(tmp_path / "nowhere"), [*inat, "other_thing"])[0] == inat[0].replace("_", " ")


def test_a_missing_or_empty_folder_is_one_line(tmp_path) -> None:
    with pytest.raises(UserError) as missing:
        folders.read_folder(str(tmp_path / "nope"))
    assert "does not exist" in str(missing.value) and "\n" not in str(missing.value)
    (tmp_path / "empty" / "cls").mkdir(parents=True)  # a class folder, but no image anywhere
    (tmp_path / "empty" / "cls" / "notes.txt").write_text("x")
    (tmp_path / "bare").mkdir()  # no class folder at all
    for root in (tmp_path / "empty", tmp_path / "bare"):
        for check in (folders.read_folder, folders.check_folder):
            with pytest.raises(UserError) as err:
                check(str(root))
            assert f"dataset folder {root} holds no images" in str(err.value) and "\n" not in str(err.value)


def test_an_empty_class_folder_stays_a_class_the_model_can_predict(tmp_path) -> None:
    """One class folder without images (an incomplete copy, a class with no validation image) used to throw
    away the whole evaluation after the model had loaded; it is a candidate class, scored on no image."""
    for name in ("cat", "dog", "emu"):
        (tmp_path / name).mkdir()
    for name in ("cat", "emu"):
        Image.new("RGB", (8, 8)).save(tmp_path / name / "0.png")
    folders.check_folder(str(tmp_path))
    f = folders.read_folder(str(tmp_path))
    assert f.classnames == ["cat", "dog", "emu"] and [y for _, y in f.samples] == [0, 2]
    assert f.empty_classes == ["dog"]


class ColourModel(torch.nn.Module):
    """A 'model' that cannot miss: an image embeds as its mean colour, a prompt as the colour it names."""

    COLOURS = {"red": (1.0, 0, 0), "green": (0, 1.0, 0), "blue": (0, 0, 1.0)}

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        x = images.mean(dim=(2, 3))
        return x / x.norm(dim=1, keepdim=True)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return tokens


def colour_tokens(texts: list[str]) -> torch.Tensor:
    return torch.tensor([next(v for k, v in ColourModel.COLOURS.items() if k in t.lower()) for t in texts])


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) / 255


def test_zero_shot_of_a_model_that_cannot_miss_is_perfect_and_counts_unreadable_files(tmp_path) -> None:
    colours = {"red": (250, 5, 5), "green": (5, 250, 5), "blue": (5, 5, 250)}
    for name, rgb in colours.items():
        os.makedirs(tmp_path / name)
        for i in range(4):
            Image.new("RGB", (8, 8), rgb).save(tmp_path / name / f"{i}.png")
    (tmp_path / "blue" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "red" / "cut.png").write_bytes(png_with_a_bad_chunk_length())
    m = LoadedModel("colour", ColourModel(), to_tensor, colour_tokens, "cpu")
    r = zeroshot.evaluate(m, folders.read_folder(str(tmp_path)), "simple", (1, 2), batch_size=5)
    assert r.accuracy == {1: 1.0, 2: 1.0} and r.samples == 12 and r.classes == 3
    assert [os.path.basename(p) for p, _ in r.unreadable] == ["broken.png", "cut.png"]
    assert "UnidentifiedImageError" in r.unreadable[0][1] and "SyntaxError" in r.unreadable[1][1]
    assert [(os.path.basename(b.source_file), b.offset, b.reason) for b in r.bad] == [
        ("broken.png", 0, "image does not decode"), ("cut.png", 0, "image does not decode")]


def test_classes_with_identical_prompts_are_named_and_the_first_takes_the_tie(tmp_path) -> None:
    """Two folders with one class name (ImageNet's two "missile"s): identical prompts, identical logits. The
    first class wins every tie (open_clip's rule), and the result names the group for the stage's warning."""
    for name, rgb in (("a_red", (250, 5, 5)), ("b_red", (240, 5, 5)), ("c_blue", (5, 5, 250))):
        os.makedirs(tmp_path / name)
        for i in range(2):
            Image.new("RGB", (8, 8), rgb).save(tmp_path / name / f"{i}.png")
    (tmp_path / "classnames.txt").write_text("red\nRed \nblue\n")  # the tokenizer drops case and spacing
    m = LoadedModel("colour", ColourModel(), to_tensor, colour_tokens, "cpu")
    folder = folders.read_folder(str(tmp_path))
    r = zeroshot.evaluate(m, folder, "simple", (1, 2))
    assert r.accuracy == {1: pytest.approx(4 / 6), 2: 1.0}  # the second red's images are top-2, never top-1
    assert r.same_prompts == [[0, 1]]
    assert zeroshot.describe_same(folder, r.same_prompts) == ["a_red, b_red ('red' / 'Red')"]


def test_identical_prompts_are_what_the_tokenizer_makes_of_every_template() -> None:
    def tokens(texts: list[str]) -> torch.Tensor:  # open_clip's SimpleTokenizer lower-cases and collapses spaces
        return torch.tensor([[hash(" ".join(t.lower().split())) % 10_000] for t in texts])

    names = ["missile", "crane", "Missile", "sunglasses", "dog", "sunglasses", "Crane  bird"]
    assert zeroshot.identical_prompts(names, ["a photo of a {}."], tokens) == [[0, 2], [3, 5]]
    assert zeroshot.identical_prompts(names, [lambda c: f"itap of a {c}.", "{}"], tokens) == [[0, 2], [3, 5]]
    # a template that tells names apart where the tokenizer alone would not: not identical
    assert zeroshot.identical_prompts(["x", "X"], [lambda c: f"a {c} ({c == 'x'})"], tokens) == []


def test_retrieval_takes_captions_the_tokenizer_makes_equal_as_one_answer(tmp_path) -> None:
    """Web alt texts differ in case and spacing ("Red car", "red car "); the tokenizer lower-cases and
    collapses spaces, so the model embeds them identically and ranks them level. Grouped by the raw string,
    the tie counted as a miss: a model that cannot do better scored image->text R@1 1/3 here, not 1."""
    out = str(tmp_path / "shards")
    os.makedirs(out)
    write_shard(out, 0, [TarSample("000000000", jpg((250, 5, 5)), "Red car", {}),
                         TarSample("000000001", jpg((240, 5, 5)), "red car ", {}),
                         TarSample("000000002", jpg((5, 5, 250)), "blue sky", {})])
    m = LoadedModel("colour", ColourModel(), to_tensor, colour_tokens, "cpu")
    r = retrieval.evaluate(m, out, (1,))
    assert r.samples == 3 and r.recall["image_to_text_R@1"] == 1.0


def test_retrieval_reads_shards_and_lists_what_it_cannot_use(tmp_path) -> None:
    out = str(tmp_path / "shards")
    os.makedirs(out)
    write_shard(out, 0, [TarSample(f"0000000{i:02d}", jpg((i * 20, 0, 0)), f"caption {i}", {}) for i in range(5)])
    write_shard(out, 1, [TarSample("000010000", b"\xff\xd8 broken jpeg", "bad", {}),
                         TarSample("000010001", png_with_a_bad_chunk_length(), "cut", {}),
                         TarSample("000010002", jpg((0, 9, 9)), "fine", {})])
    whole = (tmp_path / "shards" / "00000.tar").read_bytes()
    (tmp_path / "shards" / "00002.tar").write_bytes(whole[:700])  # a cut-off download
    (tmp_path / "shards" / "00003.tar").write_bytes(whole[:len(whole) // 2])  # cut after a few samples
    records: list = []  # what cannot be used, also as bad_records rows
    pairs = list(retrieval.iter_pairs(retrieval.shard_files(out), bad := [], None, records))
    assert [k for k, _, _ in pairs][:6] == [f"0000000{i:02d}" for i in range(5)] + ["000010002"]
    assert pairs[0][2] == "caption 0" and pairs[0][1].size == (16, 16)
    assert [k for k, _ in bad] == ["000010000", "000010001", os.path.join(out, "00002.tar"),
                                   os.path.join(out, "00003.tar")]
    assert "UnidentifiedImageError" in bad[0][1] and "SyntaxError" in bad[1][1]  # not only OSError/ValueError
    assert "unexpected end of data" in bad[2][1]
    # bad_records: the shard, the sample's position in it or, for a damaged tar, the samples read before
    assert [(os.path.basename(b.source_file), b.reason) for b in records] == [
        ("00001.tar", retrieval.NO_IMAGE), ("00001.tar", retrieval.NO_IMAGE), ("00002.tar", retrieval.BAD_SHARD),
        ("00003.tar", retrieval.BAD_SHARD)]
    assert [b.offset for b in records[:3]] == [0, 1, 0] and 0 < records[3].offset <= len(pairs) - 6 < 5
    assert records[0].sample.startswith("000010000.jpg: UnidentifiedImageError")
    assert [k for k, _ in retrieval.read_pairs(retrieval.shard_files(out))[1]] == [k for k, _ in bad]
    limited, _ = retrieval.read_pairs(retrieval.shard_files(out), limit=3)
    assert len(limited) == 3
    with pytest.raises(UserError, match="no webdataset shards"):
        retrieval.shard_files(str(tmp_path / "none"))
