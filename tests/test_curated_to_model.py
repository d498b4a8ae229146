"""From a curated run to an evaluated model, offline: ``download`` fetches the run's images from a
loopback server into shards, ``train`` reads those shards through ``download_runs`` (no Spark) and
trains the tiny model on the CPU, ``evaluate`` picks that train run and scores it. Each stage's own
tests cover its failure modes; this one checks that the three fit together as a user chains them."""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

torch = pytest.importorskip("torch")  # the [train] extra
pytest.importorskip("open_clip")

from PIL import Image  # noqa: E402

from helpers import assert_other_readers_agree, execute  # noqa: E402
from kgcurate import cli, config, tables  # noqa: E402
from kgcurate import lake as lk  # noqa: E402
from kgcurate.lake_rs import open_table  # noqa: E402
from kgcurate.stages import download  # noqa: E402

pytestmark = pytest.mark.spark
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}


def _png(color: tuple[int, int, int], n: int) -> bytes:
    image = Image.new("RGB", (48 + n % 5, 40 + n % 7), color)
    image.putpixel((n % 40, n % 30), (n % 255, 0, 0))  # no two images alike
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            parts = self.path.strip("/").split("/")  # /<color>/<n>.png
            if len(parts) == 2 and parts[0] in COLORS:
                body, code = _png(COLORS[parts[0]], int(parts[1].split(".")[0])), 200
            else:
                body, code = b"not here", 404
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _curated_run(spark, root: str, base: str, per_color: int) -> int:
    """A curated run as balance writes it: captions naming each image's colour, a knowledge-graph label
    for the red ones in pair_texts, and one dead URL."""
    rows, texts, pid = [], [], 0
    for color in COLORS:
        for n in range(per_color):
            pid += 1
            rows.append((pid, f"{base}/{color}/{n}.png", f"a {color} square, photo {n}", [1], "run-e2e"))
            if color == "red":
                texts += [(pid, rows[-1][2], "alt", None, None), (pid, "crimson", "kg_label", "Q3142", "en")]
    rows.append((pid + 1, f"{base}/gone/0.png", "a missing square", [1], "run-e2e"))
    lk.append(spark, root, tables.CURATED, spark.createDataFrame(rows, tables.schema(tables.CURATED)))
    run = [("run-e2e", 5.0, None, None, 0, False, len(rows), len(rows), 0, len(rows), {"pairs": 1},
            datetime.now(timezone.utc))]
    lk.append(spark, root, tables.CURATION_RUNS, spark.createDataFrame(run, tables.schema(tables.CURATION_RUNS)))
    lk.append(spark, root, tables.PAIR_TEXTS, spark.createDataFrame(texts, tables.schema(tables.PAIR_TEXTS)))
    return len(rows)


def test_a_curated_run_becomes_an_evaluated_model(spark, lake, tmp_path, server, monkeypatch, capsys) -> None:
    monkeypatch.chdir(REPO)  # conf/train-smoke.yaml names conf/models relative to the repository
    torch.set_num_threads(1)
    urls = _curated_run(spark, lake, server, per_color=40)

    cfg = config.load(None)
    cfg["lake"] = lake
    out = str(tmp_path / "shards")
    cfg["download"].update({"out": out, "allow_private": True, "attempts": 1, "shard_size": 64, "threads": 8,
                            "image_size": 32})
    got = execute(download, spark, cfg)
    assert (got.urls, got.counts) == (urls, {"success": urls - 1, "http_error": 1})
    with open(os.path.join(out, "sizes.json")) as f:
        sizes = json.load(f)
    assert sum(sizes.values()) == urls - 1
    with tarfile.open(os.path.join(out, sorted(sizes)[0])) as tar:
        docs = [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    red = next(d for d in docs if "/red/" in d["url"])
    assert {t["text_source"] for t in red["texts"]} == {"alt", "kg_label"}  # KG text beside the alt text

    # train reads the download through download_runs (deltalake, no JVM) and trains kgc-tiny
    exp = tmp_path / "experiments"
    assert cli.main(["train", "--config", "conf/train-smoke.yaml", "--lake", lake, "--experiments", str(exp),
                     "--name", "e2e", "--epochs", "2"]) == 0
    [run] = open_table(lake, tables.TRAIN_RUNS).to_pyarrow_table().to_pylist()
    download_run = lk.read(spark, lake, tables.DOWNLOAD_RUNS).collect()[0]
    assert (run["status"], run["curated_run_id"], run["download_run_id"]) == (
        "completed", "run-e2e", download_run["run_id"])
    manifest = json.loads((exp / "e2e" / "manifest.json").read_text())
    assert manifest["samples_seen"] == run["samples_seen"] > 0 and os.path.exists(manifest["checkpoint"])
    capsys.readouterr()

    # evaluate picks the newest completed train run: zero-shot on digits, retrieval on the shards
    assert cli.main(["evaluate", "--lake", lake, "--dataset", "digits", "--digits-per-class", "2",
                     "--retrieval", out, "--templates", "simple"]) == 0
    rows = open_table(lake, tables.EVAL_RUNS).to_pyarrow_table().to_pylist()
    assert {r["train_run_id"] for r in rows} == {run["train_run_id"]}
    metrics = {(r["dataset"], r["metric"]): r for r in rows}
    assert metrics[("digits", "top1")]["samples"] == 20
    retrieval = [k for k in metrics if k[0] != "digits"]
    assert retrieval and all(metrics[k]["samples"] == urls - 1 for k in retrieval)
    assert all(0.0 <= r["value"] <= 1.0 for r in rows)
    assert json.loads((exp / "e2e" / "checkpoints" / "eval.json").read_text())
    # the tables download, train and evaluate wrote (Spark and delta-rs) read the same through DuckDB
    assert {tables.DOWNLOADS, tables.DOWNLOAD_RUNS, tables.TRAIN_RUNS, tables.EVAL_RUNS} <= set(
        assert_other_readers_agree(spark, lake))
