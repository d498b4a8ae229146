"""The report: real PNGs linked from the HTML, numbers taken from the lake's aggregates."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from helpers import execute
from kgcurate import lake, report_plots, s3, tables
from kgcurate.errors import UserError
from kgcurate.stages import balance as balance_stage
from kgcurate.stages import report as report_stage
from s3server import running_server
from test_match_balance_spark import build_matched_lake, cfg_for

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_report(files: dict[str, Path]) -> str:
    page = files["html"].read_text(encoding="utf-8")
    linked = set(re.findall(r"<img src='([^']+)'", page))
    pngs = {p.name for k, p in files.items() if k != "html"}
    assert linked == pngs and len(pngs) == 6
    for name in pngs:
        blob = (files["html"].parent / name).read_bytes()
        assert blob[:8] == PNG_MAGIC, name
        assert len(blob) > 5_000, name  # a drawn plot, not an empty canvas
    return page


def test_rank_curve_and_head_tail() -> None:
    xs, ys = report_plots.rank_curve([(1, 3), (100, 1), (10, 2), (0, 9)])
    assert xs == [1, 1, 2, 3, 4, 6] and ys == [100, 100, 10, 10, 1, 1]
    ht = report_plots.head_tail([(1, 3), (100, 1), (10, 2)], 10)
    # count == t is tail: p = min(1, t / count) = 1 keeps it in full (--tail-share picks such a t)
    assert ht["tail_entries"] == 5 and ht["head_entries"] == 1
    assert ht["tail_share"] == pytest.approx(23 / 123)
    ht = report_plots.head_tail([(1, 1000), (2, 500), (3, 300), (100, 10)], 2)
    assert (ht["tail_entries"], ht["head_entries"]) == (1500, 310)


def test_render_from_plain_aggregates(tmp_path) -> None:
    data = {
        "lake": "/x", "t": 20.0, "run": {"run_id": "balance-abc", "t": 20.0, "seed": 0},
        "hist_before": [(c, max(1, 1000 // c)) for c in range(1, 400, 7)],
        "hist_after": [(min(c, 20), max(1, 1000 // c)) for c in range(1, 400, 7)],
        "sizes": {"pairs": 10_000, "matched": 7_000, "curated": 2_500},
        "top_entries": [{"entry": f"e<{i}>", "source": "kg", "qid": "Q1", "count": 400 - i, "after": 20}
                        for i in range(10)],
        "sources": [{"source": s, "entries": 100, "entries_matched": 60, "matches": 900, "curated_matches": 300}
                    for s in ("kg", "metaclip", "wordnet")],
        "bad_records": [{"job": "ingest-wat", "reason": "truncated", "n": 3}],
        "ingest": [{"job": "ingest-wat", "status": "ok", "files": 4, "records": 100, "rows_out": 90,
                    "bad_records": 3, "attempts": 6}],
        "crawls": [{"crawl": "CC-MAIN-2024-10", "pairs": 6_000}, {"crawl": "CC-MAIN-2024-18", "pairs": 4_000}],
    }
    data["run"]["per_qid"] = True
    page = assert_report(report_plots.render(data, tmp_path / "r"))
    assert "e&lt;0&gt;" in page and "balance-abc" in page and "truncated" in page
    assert "<td>CC-MAIN-2024-18</td><td>4,000</td>" in page and "<td>true</td>" in page  # a bool is not 1
    assert "<td>6</td></tr>" in page  # the attempts behind the 4 files
    assert "Changed since this run" not in page
    data["moved_on"] = "Changed since this run: entry_counts v5 (the run read v3); ..."
    assert "entry_counts v5 (the run read v3)" in assert_report(report_plots.render(data, tmp_path / "r2"))
    # no curated set: its columns say "-", not 0 (which read as a set that kept nothing)
    bare = {**data, "sizes": {"pairs": 10_000, "matched": 7_000},
            "top_entries": [{**e, "after": None} for e in data["top_entries"]],
            "sources": [{k: v for k, v in x.items() if k != "curated_matches"} for x in data["sources"]]}
    page = assert_report(report_plots.render(bare, tmp_path / "r3"))
    assert "<td>400</td><td>-</td>" in page and "<td>900</td><td>-</td>" in page
    assert "<td>900</td><td>0</td>" not in page


def test_a_per_qid_run_plots_the_units_its_t_applied_to() -> None:
    """t of a --per-qid run is drawn over the qid units' counts, not the strings' (which t never applied to)."""
    data = {"hist_before": [(5, 3)], "hist_units": [(9, 2)], "hist_after": [(2, 1)]}
    assert [h for _, h in report_plots.count_curves(data)] == [[(9, 2)], [(2, 1)]]
    del data["hist_units"]
    assert [h for _, h in report_plots.count_curves(data)] == [[(5, 3)], [(2, 1)]]


def test_render_with_empty_lake_data(tmp_path) -> None:
    assert_report(report_plots.render({"sizes": {"pairs": 0}}, tmp_path / "empty"))


@pytest.mark.spark
def test_report_stage_on_a_balanced_lake(spark, tmp_path) -> None:
    root = str(tmp_path / "lake")
    build_matched_lake(spark, root, 1500, 60, seed=2)
    bad = spark.createDataFrame([("ingest-wat", "r1", "f.wat.gz", 10, "truncated gzip member", None)],
                                tables.schema(tables.BAD_RECORDS))
    lake.append(spark, root, tables.BAD_RECORDS, bad)
    execute(balance_stage, spark, cfg_for(root, balance__target_size=500))
    s = execute(report_stage, spark, cfg_for(root, report__out=str(tmp_path / "report")))
    assert s.sizes["pairs"] == 1650 and s.sizes["curated"] == 500 and s.sizes["matched"] == 1500
    files = {"html": Path(s.html)}
    files.update({p.stem: p for p in Path(s.html).parent.glob("*.png")})
    page = assert_report(files)
    assert "truncated gzip member" in page and "entry0" in page
    # The curated set is read once for three sections: each agrees with a count over its rows.
    data = report_stage.gather(spark, root)
    curated = balance_stage.latest_curated(spark, root).select("entry_ids").collect()
    per_entry = Counter(e for r in curated for e in r[0])
    assert sorted(data["hist_after"]) == sorted(Counter(per_entry.values()).items())
    meta = lake.read(spark, root, tables.METADATA).collect()
    ids = {r["entry"]: r["entry_id"] for r in meta}
    assert [e["after"] for e in data["top_entries"]] == [per_entry[ids[e["entry"]]] for e in data["top_entries"]]
    assert max(e["after"] for e in data["top_entries"]) > 0
    by_source = Counter()
    for r in meta:
        for src in r["sources"]:
            by_source[src] += per_entry[r["entry_id"]]
    assert {s["source"]: s["curated_matches"] for s in data["sources"]} == {k: by_source[k] for k in by_source}
    assert data["moved_on"] is None  # the tables are at the versions the run read
    for name in (tables.ENTRY_COUNTS, tables.METADATA):  # maintain's commits change no row: still no note
        lake.optimize(spark, root, name)
        spark.sql(f"ALTER TABLE delta.`{lake.table_path(root, name)}` "
                  "SET TBLPROPERTIES ('delta.deletedFileRetentionDuration' = 'interval 168 hours')")
    assert report_stage.gather(spark, root)["moved_on"] is None
    # a --per-qid run's head/tail table counts its units (qids, entries naming none), as its t did
    latest = {tables.ENTRY_COUNTS: None, tables.METADATA: None, tables.QID_COUNTS: None}
    units = balance_stage.count_hist(spark, root, latest, True)
    assert units and sorted(units) != sorted(data["hist_before"]) and all(c > 0 and n > 0 for c, n in units)
    counts = lake.read(spark, root, tables.ENTRY_COUNTS)
    lake.overwrite(spark, root, tables.ENTRY_COUNTS, counts.localCheckpoint())  # a later match's counts
    note = report_stage.gather(spark, root)["moved_on"]
    assert note.startswith("Changed since this run: entry_counts v") and "the run read v" in note
    # A cluster's report goes beside the lake: rendered, then uploaded, index.html naming only what is there.
    with running_server() as srv:
        srv.create_bucket("reports")
        remote = execute(report_stage, spark, cfg_for(root, report__out="s3a://reports/nightly/"))
        assert remote.html == "s3://reports/nightly/index.html" and remote.sizes == s.sizes
        keys = set(srv.keys("reports"))
        assert keys == {f"nightly/{p.name}" for p in files.values()}
        body = srv.client().get_object(Bucket="reports", Key="nightly/index.html")["Body"].read().decode()
        assert {f"nightly/{n}" for n in re.findall(r"<img src='([^']+)'", body)} == keys - {"nightly/index.html"}
        png = srv.client().get_object(Bucket="reports", Key="nightly/sizes.png")
        assert png["Body"].read()[:8] == PNG_MAGIC and png["ContentType"] == "image/png"
        page = srv.client().head_object(Bucket="reports", Key="nightly/index.html")
        assert page["ContentType"].startswith("text/html")  # a browser shows it, not a download
    # new pairs since the run (an ingest of another crawl, no match yet): the pairs total is the lake's, the
    # matched count the run's, and the note says so (it named only entry_counts and metadata)
    one = (lake.read(spark, root, tables.PAIRS).limit(1).withColumn("image_url", F.lit("http://new.example/x.jpg"))
           .withColumn("pair_id", F.lit(-1).cast("long")))
    lake.append(spark, root, tables.PAIRS, one)
    note = report_stage.gather(spark, root)["moved_on"]
    assert "pairs v" in note and "the matched and curated numbers the run's" in note


def test_report_folder_is_local_or_s3_and_the_page_is_uploaded_last(tmp_path, monkeypatch) -> None:
    assert report_stage.out_folder("s3a://b/r/") == "s3://b/r" and report_stage.out_folder("s3://b") == "s3://b"
    assert report_stage.out_folder(f"file://{tmp_path}/r") == f"{tmp_path}/r"
    with pytest.raises(UserError, match="report --out hdfs://nn/r: the report goes to a local folder or s3://"):
        report_stage.out_folder("hdfs://nn/r")
    sent = []

    class Client:
        def upload_file(self, path: str, bucket: str, key: str, ExtraArgs: dict | None = None) -> None:  # noqa: N803
            sent.append((Path(path).name, bucket, key))

    monkeypatch.setattr(s3, "client", Client)
    files = report_plots.render({"sizes": {"pairs": 0}}, tmp_path / "r")
    urls = s3.put_files([p for k, p in files.items() if k != "html"] + [files["html"]], "s3://b/x/")
    assert sent[-1] == ("index.html", "b", "x/index.html") and len(sent) == len(files)
    assert urls[-1] == "s3://b/x/index.html" and all(k == f"x/{n}" for n, _, k in sent)


@pytest.mark.spark
def test_report_shows_each_string_once_with_its_sources(spark, tmp_path) -> None:
    """One top row per string with its sources; per-source numbers explode ``sources`` (provenance)."""
    from kgcurate.stages import build_metadata
    from kgcurate.stages import match as match_stage
    from test_match_balance_spark import META_DDL, append_pairs

    root = str(tmp_path / "lake")
    rows = [("kitchen", "wordnet", None), ("kitchen", "metaclip", None), ("sink", "wordnet", None),
            ("dog", "kg", "Q144"), ("dog", "metaclip", None)]
    lake.overwrite(spark, root, tables.METADATA, build_metadata.derive(spark.createDataFrame(rows, META_DDL)))
    append_pairs(spark, root, ["a kitchen sink", "kitchen", "dog"], 0)
    execute(match_stage, spark, cfg_for(root))
    data = report_stage.gather(spark, root)
    top = {e["entry"]: e for e in data["top_entries"]}
    assert len(data["top_entries"]) == len(top) == 3
    assert (top["kitchen"]["source"], top["kitchen"]["count"]) == ("metaclip, wordnet", 2)
    assert (top["dog"]["source"], top["dog"]["qid"]) == ("kg, metaclip", "Q144")
    src = {s["source"]: (s["entries"], s["entries_matched"], s["matches"]) for s in data["sources"]}
    assert src == {"wordnet": (2, 2, 3), "metaclip": (2, 2, 3), "kg": (1, 1, 1)}
    # --lowercase: "Kitchen" (metaclip) and "kitchen" (wordnet) are one entry whose counts sit on the group's
    # smallest id; the report took only that id's own string's sources, losing the other's (session 39 review)
    root = str(tmp_path / "lower")
    rows = [("kitchen", "wordnet", None), ("Kitchen", "metaclip", None), ("sink", "wordnet", None),
            ("dog", "kg", "Q144"), ("Dog", "metaclip", None)]
    lake.overwrite(spark, root, tables.METADATA, build_metadata.derive(spark.createDataFrame(rows, META_DDL)))
    append_pairs(spark, root, ["a kitchen sink", "Kitchen", "dog"], 0)
    execute(match_stage, spark, cfg_for(root, match__lowercase=True))
    data = report_stage.gather(spark, root)
    top = {e["entry"].lower(): e for e in data["top_entries"]}
    assert len(data["top_entries"]) == len(top) == 3
    assert (top["kitchen"]["source"], top["kitchen"]["count"]) == ("metaclip, wordnet", 2)
    assert (top["dog"]["source"], top["dog"]["qid"]) == ("kg, metaclip", "Q144")
    src = {s["source"]: (s["entries"], s["entries_matched"], s["matches"]) for s in data["sources"]}
    assert src == {"wordnet": (2, 2, 3), "metaclip": (2, 2, 3), "kg": (1, 1, 1)}


@pytest.mark.spark
def test_ingest_section_counts_each_file_once_by_its_latest_attempt(spark) -> None:
    """A file that failed and was read on a retry is one ok file; a --force re-read is not two files
    (the table summed every ingest_log row: failed 1 + ok 1, and twice the records of a re-read); s3a:// and
    s3:// spell one file, as for ingest-wat's done files."""
    from datetime import datetime

    def row(f, status, records, minute):
        return ("ingest-wat", "r", f, status, records, records * 2, 0, 0, 10, None, None,
                datetime(2026, 1, 1, 0, minute))

    rows = [row("s3a://cc/a", "failed", 0, 1), row("s3://cc/a", "ok", 400, 2), row("b", "ok", 300, 1),
            row("b", "ok", 300, 5), row("c", "partial", 50, 3)]
    log = spark.createDataFrame(rows, tables.schema(tables.INGEST_LOG))
    got = {r["status"]: r for r in report_stage.ingest_files(log)}
    assert set(got) == {"ok", "partial"}
    assert (got["ok"]["files"], got["ok"]["records"], got["ok"]["rows_out"], got["ok"]["attempts"]) == (2, 700, 1400, 4)
    assert (got["partial"]["files"], got["partial"]["attempts"]) == (1, 1)


@pytest.mark.spark
def test_training_section_falls_back_to_the_train_runs_row(spark, tmp_path) -> None:
    """The report's driver may not see the experiments folder (the GPU machines' volume): the row's own
    samples_seen and final_loss are shown, not dashes."""
    from datetime import datetime

    root = str(tmp_path / "lake")
    when = datetime(2026, 1, 1)
    lake.append(spark, root, tables.TRAIN_RUNS, spark.createDataFrame(
        [("t1", "c1", None, None, None, "ViT-B-32", "{}", "{}", 1_000_000, 100, 1.23, None,
          str(tmp_path / "elsewhere"), "completed", when, when)], tables.schema(tables.TRAIN_RUNS)))
    run = report_stage.training(spark, root)["runs"][0]
    assert (run["samples_seen"], run["final_loss"]) == (1_000_000, 1.23)
