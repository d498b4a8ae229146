"""open_clip's own trainer with our text draw: the one module here that imports torch and open_clip.

The hook. ``open_clip_train.data.get_wds_dataset`` builds its training pipeline from module-level names
looked up when it is called; its first per-sample stage is ``tarfile_to_samples_nothrow`` (tar members
grouped into raw samples: ``jpg``, ``txt``, ``json`` bytes), and everything after it (shuffle, the
``txt`` filter, decode, augment, the tokenizer of ``text=txt``) reads ``txt``. So we replace that one
name, for the trainer's call only, with :class:`DrawTexts`: their function, then each raw sample's
``txt`` set to the text :func:`kgcurate.train.texts.draw_text` picks from its ``json``. Nothing of
open_clip is copied or forked; the validation pipeline (``wds.tarfile_to_samples``) is untouched. Why
not elsewhere: the tokenizer sees only the ``txt`` string (not the JSON), ``preprocess_txt`` is not on
the webdataset path, and a custom ``--dataset-type`` would mean copying ``get_wds_dataset``.

``pass_index``: how many times this loader has started over its shards (each epoch, or a wrap-around
inside one) plus the epoch training resumed at, so every pass draws anew and a rerun draws the same.

Runs in-process (``run``) or as ``python -m kgcurate.train.launch [draw options] -- [open_clip args]``,
which is what each torchrun process executes.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator

from open_clip_train import data as oc_data

from kgcurate.bad_input import SHARD_DAMAGED, BadInput, shard_error
from kgcurate.train import bad_samples
from kgcurate.train.texts import text_of_json

log = logging.getLogger("kgcurate.train")


def _original():
    """open_clip's own function, even while ours is installed (and in a worker that imported us anew)."""
    current = oc_data.tarfile_to_samples_nothrow
    return current.original if isinstance(current, DrawTexts) else current


class DrawTexts:
    """A drop-in for ``tarfile_to_samples_nothrow`` whose samples carry a drawn text as ``txt``.

    With ``bad_dir``, what it cannot fully use (a sample whose json does not parse, a shard that cannot
    be read on) is spilled there once per worker for ``bad_records`` (:mod:`kgcurate.train.bad_samples`)."""

    def __init__(self, kg_text_share: float, seed: int, start_pass: int = 0, bad_dir: str | None = None) -> None:
        self.original = _original()
        self.kg_text_share, self.seed, self.start_pass = kg_text_share, seed, start_pass
        self.bad_dir = bad_dir
        self.passes = 0
        self.unreadable = 0  # samples whose json could not be read (they show their txt)
        self.damaged = 0  # shard errors webdataset skipped past
        self._spilled: set[tuple] = set()

    def _bad(self, item: BadInput) -> None:
        key = (item.source_file, item.offset, item.reason)
        if self.bad_dir is None or key in self._spilled:
            return
        self._spilled.add(key)
        try:
            bad_samples.spill(self.bad_dir, item)
        except OSError as exc:  # never stops training; the count and the log still say it
            log.warning("could not note bad input %s in %s: %s", item, self.bad_dir, exc)

    def __call__(self, src, handler=oc_data.log_and_continue) -> Iterator[dict]:
        pass_index = self.start_pass + self.passes
        self.passes += 1
        visits: dict[str, int] = {}  # a shard drawn twice in a pass (resampled) draws anew
        url, position = None, 0  # the shard being read, samples read from it in this visit
        keys: set[str] = set()  # keys of this visit: a key again means the shard was drawn again back to back

        def noting(exc: Exception) -> bool:
            self.damaged += 1
            where, why = shard_error(exc)
            self._bad(BadInput(where, position if where == url else 0, SHARD_DAMAGED, why))
            return handler(exc)

        for sample in self.original(src, handler=noting):
            key = sample.get("__key__")
            if sample.get("__url__") != url or key in keys:  # keys are unique within one tar
                url, position, keys = sample.get("__url__"), 0, set()
                visits[url] = visits.get(url, -1) + 1
            keys.add(key)
            position += 1
            txt = sample.get("txt")
            primary = txt.decode("utf-8", "replace") if isinstance(txt, bytes) else (txt or "")
            text, ok = text_of_json(sample.get("json"), primary, self.kg_text_share, self.seed, pass_index,
                                    sample["__key__"], visits[url])
            if not ok:
                self.unreadable += 1
                self._bad(BadInput(str(url), position - 1, bad_samples.JSON_UNREADABLE, f"{sample['__key__']}.json"))
                if self.unreadable in (1, 1000):
                    log.warning("sample %s of %s: no readable json texts, showing its txt (%d so far)",
                                sample["__key__"], url, self.unreadable)
            if text:
                sample["txt"] = text.encode()
            yield sample


@contextlib.contextmanager
def installed(draw: DrawTexts) -> Iterator[DrawTexts]:
    """``draw`` in place of open_clip's sample reader for the duration (restored after, even on error)."""
    before = oc_data.tarfile_to_samples_nothrow
    oc_data.tarfile_to_samples_nothrow = draw
    try:
        yield draw
    finally:
        oc_data.tarfile_to_samples_nothrow = before


def run(argv: list[str], kg_text_share: float, seed: int, start_pass: int = 0,
        model_config_dir: str | None = None, bad_dir: str | None = None) -> int:
    """``open_clip_train.main.main(argv)`` with our text draw; its return as an exit code (it returns -1
    for the errors it only prints)."""
    import open_clip
    from open_clip_train import main as oc_main

    if model_config_dir:
        open_clip.add_model_config(model_config_dir)
    with installed(DrawTexts(kg_text_share, seed, start_pass, bad_dir)), own_logging():
        rc = oc_main.main(list(argv))
    return 0 if not rc else 1


@contextlib.contextmanager
def own_logging() -> Iterator[None]:
    """open_clip's ``setup_logging`` adds a console and an ``out.log`` handler to the root logger and sets
    every logger to INFO: during its run they are the only handlers (no line printed twice); after it, the
    handlers it added are closed (a second run in the process must not write into the first one's log)
    and the levels are restored (torch's INFO chatter at exit stays quiet)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: lg.level for name, lg in root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    for h in handlers:
        root.removeHandler(h)
    try:
        yield
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)
        for name, lg in root.manager.loggerDict.items():
            if isinstance(lg, logging.Logger):
                lg.setLevel(levels.get(name, logging.WARNING if name.startswith("torch") else logging.NOTSET))


def launch_args(kg_text_share: float, seed: int, start_pass: int, model_config_dir: str | None,
                argv: list[str], bad_dir: str | None = None) -> list[str]:
    """This module's own arguments (for torchrun): the draw's, then ``--``, then open_clip's."""
    extra = ["--model-config-dir", model_config_dir] if model_config_dir else []
    extra += ["--bad-input-dir", bad_dir] if bad_dir else []
    return ["--kg-text-share", repr(kg_text_share), "--text-seed", str(seed), "--start-pass", str(start_pass),
            *extra, "--", *argv]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="python -m kgcurate.train.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--kg-text-share", type=float, required=True)
    parser.add_argument("--text-seed", type=int, default=0)
    parser.add_argument("--start-pass", type=int, default=0)
    parser.add_argument("--model-config-dir")
    parser.add_argument("--bad-input-dir")
    ours = parser.parse_args(argv[:split])
    return run(argv[split + 1:], ours.kg_text_share, ours.text_seed, ours.start_pass, ours.model_config_dir,
               ours.bad_input_dir)


if __name__ == "__main__":
    sys.exit(main())
