"""What a stage's ``execute(ctx, cfg)`` is handed by whoever runs it (the CLI, ``kgcurate run``,
``refresh``, a spark-submit job, a test): the job's name, the lake root, a Spark session made only
when the stage first asks for one, the one :class:`~kgcurate.lake.Lake` its Delta work goes
through, run ids, the logger, bad-record recording and progress lines.

Imports nothing heavy: a stage without Spark (``make-sample``) never starts a JVM.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from kgcurate import run_ids


class Summary:
    """Base of every stage's summary (``<Stage>Summary``, a dataclass in the stage module): ``execute``
    returns it, ``report`` reads its attributes, and whatever prints JSON (``run``, ``curated --json``,
    the benches) goes through :meth:`as_dict`. A run-time key is a typed field (``dict[str, int]``)."""

    # the fields a one-line summary (``kgcurate run``) shows first: a stage's result, whatever the field order
    headline: ClassVar[tuple[str, ...]] = ()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass
class Skipped(Summary):
    """A stage ``run`` or ``refresh`` did not execute: why (and the run that already holds the result)."""

    skipped: str
    run_id: str | None = None


@dataclass
class Context:
    job: str
    root: str
    spark_conf: Mapping[str, Any] = field(default_factory=dict)
    session: Any = None  # a running SparkSession to use (tests, `kgcurate run`); else made on first use

    @classmethod
    def of(cls, job: str, cfg: Mapping[str, Any], session: Any = None) -> Context:
        return cls(job, str(cfg.get("lake") or ""), (cfg.get("spark") or {}).get("conf") or {}, session)

    def for_stage(self, job: str) -> Context:
        """The same session and lake for another stage run inside this one (``run``, ``refresh``)."""
        return Context(job, self.root, self.spark_conf, self.session)

    @property
    def spark(self):
        if self.session is None:
            from kgcurate.session import get_spark

            self.session = get_spark(f"kgcurate-{self.job}", self.spark_conf)
        return self.session

    @cached_property
    def lake(self):
        from kgcurate.lake import Lake

        return Lake(self.spark, self.root)

    @property
    def log(self) -> logging.Logger:
        return logging.getLogger(f"kgcurate.{self.job}")

    def new_run_id(self) -> str:
        """A run id for a run whose result is not a function of its inputs (ingest, metadata)."""
        return run_ids.new(self.job)

    def derived_run_id(self, params: Mapping[str, Any], versions: Mapping[str, Any]) -> str:
        """The run id of a run whose result is a function of ``params`` and input ``versions``
        (balance): the same inputs give the same id, so a re-run replaces its own output."""
        return run_ids.derived(self.job, params, versions)

    def record_bad_input(self, run_id: str | None, bad: Sequence[Any]) -> None:
        """This job's unusable input items (:class:`~kgcurate.bad_input.BadInput`) into ``bad_records``."""
        self.lake.record_bad_input(self.job, run_id, bad)

    def staging(self, run_id: str):
        """A scratch folder for this run, removed when the run ends (local, s3a, any Hadoop path)."""
        return self.lake.staging_folder(run_id)

    def tasks_done(self, total: int) -> int:
        """Completed tasks of the running Spark stage that has ``total`` tasks (one task per input unit:
        a WAT file, a shard), from Spark's status tracker; 0 before it starts."""
        tracker = self.spark.sparkContext.statusTracker()
        done = 0
        for stage_id in tracker.getActiveStageIds():
            info = tracker.getStageInfo(stage_id)
            if info and info.numTasks == total:
                done = max(done, info.numCompletedTasks)
        return done

    def progress(self, line: Callable[[], str], interval: float) -> Progress:
        """Log ``line()`` every ``interval`` seconds while the ``with`` block runs."""
        return Progress(self.log, line, interval)

    def run_units(self, units: Any, task: Callable[[Any], Any], schema: Any, out: str, line: Callable[[int], str],
                  interval: float, *, columns: str | None = None, key: str | None = None,
                  count: int | None = None) -> None:
        """One Spark task per input unit (a WAT file, a download shard), ``task`` (a ``mapInArrow``
        function) writing its rows of ``schema`` to ``out`` (Parquet), with a progress line.

        ``units`` is either a driver list of rows (``columns``: their DDL), sliced one per task, or a
        DataFrame of one row per unit (its contents computed in Spark) whose ``count`` distinct
        ``key`` values are range-partitioned, all sampled, so again one per task. ``line(done)`` is the
        stage's own progress line given units done of ``count``: logged every ``interval`` seconds
        and once at the end. Which units to run is :func:`kgcurate.units.plan`; what each did,
        :func:`kgcurate.units.results` of the stage's per-unit rows and :func:`kgcurate.units.tally`.
        """
        if isinstance(units, Sequence):
            count = len(units)
            frame = self.spark.createDataFrame(self.spark.sparkContext.parallelize(list(units), numSlices=count),
                                               columns)
        else:
            if key is None or count is None:
                raise ValueError("run_units over a DataFrame needs its key column and unit count")
            frame = units.repartitionByRange(count, key)
        with self.progress(lambda: line(self.tasks_done(count)), interval):
            frame.mapInArrow(task, schema).write.mode("overwrite").parquet(out)
        self.log.info(line(count))


class Progress:
    """A driver thread logging a progress line at an interval (the line says what is done of what)."""

    def __init__(self, log: logging.Logger, line: Callable[[], str], interval: float) -> None:
        self.log, self.line, self.interval = log, line, interval
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def seconds(self) -> float:
        return max(time.monotonic() - self.start, 1e-9)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.log.info(self.line())

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


def execute_stage(stage: Any, cfg: Mapping[str, Any], session: Any = None, *args: Any, **kwargs: Any) -> Any:
    """Run a stage module's ``execute`` with a fresh context (in ``session`` when given: a notebook's,
    a bench's, the tests'): what the CLI does between ``prepare`` and ``report``."""
    job = getattr(stage, "JOB", stage.__name__.rsplit(".", 1)[-1])
    return stage.execute(Context.of(job, cfg, session), cfg, *args, **kwargs)
