"""The metric math, on plain tensors: top-k accuracy of class logits and retrieval recall@K both ways.

Pure functions of scores and labels, so they are tested against a plain loop on synthetic embeddings
and a model never has to be loaded to check them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _ranks(scores: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """For each row, how many other columns score at least as high as its own column's ``own`` score.

    A tie ranks against the right answer, so a model that collapsed to one embedding (every score
    equal) scores chance or below, not perfect; a row with a non-finite score (a diverged model's NaN)
    is never a hit.
    """
    rank = (scores >= own).sum(dim=1) - 1  # minus the own column, which equals itself
    broken = ~torch.isfinite(scores).all(dim=1)
    return rank.masked_fill(broken, scores.shape[1])


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Share of rows whose label is among the ``k`` highest logits, for each k (k above the number of
    classes counts every finite row). A class scoring the same as the label ranks before it."""
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not match")
    n, classes = logits.shape
    if n == 0:
        return {k: float("nan") for k in ks}
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(f"labels must lie in [0, {classes}), got {labels.min().item()}..{labels.max().item()}")
    rank = _ranks(logits, logits.gather(1, labels.view(-1, 1)))
    return {k: (rank < k).float().mean().item() for k in ks}


def recall_at_k(scores: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Row i's match is column i: the share of rows whose match ranks among the ``k`` best columns.
    A column scoring the same as the match ranks before it (identical embeddings do not find anything)."""
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"retrieval scores must be square (one text per image), got {tuple(scores.shape)}")
    if scores.shape[0] == 0:
        return {k: float("nan") for k in ks}
    rank = _ranks(scores, scores.diagonal().view(-1, 1))
    return {k: (rank < k).float().mean().item() for k in ks}


def retrieval_recall(image_emb: torch.Tensor, text_emb: torch.Tensor,
                     ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Image->text and text->image recall@K of paired, normalised embeddings (row i of each is one
    sample): ``{"image_to_text_R@1": ..., "text_to_image_R@1": ...}``."""
    if image_emb.shape != text_emb.shape:
        raise ValueError(f"{image_emb.shape[0]} image and {text_emb.shape[0]} text embeddings: they must pair up")
    scores = image_emb.float() @ text_emb.float().T
    out = {f"image_to_text_R@{k}": v for k, v in recall_at_k(scores, ks).items()}
    out.update({f"text_to_image_R@{k}": v for k, v in recall_at_k(scores.T, ks).items()})
    return out
