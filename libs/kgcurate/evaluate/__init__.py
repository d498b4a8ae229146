"""Evaluation of a trained CLIP model, without Spark: labelled image folders and offline sets
(:mod:`.folders`, :mod:`.offline`), zero-shot classification and retrieval (:mod:`.zeroshot`,
:mod:`.retrieval`) over the metric math of :mod:`.metrics`, results as rows (:mod:`.results`)."""
