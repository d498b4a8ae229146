"""``kgcurate train``: a CLIP model trained on one download's shards by open_clip's own trainer.

No Spark: the lake is read with ``deltalake`` (``download_runs`` at a pinned version, ``downloads`` for a
cross-check) into a shard list and sample count (:mod:`kgcurate.train.lake_input`); the ``train`` section
becomes open_clip_train's argument list (:mod:`kgcurate.train.trainer_args`); ``open_clip_train.main``
runs in this process (``--gpus 1``, a GPU or the CPU) or under torchrun (``--gpus N``), with each sample's
text drawn from its ``KEY.json`` at every pass (:mod:`kgcurate.train.launch`, ``--kg-text-share``).

The experiment folder (``<experiments>/<name>``) holds open_clip's log and checkpoints and our
``manifest.json``; an existing one is refused unless ``--resume``, which continues from its latest
checkpoint with the inputs its manifest pinned. The ``train_runs`` row (one per experiment, MERGEd on
``train_run_id``) is written when the trainer has finished: a failed run leaves the table as it was.

One run per experiment: the process that checks the folder and records (rank 0 under torchrun) holds
the lease ``train:<experiment folder>`` in the ``leases`` table (kgcurate.leases, the Spark stages'
lease written with deltalake) from before it looks at the folder until the train_runs row is written.
A second run of the same experiment (a resume started twice, two fresh starts racing for one name)
fails at once with one line; experiments with other names train side by side, each writing its own
train_runs row. What the trainer could not fully use (a sample's unreadable json, a cut-off shard) is
noted by the dataloader workers and recorded in ``bad_records`` at the end (kgcurate.train.bad_samples).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from kgcurate import lake_rs, leases, s3, settings, tables
from kgcurate.context import Context
from kgcurate.errors import UserError

if TYPE_CHECKING:  # kgcurate.train is imported when the command runs
    from kgcurate.train.experiment import Manifest
    from kgcurate.train.lake_input import TrainInput

JOB = "train"


@dataclass(frozen=True)
class TrainSummary:
    train_run_id: str
    experiment_dir: str
    curated_run_id: str
    download_run_id: str
    shards: int
    samples: int  # in the shards (download_runs)
    downloaded_samples: int | None  # stored per `downloads` (a cross-check; None without the table)
    resumed_from_epoch: int
    epochs_done: int
    samples_seen: int
    steps: int
    first_loss: float | None
    final_loss: float | None
    checkpoint: str | None
    train_runs_version: int | None
    seconds: float
    command: tuple[str, ...] = ()  # the torchrun command when --gpus > 1
    bad_samples: int = 0  # samples or shards the trainer could not fully use (in bad_records)
    bad_records: int = 0  # rows this run added to bad_records (a resume or rerun adds none)
    unfinished_elsewhere: tuple[str, ...] = ()  # running experiments a --resume without --name did not continue


def prepare(args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    """Checks before the lake or an experiment folder is touched: the [train] extra, the options a YAML file
    can get wrong, a model name open_clip does not know."""
    o = settings.section(cfg, settings.TrainOptions)
    missing = [m for m in ("torch", "open_clip_train", "deltalake") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"kgcurate train needs {', '.join(missing)} (the [train] extra): pip install -e '.[train]' "
                        "(make test installs it)")
    if not 0.0 <= float(o.kg_text_share) <= 1.0:
        raise UserError(f"train.kg_text_share is {o.kg_text_share}: it is a probability, between 0 and 1")
    if o.model_config_dir and not os.path.isdir(o.model_config_dir):
        raise UserError(f"train.model_config_dir {o.model_config_dir} is not a folder: pass the folder of the "
                        "model's JSON config (conf/models)")
    from kgcurate.train.trainer_args import known_model

    if not known_model(o.model, o.model_config_dir):
        raise UserError(f"train.model {o.model!r} has no open_clip config: pass --model-config-dir with "
                        f"{o.model}.json, or one of open_clip's models (open_clip.list_models())")
    return {}


def default_name(o: settings.TrainOptions, curated_run_id: str) -> str:
    return f"{o.model.replace('/', '-')}-{curated_run_id}-kg{round(o.kg_text_share * 100)}"


def same_experiment(o: settings.TrainOptions) -> dict[str, Any]:
    """The manifest fields a resumed experiment must share with the options."""
    return {"model": o.model, "kg_text_share": o.kg_text_share, "seed": o.seed}


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_gpus(wanted: int, have: int) -> None:
    """Several processes need as many GPUs: open_clip wraps the model in DDP with a device id, which
    torch refuses for CPU modules (tried: every rank fails after loading)."""
    if wanted > 1 and have < wanted:
        raise UserError(f"train --gpus {wanted}: torch sees {have} GPU(s), and open_clip's multi-process training "
                        "runs on GPUs only: use --gpus 1 (the CPU, or one GPU) or a machine with the GPUs")


def torchrun_rank() -> tuple[int, int] | None:
    """(rank, world size) when this process is one of several that torchrun started around the stage itself
    (deploy/ runs ``torchrun --nproc_per_node=N jobs/train.py``); None otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1 and "LOCAL_RANK" in os.environ:
        return int(os.environ.get("RANK", os.environ["LOCAL_RANK"])), world
    return None


def run_trainer(o: settings.TrainOptions, argv: list[str], start_pass: int, ctx: Context,
                in_process: bool, bad_dir: str | None = None) -> tuple[int, tuple]:
    """open_clip's trainer in this process, or ``--gpus`` torchrun processes; (exit code, torchrun command)."""
    from kgcurate.train import launch, trainer_args

    config_dir = os.path.abspath(o.model_config_dir) if o.model_config_dir else None
    if in_process:
        return launch.run(argv, o.kg_text_share, o.seed, start_pass, config_dir, bad_dir), ()
    command = trainer_args.torchrun_command(sys.executable, o.gpus, launch.launch_args(
        o.kg_text_share, o.seed, start_pass, config_dir, argv, bad_dir))
    ctx.log.info("%s: %s", JOB, " ".join(command))
    return subprocess.run(command, check=False).returncode, tuple(command)


def experiment_location(ctx: Context, o: settings.TrainOptions) -> tuple[TrainInput, str]:
    """(the lake input, the experiment folder): what names the experiment, read before its lease."""
    from kgcurate.train import lake_input

    inp = lake_input.read_input(ctx.root, o.download_run_id, o.download_runs_version)
    return inp, os.path.abspath(os.path.join(o.experiments, o.name or default_name(o, inp.curated_run_id)))


def experiment_start(ctx: Context, o: settings.TrainOptions, inp: TrainInput, experiment_dir: str,
                     master: bool = True) -> tuple[TrainInput, Manifest | None]:
    """(the input to train on, the manifest to continue or None): an existing folder is refused without
    --resume, and a resume reads the input its manifest pinned. Under torchrun only the master checks the
    folder (the others would see what it has just written)."""
    from kgcurate.train import experiment as ex
    from kgcurate.train import lake_input

    manifest = (ex.check_start(experiment_dir, o.resume, same_experiment(o)) if master
                else ex.read_manifest(experiment_dir))
    if manifest is not None:
        manifest, what = ex.relocated(manifest, experiment_dir, ctx.new_run_id)
        if what and master:
            ctx.log.warning("%s: %s was %s: recorded as train run %s in %s", JOB, experiment_dir, what,
                            manifest.train_run_id, tables.TRAIN_RUNS)
    if manifest is not None and (manifest.download_runs_version, manifest.download_run_id) != (
            inp.download_runs_version, inp.download_run_id):
        inp = lake_input.read_input(ctx.root, manifest.download_run_id, manifest.download_runs_version)
    if not inp.files:
        raise UserError(f"download run {inp.download_run_id} stored no images in {inp.out}: nothing to train on "
                        "(see table downloads for the statuses)")
    return inp, manifest


def lease_scope(experiment_dir: str) -> str:
    """The lease of a training run: one run per experiment folder (see the module docstring)."""
    return f"{JOB}:{experiment_dir}"


def new_manifest(ctx: Context, o: settings.TrainOptions, inp: TrainInput, experiment_dir: str,
                 argv: list[str]) -> Manifest:
    from kgcurate.train import experiment as ex
    from kgcurate.train import runs

    return ex.Manifest(
        train_run_id=ctx.new_run_id(), model=o.model,
        model_config_dir=os.path.abspath(o.model_config_dir) if o.model_config_dir else None,
        experiment_dir=experiment_dir, args=argv, curated_run_id=inp.curated_run_id,
        download_run_id=inp.download_run_id, download_runs_version=inp.download_runs_version,
        downloads_version=inp.downloads_version, kg_text_share=o.kg_text_share, seed=o.seed,
        packages=runs.package_versions(), started_at=datetime.now(timezone.utc).isoformat())


def finished(manifest: Manifest, global_batch: int) -> Manifest:
    """The manifest as the experiment folder now stands: latest checkpoint, loss curve, samples seen."""
    from kgcurate.train import experiment as ex

    curve = ex.loss_curve(ex.read_log(manifest.experiment_dir), global_batch)
    saved = ex.checkpoints(manifest.experiment_dir)
    steps = int(curve[-1][0]) if curve else 0
    return replace(manifest, status=ex.COMPLETED, checkpoint=saved[-1] if saved else None,
                   epochs_done=ex.epoch_of(saved[-1] if saved else None), steps=steps,
                   samples_seen=steps * global_batch, final_loss=curve[-1][1] if curve else None,
                   loss_curve=curve, finished_at=datetime.now(timezone.utc).isoformat())


def execute(ctx: Context, cfg: dict[str, Any]) -> TrainSummary:
    o = settings.section(cfg, settings.TrainOptions)
    t0 = time.monotonic()
    rank = torchrun_rank()  # inside torchrun: this process trains, rank 0 alone checks and records
    master = rank is None or rank[0] == 0
    inp, experiment_dir = experiment_location(ctx, o)
    with leases.held(ctx.root, lease_scope(experiment_dir)) if master else contextlib.nullcontext():
        return train_experiment(ctx, o, inp, experiment_dir, rank, t0)


def train_experiment(ctx: Context, o: settings.TrainOptions, inp: TrainInput, experiment_dir: str,
                     rank: tuple[int, int] | None, t0: float) -> TrainSummary:
    from kgcurate.train import bad_samples, runs, trainer_args
    from kgcurate.train import experiment as ex

    master, processes = (rank[0] == 0, rank[1]) if rank else (True, o.gpus)
    inp, manifest = experiment_start(ctx, o, inp, experiment_dir, master)
    elsewhere: tuple[str, ...] = ()
    if master and manifest is None and o.resume and not o.name and not o.download_run_id:
        # the folder is named after the newest download's curated run: after a new balance + download the
        # same start-or-continue command starts a new experiment; say so when an older one is unfinished
        elsewhere = tuple(m.experiment_dir for m in ex.unfinished(
            os.path.dirname(experiment_dir), same_experiment(o), lambda curated: default_name(o, curated),
            experiment_dir))
        if elsewhere:
            ctx.log.warning("%s: starting %s for the newest download; unfinished, not continued: %s", JOB,
                            experiment_dir, ", ".join(elsewhere))
    gpus = gpu_count()
    if rank is None:
        check_gpus(o.gpus, gpus)
    p = trainer_args.plan(replace(o, gpus=processes), inp, gpus > 0)
    # --resume as asked (not as the folder looks), so every torchrun process passes the same arguments
    argv = trainer_args.build_args(o, inp, p, os.path.dirname(experiment_dir), os.path.basename(experiment_dir),
                                   resume=o.resume, s3_endpoint=s3.endpoint())
    if master:
        for path in ex.set_aside_torn(experiment_dir):
            ctx.log.warning("%s: %s is not a whole checkpoint (a run killed while saving it): set aside as %s%s, "
                            "its epoch is trained again", JOB, path, os.path.basename(path), ex.TORN)
    # every process the same start, whether or not rank 0 has set the cut ones aside when it looks
    start_epoch = ex.epoch_of((ex.whole_checkpoints(experiment_dir) or [None])[-1])
    # a finished experiment that is resumed trains nothing and keeps its record as it was: a new finished_at
    # would make it the newest run, the one `kgcurate evaluate` picks by default
    done_before = manifest if manifest is not None and manifest.status == ex.COMPLETED and manifest.finished_at \
        and start_epoch >= o.epochs else None
    manifest = replace(manifest or new_manifest(ctx, o, inp, experiment_dir, argv), args=argv, status=ex.RUNNING)
    bad_dir = bad_samples.folder_of(experiment_dir)
    command: tuple = ()
    if start_epoch < o.epochs:
        if master:
            ex.write_manifest(manifest)  # before the trainer: a killed run's resume finds its train_run_id
        rc, command = run_trainer(o, argv, start_epoch, ctx, in_process=rank is not None or o.gpus == 1,
                                  bad_dir=bad_dir)
        if rc != 0:
            raise RuntimeError(f"open_clip's trainer exited with {rc}: see {experiment_dir}/{ex.LOG} "
                               f"(resume with the same command and --resume)")
    else:
        ctx.log.info("%s: %s already has epoch %d of %d: nothing to train", JOB, experiment_dir, start_epoch, o.epochs)
    manifest = done_before or finished(manifest, o.batch_size * processes)
    version, bad, recorded = None, [], 0
    if master:
        bad = bad_samples.read_spilled(bad_dir)  # every worker's, every rank's (one folder), every resume's
        recorded = lake_rs.record_bad_input(ctx.root, JOB, manifest.train_run_id, bad)
        if bad:
            ctx.log.warning("%s: %d samples or shards not fully usable (%d new rows in %s)", JOB, len(bad), recorded,
                            tables.BAD_RECORDS)
        version = runs.record(ctx.root, tables.TRAIN_RUNS, tables.arrow_schema(tables.TRAIN_RUNS), manifest)
        ex.write_manifest(manifest)  # after the row: a completed manifest always has its train_runs row
    curve = manifest.loss_curve
    return TrainSummary(
        train_run_id=manifest.train_run_id, experiment_dir=experiment_dir, curated_run_id=inp.curated_run_id,
        download_run_id=inp.download_run_id, shards=len(inp.files), samples=inp.samples,
        downloaded_samples=inp.downloaded_samples, resumed_from_epoch=start_epoch,
        epochs_done=manifest.epochs_done, samples_seen=manifest.samples_seen, steps=manifest.steps,
        first_loss=curve[0][1] if curve else None, final_loss=manifest.final_loss, checkpoint=manifest.checkpoint,
        train_runs_version=version, seconds=round(time.monotonic() - t0, 2), command=command,
        bad_samples=len(bad), bad_records=recorded, unfinished_elsewhere=elsewhere)


def report(s: TrainSummary, args: argparse.Namespace) -> int:
    resumed = f", resumed at epoch {s.resumed_from_epoch}" if s.resumed_from_epoch else ""
    loss = f"loss {s.first_loss:.4g} -> {s.final_loss:.4g}" if s.final_loss is not None else "no loss logged"
    print(f"{JOB} {s.train_run_id}: curated run {s.curated_run_id} (download {s.download_run_id}), {s.shards} shards, "
          f"{s.samples:,} samples; epoch {s.epochs_done}{resumed}, {s.steps:,} steps, {s.samples_seen:,} samples "
          f"seen, {loss} in {s.seconds}s -> {s.checkpoint} (manifest {s.experiment_dir}/manifest.json)")
    if s.bad_samples:
        print(f"kgcurate: warning: {s.bad_samples:,} samples or shards could not be fully used (unreadable json: "
              f"trained on its txt; a damaged shard: the rest skipped); see table {tables.BAD_RECORDS}, job {JOB}",
              file=sys.stderr)
    if s.unfinished_elsewhere:
        first = os.path.basename(s.unfinished_elsewhere[0])
        print(f"kgcurate: warning: --resume started a new experiment for the newest download (curated run "
              f"{s.curated_run_id}); {len(s.unfinished_elsewhere)} unfinished one(s) of an earlier download were "
              f"not continued ({', '.join(s.unfinished_elsewhere)}): `--name {first} --resume` continues one",
              file=sys.stderr)
    if s.downloaded_samples is not None and s.downloaded_samples != s.samples:
        print(f"kgcurate: warning: download_runs lists {s.samples:,} samples in these shards, downloads has "
              f"{s.downloaded_samples:,} stored: the tables disagree (a download run in progress?)", file=sys.stderr)
    return 0
