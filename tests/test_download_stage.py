"""``kgcurate download`` on a lake: a curated run's images from a local web server into webdataset
shards, ``downloads`` and ``download_runs``; reruns, a killed run and ``--retry-failed``."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image
from pyspark.sql import functions as F

from helpers import execute
from kgcurate import cli, config, settings, tables
from kgcurate import lake as lk
from kgcurate.errors import UserError
from kgcurate.stages import download

pytestmark = pytest.mark.spark


def _jpeg(w: int, h: int, color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "JPEG")
    return buf.getvalue()


class Site:
    """Images at /img/N.jpg; /noai.jpg opted out; /gone.jpg 404; /page.jpg an HTML page; /flaky.jpg 503
    until ``healed``."""

    def __init__(self) -> None:
        self.healed = False
        self.hits: dict[str, int] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                site.hits[self.path] = site.hits.get(self.path, 0) + 1
                if self.path.startswith("/img/"):
                    n = int(self.path.split("/")[-1].split(".")[0])
                    self._send(200, _jpeg(40 + n, 30 + 2 * n, (n * 9 % 255, 80, 160)))
                elif self.path == "/noai.jpg":
                    self._send(200, _jpeg(50, 50, (1, 2, 3)), {"X-Robots-Tag": "noai"})
                elif self.path == "/page.jpg":
                    self._send(200, b"<html><body>not an image</body></html>")
                elif self.path == "/flaky.jpg":
                    self._send(200, _jpeg(64, 48, (9, 9, 9))) if site.healed else self._send(503, b"busy")
                else:
                    self._send(404, b"no")

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def site():
    s = Site()
    yield s
    s.server.shutdown()


def _curated_lake(spark, root: str, base: str) -> list[str]:
    """A curated run (as balance writes it) of 12 good images, 4 bad URLs, one URL with two texts, and
    knowledge-graph texts for one pair in pair_texts."""
    urls = [f"{base}/img/{n}.jpg" for n in range(12)] + [f"{base}/{p}" for p in
                                                         ("noai.jpg", "gone.jpg", "page.jpg", "flaky.jpg")]
    rows = [(i, u, f"caption {i}", [7], "run-a") for i, u in enumerate(urls)]
    rows.append((100, urls[0], "another caption of image 0", [7], "run-a"))
    lk.append(spark, root, tables.CURATED, spark.createDataFrame(rows, tables.schema(tables.CURATED)))
    run = [("run-a", 5.0, None, None, 0, False, 20, 17, 3, len(rows), {"pairs": 1}, datetime.now(timezone.utc))]
    lk.append(spark, root, tables.CURATION_RUNS, spark.createDataFrame(run, tables.schema(tables.CURATION_RUNS)))
    texts = [(1, "caption 1", "alt", None, None), (1, "Panthera leo", "kg_taxon", "Q140", None),
             (1, "lion", "kg_label", "Q140", "en")]
    lk.append(spark, root, tables.PAIR_TEXTS, spark.createDataFrame(texts, tables.schema(tables.PAIR_TEXTS)))
    return urls


def _cfg(root: str, out: str, **download_opts) -> dict:
    cfg = config.load(None)
    cfg["lake"] = root
    cfg["download"].update({"out": out, "allow_private": True, "attempts": 1, "shard_size": 5, "threads": 4,
                            **download_opts})
    return cfg


def _members(path: str) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_download_writes_shards_rows_and_resumes(spark, lake, tmp_path, site, monkeypatch, caplog) -> None:
    site.healed = False
    urls = _curated_lake(spark, lake, site.base)
    out = str(tmp_path / "shards")
    s = execute(download, spark, _cfg(lake, out))
    assert s.curated_run_id == "run-a" and s.images == len(urls) == s.urls
    n_shards = download.shard_count(16, 5)  # ceil(16 / 4.5) = 4 hash shards, some may be empty
    assert n_shards == 4 and 1 <= s.shards <= n_shards
    assert s.counts == {"success": 12, "opted_out": 1, "http_error": 2, "decode_error": 1}

    rows = {r["image_url"]: r for r in lk.read(spark, lake, tables.DOWNLOADS).collect()}
    assert set(rows) == set(urls)
    assert rows[f"{site.base}/noai.jpg"]["opt_out_reason"] == "noai" and rows[f"{site.base}/noai.jpg"]["key"] is None
    assert rows[f"{site.base}/gone.jpg"]["http_status"] == 404
    assert rows[f"{site.base}/flaky.jpg"]["http_status"] == 503

    sizes = json.loads((tmp_path / "shards" / "sizes.json").read_text())
    assert sum(sizes.values()) == 12 and len(sizes) == s.shards
    tars = {}
    for name in sizes:
        members = _members(os.path.join(out, name))
        tars[name] = members
        assert len(members) == 3 * sizes[name]  # KEY.jpg, KEY.txt, KEY.json per stored image
    everything = {k: v for m in tars.values() for k, v in m.items()}
    first = rows[urls[0]]
    assert everything[f"{first['key']}.txt"] == b"another caption of image 0"  # the smallest curated text
    meta0 = json.loads(everything[f"{first['key']}.json"])
    assert {t["text"] for t in meta0["texts"]} == {"caption 0", "another caption of image 0"}
    meta1 = json.loads(everything[f"{rows[urls[1]]['key']}.json"])
    assert {(t["text"], t["text_source"]) for t in meta1["texts"]} == {
        ("caption 1", "alt"), ("Panthera leo", "kg_taxon"), ("lion", "kg_label")}
    with Image.open(io.BytesIO(everything[f"{rows[urls[11]]['key']}.jpg"])) as im:
        assert im.size == (rows[urls[11]]["width"], rows[urls[11]]["height"]) == (51, 52)

    # a rerun finds every shard done: nothing fetched, no new rows, no new run; another --opt-out list is
    # said to leave the shards made before as they are
    hits = dict(site.hits)
    again = execute(download, spark, _cfg(lake, out, opt_out=["noai", "noimageai", "noindex"]))
    assert again.urls == 0 and again.shards_done_before == s.shards and site.hits == hits
    assert (f"shards in {out} were made with --opt-out noai,noimageai, this run honours noai,noimageai,noindex"
            in caplog.text)
    assert lk.read(spark, lake, tables.DOWNLOAD_RUNS).count() == 1

    # a run killed after its rows but before its download_runs row: redone whole, same bytes, no URL twice
    before = {name: (tmp_path / "shards" / name).read_bytes() for name in sizes}
    lk.delete(spark, lake, tables.DOWNLOAD_RUNS, F.lit(True))
    redo = execute(download, spark, _cfg(lake, out))
    assert redo.shards == s.shards and redo.urls == len(urls)
    assert lk.read(spark, lake, tables.DOWNLOADS).count() == len(urls)
    assert {name: (tmp_path / "shards" / name).read_bytes() for name in sizes} == before

    # a different shard size cannot resume this folder
    with pytest.raises(UserError, match="made with --shard-size 5, not 7"):
        execute(download, spark, _cfg(lake, out, shard_size=7))

    # --retry-failed runs killed after their MERGE, before their download_runs row: the first's 503 row names
    # a run no download_runs row lists, the second stored the image in a shard none lists; both used to be
    # lost for good (no later --retry-failed took them)
    class Killed(Exception):
        pass

    def killed(*args: object, **kwargs: object) -> None:
        raise Killed

    flaky = F.col("image_url") == f"{site.base}/flaky.jpg"
    record_run = download.record_run
    monkeypatch.setattr(download, "record_run", killed)
    for healed in (False, True):
        site.healed = healed
        with pytest.raises(Killed):
            execute(download, spark, _cfg(lake, out, retry_failed=True))
        row = lk.read(spark, lake, tables.DOWNLOADS).where(flaky).first()
        assert (row["status"], row["shard"]) == (("success", 4) if healed else ("http_error", 4))
    killed_tar = (tmp_path / "shards" / "00004.tar").read_bytes()
    monkeypatch.setattr(download, "record_run", record_run)

    # --retry-failed: only the 503 is tried again, into a new shard after the hash shards (0..3)
    retry = execute(download, spark, _cfg(lake, out, retry_failed=True))
    assert retry.urls == 1 and retry.succeeded == 1 and retry.shards == 1
    healed = lk.read(spark, lake, tables.DOWNLOADS).where(flaky).collect()
    assert len(healed) == 1 and healed[0]["status"] == "success" and healed[0]["shard"] == 4
    assert healed[0]["key"].startswith("00004")
    sizes = json.loads((tmp_path / "shards" / "sizes.json").read_text())
    assert sizes["00004.tar"] == 1 and sum(sizes.values()) == 13
    assert (tmp_path / "shards" / "00004.tar").read_bytes() == killed_tar  # as a run never killed writes it
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == sorted([*sizes, "sizes.json"])  # no marks
    assert execute(download, spark, _cfg(lake, out, retry_failed=True)).urls == 0
    assert site.hits["/img/0.jpg"] == hits["/img/0.jpg"] + 1  # the killed run's redo only


def test_a_folder_holds_one_curated_run_and_retries_only_its_own_failures(spark, lake, tmp_path, site) -> None:
    urls = _curated_lake(spark, lake, site.base)
    flaky = f"{site.base}/flaky.jpg"
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    site.healed = True
    assert execute(download, spark, _cfg(lake, a)).succeeded == 13  # flaky.jpg stored in a
    site.healed = False
    assert execute(download, spark, _cfg(lake, b, shard_size=7)).succeeded == 12  # a 503 in b: its row now
    site.healed = True
    # a's --retry-failed: the 503 is b's, not a's (a holds the image): nothing tried, flaky.jpg once in a
    assert execute(download, spark, _cfg(lake, a, retry_failed=True)).urls == 0
    stored_in_a = [n for name in json.loads((tmp_path / "a" / "sizes.json").read_text())
                   for n, data in _members(os.path.join(a, name)).items()
                   if n.endswith(".json") and json.loads(data)["url"] == flaky]
    assert len(stored_in_a) == 1
    retry_b = execute(download, spark, _cfg(lake, b, shard_size=7, retry_failed=True))
    assert (retry_b.urls, retry_b.succeeded) == (1, 1)
    assert lk.read(spark, lake, tables.DOWNLOADS).count() == len(urls)

    # another curated run into a: refused, a's shards (and the download run training pins) stay a's
    run_b = lk.read(spark, lake, tables.CURATION_RUNS).withColumn("run_id", F.lit("run-b"))
    lk.append(spark, lake, tables.CURATION_RUNS, run_b)
    before = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    with pytest.raises(UserError, match=f"{a} holds the shards of curated run run-a .*pass a new --out"):
        execute(download, spark, _cfg(lake, a, run_id="run-b"))
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == before


def test_download_command_line(spark, lake, tmp_path, site, capsys) -> None:
    site.healed = False
    _curated_lake(spark, lake, site.base)
    out = str(tmp_path / "cli-shards")
    rc = cli.main(["download", "--lake", lake, "--out", out, "--allow-private", "--attempts", "1",
                   "--shard-size", "8", "--opt-out", "noai,noimageai", "--image-size", "32"])
    stdout, stderr = capsys.readouterr()
    assert rc == 0 and "16 images tried, 12 stored (75.0%" in stdout, (stdout, stderr)
    small = lk.read(spark, lake, tables.DOWNLOADS).where(F.col("status") == "success").agg(
        F.max(F.greatest("width", "height"))).first()[0]
    assert small == 32  # resized: the longer side
    assert cli.main(["download", "--lake", lake, "--run-id", "nope", "--out", out]) == 2
    assert "no curated run named 'nope'" in capsys.readouterr().err


def test_the_downloads_table_holds_exactly_what_the_tasks_emit() -> None:
    emitted = tables.from_arrow(download.rows_schema())
    declared = tables.schema(tables.DOWNLOADS)
    assert [(f.name, f.dataType) for f in emitted.fields] == [(f.name, f.dataType) for f in declared.fields]


def test_download_to_s3_uploads_whole_shards_and_sizes(spark, lake, site) -> None:
    """Shards and sizes.json into a bucket (moto, S3's REST API): each tar one object, read back whole."""
    from s3server import point_spark_at, restore_spark, running_server

    site.healed = False
    _curated_lake(spark, lake, site.base)
    with running_server() as srv:
        srv.create_bucket("shards")
        previous = point_spark_at(spark, srv)  # the tasks' boto3 needs the endpoint and dummy credentials
        try:
            s = execute(download, spark, _cfg(lake, "s3a://shards/run-a"))
        finally:
            restore_spark(spark, previous)
        assert s.out == "s3://shards/run-a" and s.succeeded == 12
        body = srv.client().get_object(Bucket="shards", Key="run-a/sizes.json")["Body"].read()
        sizes = json.loads(body)
        assert sorted(srv.keys("shards", "run-a/")) == sorted([f"run-a/{n}" for n in sizes] + ["run-a/sizes.json"])
        assert sum(sizes.values()) == 12
        for name, n in sizes.items():
            data = srv.client().get_object(Bucket="shards", Key=f"run-a/{name}")["Body"].read()
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                assert len(tar.getmembers()) == 3 * n


def test_a_folder_resumes_only_with_the_shard_size_image_size_and_resize_mode_of_its_shards() -> None:
    """Another --image-size or --resize-mode used to resume (or --retry-failed) silently, mixing image sizes
    in one folder; only --shard-size was compared."""
    params = {"shard_size": "5", "image_size": "256", "resize_mode": "keep_ratio_largest", "opt_out": "noai"}
    done = {0: {"shard": 0, "params": params}, 1: {"shard": 1, "params": {"shard_size": "5"}}}  # 1: an older run's
    same = settings.DownloadOptions(out="/x", shard_size=5)
    download.check_same_layout(done, same, "/x")
    download.check_same_layout(done, dataclasses.replace(same, opt_out=["noai", "noindex"], retry_failed=True), "/x")
    # another --opt-out list is not refused (a stricter one is a reason to resume) but warned about
    assert download.opt_out_before(done, dataclasses.replace(same, opt_out=["noai", "noindex"])) == "noai"
    assert download.opt_out_before(done, dataclasses.replace(same, opt_out=[])) == "noai"
    assert download.opt_out_before(done, dataclasses.replace(same, opt_out=["noai"])) is None
    assert download.opt_out_before({1: done[1]}, dataclasses.replace(same, opt_out=[])) is None  # not recorded
    both = {0: {"shard": 0, "params": {**params, "opt_out": "noimageai,noai"}}}
    assert download.opt_out_before(both, dataclasses.replace(same, opt_out=["noai", "noimageai"])) is None
    for change, words in ((dict(shard_size=7), "--shard-size 5, not 7: use the same --shard-size"),
                          (dict(image_size=64), "--image-size 256, not 64: use the same --image-size"),
                          (dict(resize_mode="keep_ratio"), "--resize-mode keep_ratio_largest, not keep_ratio: use the "
                                                            "same --resize-mode")):
        with pytest.raises(UserError) as caught:
            download.check_same_layout(done, dataclasses.replace(same, **change), "/x")
        assert str(caught.value) == f"shards in /x were made with {words} to resume or retry, or a new --out"


def test_retry_marks_name_the_killed_retries_of_a_folder_local_and_on_s3(tmp_path) -> None:
    """What ties a --retry-failed run killed after its MERGE to its folder: a mark written before its tasks."""
    from s3server import running_server

    def round_trip(out: str, listing) -> None:
        assert download.marked_retries(out) == set() and download.killed_retries(out, []) == []
        for run_id in ("download-1", "download-2", "download-3"):
            download.mark_retry(out, run_id)
        assert download.marked_retries(out) == {"download-1", "download-2", "download-3"}
        assert download.killed_retries(out, ["download-2", "download-9"]) == ["download-1", "download-3"]
        download.unmark_retries(out, ["download-1", "download-2", "download-4"])
        assert download.marked_retries(out) == {"download-3"} and listing() == [".download-3.retry"]

    local = tmp_path / "shards"
    local.mkdir()
    (local / "00000.tar").write_bytes(b"")
    (local / ".00001.tar.x1.tmp").write_bytes(b"")  # a killed task's temp file is no mark
    round_trip(str(local), lambda: sorted(p.name for p in local.iterdir() if p.name.endswith(".retry")))
    assert download.marked_retries(str(tmp_path / "missing")) == set()
    with running_server() as srv:
        srv.create_bucket("shards")
        srv.put("shards", "run-a/sub/.download-7.retry", b"")  # another folder's, below this one
        round_trip("s3://shards/run-a", lambda: [k.split("/")[-1] for k in srv.keys("shards", "run-a/.")])
        round_trip("s3://shards", lambda: [k for k in srv.keys("shards") if k.startswith(".")])


def test_a_set_past_five_digit_shard_numbers_is_refused_up_front() -> None:
    download.check_shard_numbers([0, 99_999], "/x")
    with pytest.raises(UserError, match="would need shard 100,000, past the 100,000"):
        download.check_shard_numbers([5, 100_000], "/x")


def test_download_options_become_the_task_config() -> None:
    o = settings.DownloadOptions(out="x", user_agent="mybot/1.0 (+https://example.org)", timeout=7.0, attempts=2,
                                 opt_out=["noai", "noindex"], image_size=64)
    c = download.download_config(o)
    assert c.fetch.user_agent == "mybot/1.0 (+https://example.org)"
    assert (c.fetch.connect_timeout, c.fetch.read_timeout, c.fetch.retry.max_attempts) == (7.0, 7.0, 2)
    from kgcurate.download.policy import OptOut

    assert c.image.image_size == 64 and c.fetch.opt_out == OptOut(("noai", "noindex"), ("kgcurate", "mybot"))
    assert c.fetch.opt_out.check(["mybot: noai"]) == "noai"  # the bot the site sees is addressed
    default = download.download_config(settings.DownloadOptions(out="x"))
    assert default.fetch.user_agent.startswith("kgcurate/") and default.fetch.retry.max_attempts == 3


def test_a_resumed_shard_needs_its_rows_and_the_tar_they_were_written_beside(tmp_path) -> None:
    """The rows of a killed run's shard are taken only with a tar of the size they were written beside: a tar
    rewritten since (another layout's killed run into the same folder, a task retry killed before its rows)
    would pair old rows with other images. A task forgets its shard's rows before writing the tar again."""
    resume, out = tmp_path / "resume", tmp_path / "out"
    resume.mkdir()
    out.mkdir()
    for shard, tar_bytes, rows_for in ((0, 100, 100), (1, 150, 200), (2, 300, 300)):
        (out / f"{shard:05d}.tar").write_bytes(b"t" * tar_bytes)
        (resume / f"{shard:05d}.{rows_for}.parquet").write_bytes(b"rows")
    (resume / "00003.50.parquet").write_bytes(b"rows")  # no tar (the folder emptied since)
    got = download.resumable(str(resume), str(out), [0, 1, 3])  # shard 2 is done already: not asked
    assert got == {0: f"{resume}/00000.100.parquet"}
    assert download.resumable(None, str(out), [0]) == {} and download.resumable(str(resume), str(out), []) == {}
    download.forget_shard(str(resume), 1)
    assert sorted(p.name for p in resume.iterdir()) == ["00000.100.parquet", "00002.300.parquet", "00003.50.parquet"]
