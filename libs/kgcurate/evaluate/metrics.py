"""The metric math, on plain tensors: top-k accuracy of class logits and retrieval recall@K both ways.

Pure functions of scores and labels, so they are tested against a plain loop on synthetic embeddings
and a model never has to be loaded to check them.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch

NEVER = torch.iinfo(torch.int64).max  # the rank of a row with a non-finite score: no k reaches it (k = columns did)


def _ranks(scores: torch.Tensor, own: torch.Tensor, same: torch.Tensor | None = None) -> torch.Tensor:
    """For each row, how many other columns score at least as high as its own column's ``own`` score;
    with ``same`` (rows x columns, True where a column is as right as the row's own: the same caption
    tokens, the same image), only the other columns count (retrieval's rule).

    A tie ranks against the right answer, so a model that collapsed to one embedding (every score
    equal) scores chance or below, not perfect; a row with a non-finite score (a diverged model's NaN)
    is never a hit.
    """
    ahead = scores >= own
    # minus the own column, which equals itself; with ``same``, minus every column that is the answer too
    rank = ahead.sum(dim=1) - 1 if same is None else (ahead & ~same).sum(dim=1)
    broken = ~torch.isfinite(scores).all(dim=1)
    return rank.masked_fill(broken, NEVER)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Share of rows whose label is among the ``k`` highest logits, for each k (k above the number of
    classes counts every finite row); a row with a non-finite logit is never a hit.

    A tie goes to the lower class index: the label's rank is the number of classes scoring above it plus
    those level with it at a lower index. That is open_clip's protocol (``torch.topk`` over the logits,
    which lists tied classes one after the other, so exactly one of them is credited at each rank) with
    the order fixed: torch leaves it unspecified (it changes with k and the data), so open_clip's number
    for tied rows is arbitrary; where nothing ties the two agree exactly. Ties are not rare: two classes
    with the same name ("missile" twice in ImageNet) get the same prompts, hence the same logits;
    counting every tie against the label made both of them misses on every image.
    """
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not match")
    n, classes = logits.shape
    if n == 0:
        return {k: float("nan") for k in ks}
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(f"labels must lie in [0, {classes}), got {labels.min().item()}..{labels.max().item()}")
    own = logits.gather(1, labels.view(-1, 1))
    lower = torch.arange(classes).view(1, -1) < labels.view(-1, 1)
    rank = ((logits > own) | ((logits == own) & lower)).sum(dim=1)
    rank = rank.masked_fill(~torch.isfinite(logits).all(dim=1), NEVER)
    return {k: (rank < k).float().mean().item() for k in ks}


def recall_at_k(scores: torch.Tensor, ks: Sequence[int] = (1, 5, 10),
                groups: torch.Tensor | None = None) -> dict[int, float]:
    """Row i's match is column i: the share of rows whose match ranks among the ``k`` best columns.
    A column scoring the same as the match ranks before it (identical embeddings do not find anything),
    unless ``groups`` (one id per column) says it is the same answer: web captions repeat ("image",
    a product name), and a perfect model cannot rank a caption ahead of its own copies."""
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"retrieval scores must be square (one text per image), got {tuple(scores.shape)}")
    if scores.shape[0] == 0:
        return {k: float("nan") for k in ks}
    same = None if groups is None else groups.view(-1, 1) == groups.view(1, -1)
    rank = _ranks(scores, scores.diagonal().view(-1, 1), same)
    return {k: (rank < k).float().mean().item() for k in ks}


def group_ids(values: Sequence[Hashable]) -> torch.Tensor:
    """One id per distinct value, in first-seen order: equal captions (or image hashes) share one."""
    first: dict[object, int] = {}
    return torch.tensor([first.setdefault(v, len(first)) for v in values], dtype=torch.long)


def retrieval_recall(image_emb: torch.Tensor, text_emb: torch.Tensor, ks: Sequence[int] = (1, 5, 10),
                     texts: Sequence[Hashable] | None = None,
                     images: Sequence[Hashable] | None = None) -> dict[str, float]:
    """Image->text and text->image recall@K of paired, normalised embeddings (row i of each is one
    sample): ``{"image_to_text_R@1": ..., "text_to_image_R@1": ...}``. ``texts`` (a key per caption:
    its token ids, what the model sees, so "Red car" and "red car " are one caption to a lower-casing
    tokenizer) and ``images`` (a hash per image): another sample's identical caption is found as the
    right text, another sample's identical image as the right image."""
    if image_emb.shape != text_emb.shape:
        raise ValueError(f"{image_emb.shape[0]} image and {text_emb.shape[0]} text embeddings: they must pair up")
    scores = image_emb.float() @ text_emb.float().T
    text_groups = None if texts is None else group_ids(texts)
    image_groups = None if images is None else group_ids(images)
    out = {f"image_to_text_R@{k}": v for k, v in recall_at_k(scores, ks, text_groups).items()}
    out.update({f"text_to_image_R@{k}": v for k, v in recall_at_k(scores.T, ks, image_groups).items()})
    return out
