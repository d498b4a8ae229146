"""The metric math, on plain tensors: top-k accuracy of class logits and retrieval recall@K both ways.

Pure functions of scores and labels, so they are tested against a plain loop on synthetic embeddings
and a model never has to be loaded to check them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Share of rows whose label is among the ``k`` highest logits, for each k (k above the number of
    classes counts every row). Ties rank by column order (``torch.topk``)."""
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not match")
    n, classes = logits.shape
    if n == 0:
        return {k: float("nan") for k in ks}
    top = logits.topk(min(max(ks), classes), dim=1).indices
    hit = top == labels.view(-1, 1)
    return {k: hit[:, :k].any(dim=1).float().mean().item() for k in ks}


def recall_at_k(scores: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Row i's match is column i: the share of rows whose match ranks among the ``k`` best columns.
    A column scoring the same as the match ranks after it (the match is counted found)."""
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"retrieval scores must be square (one text per image), got {tuple(scores.shape)}")
    if scores.shape[0] == 0:
        return {k: float("nan") for k in ks}
    own = scores.diagonal().view(-1, 1)
    rank = (scores > own).sum(dim=1)  # columns strictly better than the match
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
