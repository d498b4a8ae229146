"""The evaluation metric math against plain reference loops, on synthetic embeddings."""

from __future__ import annotations

import math

import pytest
import torch

from kgcurate.evaluate import metrics


def reference_topk(logits: list[list[float]], labels: list[int], k: int) -> float:
    """A hit when fewer than k other classes score above the label's logit, or level with it at a lower index."""
    hits = 0
    for row, label in zip(logits, labels, strict=True):
        ahead = sum(1 for c, s in enumerate(row) if s > row[label] or (s == row[label] and c < label))
        hits += ahead < k and all(math.isfinite(s) for s in row)
    return hits / len(labels)


def reference_recall(scores: list[list[float]], k: int) -> float:
    found = 0
    for i, row in enumerate(scores):
        ahead = sum(1 for j, s in enumerate(row) if j != i and s >= row[i])
        found += ahead < k and all(math.isfinite(s) for s in row)
    return found / len(scores)


def normalised(n: int, d: int, seed: int) -> torch.Tensor:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return x / x.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_topk_accuracy_matches_a_plain_loop(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(200, 12, generator=g)
    labels = torch.randint(0, 12, (200,), generator=g)
    got = metrics.topk_accuracy(logits, labels, (1, 3, 5, 20))
    for k in (1, 3, 5, 20):
        assert got[k] == pytest.approx(reference_topk(logits.tolist(), labels.tolist(), k)), k
    assert 0 < got[1] < got[5] < 1 and got[20] == 1.0  # k past the class count: every row


def test_topk_accuracy_of_a_perfect_and_a_wrong_classifier() -> None:
    labels = torch.tensor([0, 3, 2, 1])
    perfect = torch.nn.functional.one_hot(labels, 4).float()
    assert metrics.topk_accuracy(perfect, labels, (1,)) == {1: 1.0}
    assert metrics.topk_accuracy(-perfect, labels, (1, 3)) == {1: 0.0, 3: 0.0}
    with pytest.raises(ValueError, match="do not match"):
        metrics.topk_accuracy(perfect, labels[:3])


def open_clip_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...]) -> dict[int, float]:
    """open_clip_train.zero_shot.accuracy, its logic verbatim: torch.topk over the logits."""
    pred = logits.topk(max(ks), 1, True, True)[1].t()
    correct = pred.eq(labels.view(1, -1).expand_as(pred))
    return {k: correct[:k].reshape(-1).float().sum().item() / len(labels) for k in ks}


def test_classes_with_identical_logits_score_as_open_clip_scores_them() -> None:
    """Two classes with the same name ("missile" twice in ImageNet's names) have the same prompts, hence
    the same logits for every image. Like open_clip's topk, exactly one of them is credited at each rank,
    here always the lower index (topk's order of ties is unspecified); without ties the two agree exactly.
    Counting the tie against the label made both classes misses on every image: top-1 0 for them."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 1000, generator=g)
    logits[:, 744] = logits[:, 657]  # ImageNet's two "missile"s: class 657 and 744
    labels = torch.randint(0, 1000, (300,), generator=g)
    labels[:100] = logits[:100].argmax(dim=1)  # a third right, among them images of each twin ranked first
    labels[:20], labels[20:40] = 657, 744
    logits[:40, 657] = logits[:40, 744] = logits[:40].max(dim=1).values + 1
    assert metrics.topk_accuracy(logits[40:], labels[40:], (1, 5)) == pytest.approx(
        open_clip_accuracy(logits[40:], labels[40:], (1, 5)))  # no tie that matters: the same numbers
    assert metrics.topk_accuracy(logits[:40], labels[:40], (1, 2)) == {1: 0.5, 2: 1.0}  # 657 first, 744 second
    tied = open_clip_accuracy(logits[:40], labels[:40], (1, 2))
    assert tied[2] == 1.0 and tied[1] > 0  # open_clip: one twin per image at top-1 too, in torch's order


@pytest.mark.parametrize("seed", [0, 7])
def test_recall_at_k_matches_a_plain_loop_both_ways(seed: int) -> None:
    images, texts = normalised(150, 16, seed), normalised(150, 16, seed + 100)
    texts = (texts + 0.5 * images) / (texts + 0.5 * images).norm(dim=1, keepdim=True)  # partly aligned
    got = metrics.retrieval_recall(images, texts, (1, 5, 10))
    scores = (images @ texts.T).tolist()
    transposed = [list(col) for col in zip(*scores, strict=True)]
    for k in (1, 5, 10):
        assert got[f"image_to_text_R@{k}"] == pytest.approx(reference_recall(scores, k))
        assert got[f"text_to_image_R@{k}"] == pytest.approx(reference_recall(transposed, k))
    assert 0 < got["image_to_text_R@1"] < got["image_to_text_R@10"] < 1


def test_retrieval_of_equal_embeddings_is_perfect_and_of_a_shuffle_is_not() -> None:
    """The cheating setup: texts embedded exactly as their images are found first, both ways."""
    emb = normalised(64, 32, 3)
    assert set(metrics.retrieval_recall(emb, emb).values()) == {1.0}
    shuffled = emb[torch.roll(torch.arange(64), 1)]  # every text is another image's
    got = metrics.retrieval_recall(emb, shuffled, (1,))
    assert got == {"image_to_text_R@1": 0.0, "text_to_image_R@1": 0.0}


def test_a_collapsed_or_diverged_model_scores_nothing() -> None:
    """Every embedding the same (ties everywhere) or NaN (a diverged run): no hits, not perfect ones."""
    collapsed = torch.ones(20, 8) / math.sqrt(8)
    assert set(metrics.retrieval_recall(collapsed, collapsed, (1, 5, 10)).values()) == {0.0}
    nan = torch.full((20, 8), float("nan"))
    assert set(metrics.retrieval_recall(nan, nan, (1, 5, 10)).values()) == {0.0}
    labels = torch.arange(10) % 4
    # every logit level: the lowest class index takes the tie, what open_clip's topk reports (3 of 10 are class 0)
    assert metrics.topk_accuracy(torch.zeros(10, 4), labels, (1, 3, 4)) == pytest.approx({1: 0.3, 3: 0.8, 4: 1.0})
    assert metrics.topk_accuracy(torch.full((10, 4), float("nan")), labels, (1, 4)) == {1: 0.0, 4: 0.0}
    # k above the number of classes (top-5 of a 3-class set) still never counts a NaN row
    nan_row = torch.tensor([[float("nan"), 1.0, 2.0], [0.0, 1.0, 2.0]])
    assert metrics.topk_accuracy(nan_row, torch.tensor([0, 0]), (1, 5)) == {1: 0.0, 5: 0.5}
    assert set(metrics.retrieval_recall(nan[:3], nan[:3], (1, 5, 10)).values()) == {0.0}
    ties = torch.tensor([[2.0, 2.0, 1.0]])  # a class at a lower index level with the label: rank 2, not 1
    assert metrics.topk_accuracy(ties, torch.tensor([1]), (1, 2)) == {1: 0.0, 2: 1.0}
    assert metrics.topk_accuracy(ties, torch.tensor([0]), (1,)) == {1: 1.0}
    with pytest.raises(ValueError, match="labels must lie"):
        metrics.topk_accuracy(torch.zeros(2, 3), torch.tensor([0, 3]))


def test_a_repeated_caption_or_image_is_found_as_the_right_one() -> None:
    """Web captions repeat: two samples both captioned "red car" have one text embedding, and a perfect
    model ranks the other copy level with its own. That copy is a right answer, not a miss."""
    emb = normalised(8, 8, 5)
    captions = ["red car", "a dog", "red car", "tree", "sky", "cat", "boat", "house"]
    texts = torch.stack([emb[captions.index(c)] for c in captions])  # equal strings, equal embeddings
    assert metrics.retrieval_recall(emb, texts, (1,))["image_to_text_R@1"] == 0.75  # without the strings
    assert metrics.retrieval_recall(emb, texts, (1,), texts=captions)["image_to_text_R@1"] == 1.0
    same_image = emb.clone()
    same_image[2] = emb[0]  # sample 2's image is sample 0's, its caption its own
    got = metrics.retrieval_recall(same_image, emb, (1,), images=["a", "b", "a", "c", "d", "e", "f", "g"])
    assert got["text_to_image_R@1"] == 1.0
    # a collapsed model still finds nothing but the copies of each caption
    collapsed = torch.ones(8, 8) / math.sqrt(8)
    got = metrics.retrieval_recall(collapsed, collapsed, (1, 5), texts=captions)
    assert got["image_to_text_R@1"] == 0.0 and got["image_to_text_R@5"] == 0.0
    assert metrics.group_ids(["x", "y", "x"]).tolist() == [0, 1, 0]


def test_recall_refuses_unpaired_sets() -> None:
    with pytest.raises(ValueError, match="pair up"):
        metrics.retrieval_recall(torch.ones(3, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="square"):
        metrics.recall_at_k(torch.ones(3, 4))
