"""The experiment folder open_clip writes (``<experiments>/<name>/``: ``out.log``, ``params.txt``,
``checkpoints/epoch_N.pt``) and our ``manifest.json`` next to it: checks before a run, what a run left."""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from kgcurate.errors import UserError

# train_runs.status / manifest status: evaluate picks the newest COMPLETED run.
RUNNING, COMPLETED = "running", "completed"

MANIFEST = "manifest.json"
LOG = "out.log"  # open_clip's log of the master process
# open_clip_train.train: "Train Epoch: 0 [ 64/512 (12%)] ... Contrastive_loss: 4.1 (4.2) Loss: 4.1 (4.2)"
_LINE = re.compile(r"Train Epoch: (\d+) \[\s*(\d+)/(\d+) .*?(?<![\w])Loss: ([-+0-9.eE]+|nan|inf)")
_EPOCH = re.compile(r"epoch_(\d+)\.pt$")


@dataclass
class Manifest:
    """``manifest.json``: what the evaluate stage and a person need to find and trust a checkpoint."""

    train_run_id: str
    model: str
    model_config_dir: str | None
    experiment_dir: str
    args: list[str]
    curated_run_id: str
    download_run_id: str
    download_runs_version: int
    downloads_version: int | None
    kg_text_share: float
    seed: int
    packages: dict[str, str]
    started_at: str
    status: str = "running"  # RUNNING, then COMPLETED
    checkpoint: str | None = None  # the latest .pt, open_clip's own format
    epochs_done: int = 0
    samples_seen: int = 0
    steps: int = 0
    final_loss: float | None = None
    loss_curve: list[list[float]] = field(default_factory=list)  # [[step, loss], ...]
    finished_at: str | None = None


def write_manifest(m: Manifest) -> str:
    path = os.path.join(m.experiment_dir, MANIFEST)
    os.makedirs(m.experiment_dir, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(asdict(m), f, indent=1)
        f.write("\n")
    os.replace(tmp, path)  # a reader never sees half a manifest
    return path


def read_manifest(experiment_dir: str) -> Manifest | None:
    path = os.path.join(experiment_dir, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return Manifest(**json.load(f))
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path} is not a kgcurate manifest ({exc}): move the folder away or pass another "
                        "--name") from None


def checkpoints(experiment_dir: str) -> list[str]:
    """The folder's ``epoch_N.pt`` files, by epoch."""
    found = glob.glob(os.path.join(experiment_dir, "checkpoints", "epoch_*.pt"))
    return sorted((p for p in found if _EPOCH.search(p)), key=lambda p: int(_EPOCH.search(p).group(1)))

TORN = ".torn"  # suffix of a checkpoint set aside: not a .pt, so neither we nor open_clip's --resume see it


def is_whole(path: str) -> bool:
    """Checkpoints are zip archives: a cut one has no end-of-archive record, which is cheap to check (a
    file renamed away meanwhile is not whole either)."""
    import zipfile

    return zipfile.is_zipfile(path)


def whole_checkpoints(experiment_dir: str) -> list[str]:
    """:func:`checkpoints` without the newest ones that are not whole: what a resume continues from,
    whether or not :func:`set_aside_torn` has renamed them yet. Under torchrun every process takes its
    start epoch from this while rank 0 alone renames, so a process looking before, during or after the
    renaming decides the same (one that went by the raw listing skipped the cut epoch, the others trained
    it, and the job hung)."""
    return _without_cut(checkpoints(experiment_dir))


def _without_cut(saved: list[str]) -> list[str]:
    """``saved`` (oldest first) up to its newest whole checkpoint."""
    end = len(saved)
    while end and not is_whole(saved[end - 1]):
        end -= 1
    return saved[:end]


def set_aside_torn(experiment_dir: str) -> list[str]:
    """Rename the newest checkpoints that are not whole (``epoch_N.pt.torn``), newest first, until one is:
    the paths set aside. open_clip's ``torch.save`` writes ``epoch_N.pt`` in place, so a preemption during
    the save leaves a cut file under the finished name; taken as done, a resume recorded it as the
    completed model (or failed on it every time)."""
    saved = checkpoints(experiment_dir)
    moved = saved[len(_without_cut(saved)):][::-1]
    for path in moved:
        os.replace(path, path + TORN)
    return moved


def rebased(path: str | None, old_dir: str, new_dir: str) -> str | None:
    """``path`` at the same place under ``new_dir`` when it lies under ``old_dir`` (a checkpoint of a
    moved or copied experiment folder); any other path as it is."""
    if not path:
        return path
    old, full = os.path.abspath(old_dir), os.path.abspath(path)
    if os.path.commonpath([old, full]) != old:
        return path
    return os.path.join(new_dir, os.path.relpath(full, old))


def relocated(manifest: Manifest, experiment_dir: str, new_run_id: Callable[[], str]) -> tuple[Manifest, str]:
    """The manifest of a folder continued under another path than it recorded, and what happened: a
    moved folder keeps its train run (its row now names the new path); a copy, whose original still holds
    the same run, becomes a new train run (resuming it updated the original's row and manifest). Either
    way its checkpoint is the one in the new folder: a finished run's record is kept as it was, and a
    path into the old folder named a file that was gone (moved) or another run's (copied)."""
    if os.path.abspath(manifest.experiment_dir) == os.path.abspath(experiment_dir):
        return manifest, ""
    try:
        original = read_manifest(manifest.experiment_dir)
    except UserError:
        original = None
    copied = original is not None and original.train_run_id == manifest.train_run_id
    what = f"copied from {manifest.experiment_dir}" if copied else f"moved from {manifest.experiment_dir}"
    return replace(manifest, experiment_dir=experiment_dir,
                   train_run_id=new_run_id() if copied else manifest.train_run_id,
                   checkpoint=rebased(manifest.checkpoint, manifest.experiment_dir, experiment_dir)), what


def epoch_of(checkpoint: str | None) -> int:
    m = _EPOCH.search(checkpoint or "")
    return int(m.group(1)) if m else 0


def is_started(experiment_dir: str) -> bool:
    """open_clip's own test (its log file exists) or anything of ours or its checkpoints."""
    return any(os.path.exists(os.path.join(experiment_dir, n)) for n in (LOG, MANIFEST, "checkpoints"))


def check_start(experiment_dir: str, resume: bool, expected: Mapping[str, Any]) -> Manifest | None:
    """Before any heavy work: an existing experiment is refused without ``resume`` (open_clip itself only
    prints an error and returns, which a caller sees as success), and with it must be the same experiment
    (``expected``: manifest fields such as model, kg_text_share). Returns the manifest to continue."""
    if not is_started(experiment_dir):
        return None
    done = checkpoints(experiment_dir)
    if not resume:
        state = f"epoch {epoch_of(done[-1])} saved" if done else "no checkpoint yet"
        raise UserError(f"experiment {experiment_dir} exists ({state}): add --resume to continue it from its latest "
                        "checkpoint, or pass another --name")
    manifest = read_manifest(experiment_dir)
    if manifest is not None:
        for key, value in expected.items():
            if value is not None and getattr(manifest, key) != value:
                raise UserError(f"experiment {experiment_dir} was started with {key}={getattr(manifest, key)!r}, not "
                                f"{value!r}: resume it with the same setting, or pass another --name")
    return manifest


def unfinished(root: str, expected: Mapping[str, Any], name_of: Callable[[str], str],
               other_than: str) -> list[Manifest]:
    """Experiments under ``root`` (not ``other_than``) that are still ``running`` under the default name of
    their own curated run (``name_of(curated_run_id)``) with the ``expected`` settings: what a
    ``--resume`` without ``--name`` meant to continue before a newer download renamed its target."""
    found = []
    for entry in sorted(glob.glob(os.path.join(root, "*", MANIFEST))):
        folder = os.path.dirname(entry)
        if os.path.abspath(folder) == os.path.abspath(other_than):
            continue
        try:
            m = read_manifest(folder)
        except UserError:
            continue  # not ours to judge here; naming it again would be noise
        if m is None or m.status != RUNNING or os.path.basename(folder) != name_of(m.curated_run_id):
            continue
        if all(value is None or getattr(m, key) == value for key, value in expected.items()):
            found.append(m)
    return found


def loss_curve(log_text: str, global_batch: int) -> list[list[float]]:
    """[[step, loss], ...] from open_clip's log lines; a step logged twice (a resumed epoch) keeps its
    last value. ``global_batch``: samples per step over all processes."""
    by_step: dict[int, float] = {}
    for m in _LINE.finditer(log_text):
        epoch, seen, per_epoch, loss = int(m.group(1)), int(m.group(2)), int(m.group(3)), float(m.group(4))
        by_step[(epoch * per_epoch + seen) // global_batch] = loss
    return [[step, by_step[step]] for step in sorted(by_step)]


def read_log(experiment_dir: str) -> str:
    path = os.path.join(experiment_dir, LOG)
    if not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return f.read()
