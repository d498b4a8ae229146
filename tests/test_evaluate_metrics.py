"""The evaluation metric math against plain reference loops, on synthetic embeddings."""

from __future__ import annotations

import pytest
import torch

from kgcurate.evaluate import metrics


def reference_topk(logits: list[list[float]], labels: list[int], k: int) -> float:
    hits = 0
    for row, label in zip(logits, labels, strict=True):
        order = sorted(range(len(row)), key=lambda c: (-row[c], c))
        hits += label in order[:k]
    return hits / len(labels)


def reference_recall(scores: list[list[float]], k: int) -> float:
    found = 0
    for i, row in enumerate(scores):
        better = sum(1 for j, s in enumerate(row) if s > row[i])
        found += better < k
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


def test_recall_counts_ties_for_the_match_and_refuses_unpaired_sets() -> None:
    ties = torch.ones(5, 5)  # every text scores the same: the match is never beaten
    assert metrics.recall_at_k(ties, (1,)) == {1: 1.0}
    with pytest.raises(ValueError, match="pair up"):
        metrics.retrieval_recall(torch.ones(3, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="square"):
        metrics.recall_at_k(torch.ones(3, 4))
