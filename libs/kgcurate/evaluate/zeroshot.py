"""Zero-shot classification of a labelled folder: class-name prompts through open_clip's
``build_zero_shot_classifier`` with its ImageNet templates, then top-k accuracy of the image
embeddings against the class embeddings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from kgcurate.bad_input import SAMPLE_CHARS, BadInput
from kgcurate.evaluate import metrics
from kgcurate.evaluate.folders import LabelledFolder, TransformedFolder
from kgcurate.evaluate.model import LoadedModel
from kgcurate.evaluate.retrieval import NO_IMAGE

TEMPLATES = ("openai", "simple")  # open_clip.zero_shot_metadata: OPENAI_ / SIMPLE_IMAGENET_TEMPLATES


@dataclass(frozen=True)
class ZeroShotResult:
    accuracy: dict[int, float]  # k -> top-k accuracy
    samples: int  # images scored
    classes: int
    unreadable: list[tuple[str, str]]  # (path, why) of images that could not be read
    same_prompts: list[list[int]] = field(default_factory=list)  # classes the model cannot tell apart

    @property
    def bad(self) -> list[BadInput]:
        """The unreadable images as bad_records rows: the file, offset 0 (the whole file)."""
        return [BadInput(path, 0, NO_IMAGE, why[:SAMPLE_CHARS]) for path, why in self.unreadable]


def templates(name: str) -> Sequence[object]:
    from open_clip import zero_shot_metadata as z

    return {"openai": z.OPENAI_IMAGENET_TEMPLATES, "simple": z.SIMPLE_IMAGENET_TEMPLATES}[name]


def identical_prompts(classnames: Sequence[str], template_set: Sequence[object],
                      tokenizer: Callable[[list[str]], torch.Tensor]) -> list[list[int]]:
    """Groups of two or more class indices whose prompts the model sees as the same (equal token ids for
    every template: the same name, or names differing only in case or spacing, which the tokenizer drops).
    Their classifier columns, hence logits, are identical: the lowest index wins every tie
    (:func:`metrics.topk_accuracy`), so the others are never top-1 however good the model."""
    def prompts(name: str) -> list[str]:
        return [t.format(name) if isinstance(t, str) else t(name) for t in template_set]  # type: ignore[operator]

    def key(texts: list[str]) -> tuple:
        return tuple(map(tuple, tokenizer(texts).tolist()))

    by_name: dict[tuple, list[int]] = {}
    for i, ids in enumerate(tokenizer(list(classnames)).tolist()):  # the names in one batch, then all
        by_name.setdefault(tuple(ids), []).append(i)  # prompts of the few alike
    groups = []
    for alike in (g for g in by_name.values() if len(g) > 1):
        by_prompts: dict[tuple, list[int]] = {}
        for i in alike:
            by_prompts.setdefault(key(prompts(classnames[i])), []).append(i)
        groups += [g for g in by_prompts.values() if len(g) > 1]
    return sorted(groups)


def describe_same(folder: LabelledFolder, groups: list[list[int]]) -> list[str]:
    """One phrase per group: its class folders and their name, e.g. ``n03773504, n04008634 ('missile')``."""
    return [f"{', '.join(folder.folders[i] if folder.folders else str(i) for i in g)} "
            f"({' / '.join(dict.fromkeys(repr(folder.classnames[i]) for i in g))})" for g in groups]


def _collate(items: list) -> tuple[torch.Tensor | None, torch.Tensor, list[tuple[str, str]]]:
    good = [(x, y) for x, y, _, err in items if err is None]
    bad = [(path, err) for _, _, path, err in items if err is not None]
    if not good:
        return None, torch.empty(0, dtype=torch.long), bad
    return torch.stack([x for x, _ in good]), torch.tensor([y for _, y in good]), bad


def evaluate(m: LoadedModel, folder: LabelledFolder, template_set: str = "openai", ks: Sequence[int] = (1, 5),
             batch_size: int = 64, workers: int = 0) -> ZeroShotResult:
    """Top-k accuracy of ``m`` on ``folder``; unreadable images are listed, not scored."""
    from open_clip import build_zero_shot_classifier

    prompts = templates(template_set)
    same = identical_prompts(folder.classnames, prompts, m.tokenizer)
    classifier = build_zero_shot_classifier(m.model, m.tokenizer, folder.classnames, prompts, device=m.device)
    loader = torch.utils.data.DataLoader(TransformedFolder(folder, m.preprocess), batch_size=batch_size,
                                         num_workers=workers, collate_fn=_collate)
    logits, labels, unreadable = [], [], []
    with torch.no_grad():
        for images, y, bad in loader:
            unreadable += bad
            if images is None:
                continue
            emb = m.model.encode_image(images.to(m.device), normalize=True)
            logits.append((emb @ classifier).float().cpu())
            labels.append(y)
    n = sum(len(y) for y in labels)
    if not n:
        return ZeroShotResult({k: float("nan") for k in ks}, 0, len(folder.classnames), unreadable, same)
    acc = metrics.topk_accuracy(torch.cat(logits), torch.cat(labels), ks)
    return ZeroShotResult(acc, n, len(folder.classnames), unreadable, same)
