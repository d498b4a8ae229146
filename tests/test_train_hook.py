"""Our text draw inside open_clip's own webdataset pipeline (get_wds_dataset): each pass shows drawn texts
with the KG share asked for; without the hook (and after it) open_clip shows KEY.txt as before."""

from __future__ import annotations

import argparse

import pytest

pytest.importorskip("torch")
oc_data = pytest.importorskip("open_clip_train.data")

from kgcurate.train.launch import DrawTexts, installed  # noqa: E402
from kgcurate.train.sample import write_shards  # noqa: E402


def _args(files: str, n: int) -> argparse.Namespace:
    return argparse.Namespace(train_data=files, val_data=None, dataset_resampled=False, train_num_samples=n,
                              train_data_upsampling_factors=None, seed=0, workers=0, world_size=1, batch_size=50)


def _texts(files: str, n: int, passes: int = 1) -> list[str]:
    """Texts of every sample open_clip's training loader yields over ``passes`` epochs (tokenizer = identity)."""
    info = oc_data.get_wds_dataset(_args(files, n), lambda img: 0, is_train=True, tokenizer=lambda t: [t])
    out: list[str] = []
    for epoch in range(passes):
        info.set_epoch(epoch)
        for _, texts in info.dataloader:
            out.extend(texts)
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("shards"))
    write_shards(out, 400, 100, kg_every=1)  # every sample has 2 alt and 2 KG texts
    return f"{out}/{{00000..00003}}.tar"


def test_the_trainer_sees_drawn_texts_with_the_kg_share(shards) -> None:
    with installed(DrawTexts(kg_text_share=0.25, seed=1)) as draw:
        texts = _texts(shards, 400, passes=3)
    assert len(texts) == 1200 and draw.passes == 3 and draw.unreadable == 0
    kg = sum(not (t.startswith("a ") or t.endswith(" photo")) for t in texts)  # alt texts: "a ..." / "... photo"
    assert abs(kg - 300) <= 4 * (1200 * 0.25 * 0.75) ** 0.5, kg
    assert len(set(texts)) > 40  # both phrasings of each kind, many classes


def test_without_the_hook_open_clip_shows_the_primary_text(shards) -> None:
    with installed(DrawTexts(kg_text_share=1.0, seed=1)):
        assert not any(t.startswith("a ") for t in _texts(shards, 400))
    assert all(t.startswith("a ") for t in _texts(shards, 400))  # restored: KEY.txt, the alt text


def test_a_shard_read_twice_in_a_pass_draws_anew_and_bad_json_keeps_its_txt() -> None:
    import json

    from kgcurate.train.texts import draw_text

    texts = [{"text": f"t{i}", "text_source": "alt" if i % 2 else "kg_label"} for i in range(8)]
    meta = json.dumps({"texts": texts}).encode()
    raw = [{"__key__": f"k{i}", "__url__": url, "txt": b"primary", "json": meta}
           for url in ("a.tar", "b.tar", "a.tar") for i in range(50)]
    raw.append({"__key__": "bad", "__url__": "b.tar", "txt": b"primary", "json": b"{oops"})
    draw = DrawTexts(kg_text_share=0.5, seed=3, start_pass=4)
    draw.original = lambda src, handler=None: iter(src)
    shown = [s["txt"].decode() for s in draw([dict(r) for r in raw])]
    expected = [draw_text(texts, "primary", 0.5, 3, 4, f"k{i}", visit)
                for visit in (0, 0, 1) for i in range(50)]
    assert shown[:-1] == expected and shown[:50] != shown[100:150]  # the second visit of a.tar draws anew
    assert shown[-1] == "primary" and draw.unreadable == 1 and draw.passes == 1

    # resampling can draw one shard twice in a row: the url does not change, the keys start over
    twice = [{"__key__": f"k{i}", "__url__": "a.tar", "txt": b"primary", "json": meta}
             for _ in (0, 1) for i in range(50)]
    draw = DrawTexts(kg_text_share=0.5, seed=3, start_pass=4)
    draw.original = lambda src, handler=None: iter(src)
    shown = [s["txt"].decode() for s in draw(twice)]
    assert shown == [draw_text(texts, "primary", 0.5, 3, 4, f"k{i}", visit) for visit in (0, 1) for i in range(50)]
    assert shown[:50] != shown[50:]


def test_what_the_draw_cannot_use_is_spilled_once_for_bad_records(tmp_path) -> None:
    """A sample whose json does not parse (it trains on its txt) and a shard cut off mid-way (webdataset
    skips the rest) are each noted once per worker, with the shard and the position in it."""
    from kgcurate.bad_input import SHARD_DAMAGED
    from kgcurate.train import bad_samples

    out = tmp_path / "shards"
    write_shards(str(out), 200, 100, kg_every=1)
    whole = (out / "00001.tar").read_bytes()
    (out / "00001.tar").write_bytes(whole[:len(whole) // 2])  # a cut-off download
    bad_dir = str(tmp_path / "exp" / bad_samples.FOLDER)
    with installed(DrawTexts(kg_text_share=0.5, seed=1, bad_dir=bad_dir)) as draw:
        assert len(_texts(f"{out}/{{00000..00001}}.tar", 200, passes=2)) == 400  # training goes on
    assert draw.damaged >= 2  # met on every pass over the shard (open_clip wraps around to fill an epoch)
    [(shard, offset, reason)] = [(b.source_file, b.offset, b.reason) for b in bad_samples.read_spilled(bad_dir)]
    assert (shard, reason) == (f"{out}/00001.tar", SHARD_DAMAGED) and 0 < offset < 100  # noted once

    raw = [{"__key__": f"k{i}", "__url__": "a.tar", "txt": b"primary", "json": b"{}" if i != 3 else b"{oops"}
           for i in range(5)]
    draw = DrawTexts(kg_text_share=0.5, seed=3, bad_dir=bad_dir)
    draw.original = lambda src, handler=None: iter(src)
    for _ in range(2):
        list(draw([dict(r) for r in raw]))
    assert draw.unreadable == 2
    spilled = {(b.source_file, b.offset, b.reason, b.sample) for b in bad_samples.read_spilled(bad_dir)}
    assert ("a.tar", 3, bad_samples.JSON_UNREADABLE, "k3.json") in spilled and len(spilled) == 2
