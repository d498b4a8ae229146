"""Context.run_units: one Spark task per unit, for a driver list and for a DataFrame of units."""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql import functions as F

from kgcurate import units
from kgcurate.context import Context


def test_driver_list_and_dataframe_units_each_get_one_task(spark, tmp_path):
    out_schema = pa.schema([("unit", pa.string()), ("units_in_task", pa.int64()), ("status", pa.string())])

    def _task(batches):  # nested: pickled by value, executors need not import this test module
        """Each task says which units it got and how many: one, when the helper does its job."""
        rows = [u for b in batches for u in b.column(1).to_pylist()]
        n = len(rows)
        yield pa.RecordBatch.from_pylist(
            [{"unit": str(u), "units_in_task": n, "status": "failed" if str(u) == "23" else "ok"} for u in rows],
            schema=out_schema)

    ctx = Context("units-test", str(tmp_path), session=spark)
    lines: list[int] = []

    def line(done: int) -> str:
        lines.append(done)
        return f"{done} done"

    files = [f"f{i}" for i in range(7)]
    ctx.run_units(list(enumerate(files)), _task, "unit string, units_in_task long, status string",
                  str(tmp_path / "a"), line, 3600, columns="no int, name string")
    got = spark.read.parquet(str(tmp_path / "a")).collect()
    assert sorted(r["unit"] for r in got) == files and {r["units_in_task"] for r in got} == {1}
    assert lines == [7]  # the final line: all units done

    # units computed in Spark: 5 shards with sparse keys, range-partitioned on the key
    samples = spark.range(0, 40).withColumn("shard", (F.col("id") % 5 * 10 + 3).cast("int"))
    shards = samples.groupBy("shard").agg(F.collect_list("id").alias("ids")).select("ids", "shard")
    ctx.run_units(shards, _task, "unit string, units_in_task long, status string", str(tmp_path / "b"), line, 3600,
                  key="shard", count=5)
    rows = spark.read.parquet(str(tmp_path / "b"))
    got = rows.collect()
    assert sorted(r["unit"] for r in got) == ["13", "23", "3", "33", "43"] and {r["units_in_task"] for r in got} == {1}

    t = units.tally(sorted(units.results(rows.collect(), "unit", "status", None), key=lambda r: r.key))
    assert (t.ok, t.failed) == (4, 1) and t.failed_units == [("23", None)]
