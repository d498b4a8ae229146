"""``kgcurate download`` killed with SIGKILL mid-run (driver, JVM and Python workers at once), then rerun:
no shard half-written under its name, no URL with two ``downloads`` rows, shards equal to a clean run's.

One subprocess (a JVM start); the rerun and the clean run use the shared in-process session."""

from __future__ import annotations

import io
import json
import re
import shutil
import signal
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from helpers import curated_run, execute, kill_when, start_cli
from kgcurate import config, tables
from kgcurate import lake as lk
from kgcurate.stages import download

pytestmark = pytest.mark.slow
SHARD = re.compile(r"^\d{5}\.tar$")


class SlowSite:
    """/img/N.jpg (a small JPEG of its own size and colour) and /gone/N.jpg (404), each answer after
    ``delay`` seconds: slow enough that a run is still downloading when its first shard is written."""

    def __init__(self) -> None:
        self.delay = 0.0
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                time.sleep(site.delay)
                n = int(self.path.rsplit("/", 1)[-1].split(".")[0])
                if self.path.startswith("/img/"):
                    buf = io.BytesIO()
                    Image.new("RGB", (40 + n, 30 + n % 7), (n * 9 % 255, 80, 160)).save(buf, "JPEG")
                    self._send(200, buf.getvalue())
                else:
                    self._send(404, b"no")

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _cfg(root: str, out: str) -> dict:
    cfg = config.load(None)
    cfg["lake"] = root
    cfg["download"].update({"out": out, "allow_private": True, "attempts": 1, "shard_size": 5, "threads": 1})
    return cfg


def _tars(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if SHARD.match(p.name)}


def _samples(data: bytes) -> int:
    """Samples in a whole webdataset tar (raises on a truncated one): jpg, txt and json per key, images decode."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    keys = {name.split(".")[0] for name in members}
    assert set(members) == {f"{k}.{ext}" for k in keys for ext in ("jpg", "txt", "json")}
    for k in keys:
        with Image.open(io.BytesIO(members[f"{k}.jpg"])) as im:
            im.load()
    return len(keys)


def test_sigkill_download_mid_run_then_rerun_equals_clean_run(spark, tmp_path) -> None:
    site = SlowSite()
    try:
        urls = [f"{site.base}/img/{n}.jpg" for n in range(36)] + [f"{site.base}/gone/{n}.jpg" for n in range(4)]
        pristine = str(tmp_path / "pristine")
        curated_run(spark, pristine, urls)
        killed, clean = tmp_path / "killed", tmp_path / "clean"
        shutil.copytree(pristine, killed)
        shutil.copytree(pristine, clean)
        out = tmp_path / "killed-shards"

        # 40 URLs -> 9 hash shards of ~4, one download at a time per task, 0.25 s each: ~1 s a shard, two
        # tasks at once. Killed as soon as one shard's rows are in the resume folder (after its tar), the others
        # still downloading.
        site.delay = 0.25
        proc = start_cli(["download", "--lake", str(killed), "--out", str(out), "--allow-private", "--attempts",
                          "1", "--shard-size", "5", "--threads", "1"], tmp_path)
        staged = killed / "_staging"
        assert kill_when(proc, lambda: bool(list(staged.glob("download-resume-*/*.parquet")))), (
            proc.communicate()[1][-3000:])
        assert proc.returncode == -signal.SIGKILL
        site.delay = 0.0
        at_kill = _tars(out)
        finished = {p.name.split(".")[0] for p in staged.glob("download-resume-*/*.parquet")}  # rows after the tar
        expected = download.shard_count(len(urls), 5)
        assert 1 <= len(at_kill) < expected  # mid-run: some shards written, others not
        assert finished and {f"{n}.tar" for n in finished} <= set(at_kill)
        for data in at_kill.values():
            _samples(data)  # whole: it opens, every sample complete
        assert not (out / "sizes.json").exists()  # written last, after the commit
        assert not lk.exists(spark, str(killed), tables.DOWNLOAD_RUNS)  # nothing committed

        # the rerun takes the shards the killed run finished (tar and rows) and downloads the rest
        rerun = execute(download, spark, _cfg(str(killed), str(out)))
        assert rerun.shards_done_before == 0 and rerun.shards == expected and rerun.shards_resumed == len(finished)
        assert rerun.urls == len(urls) and rerun.succeeded == 36
        assert not list(staged.glob("download-resume-*"))  # every shard listed: the resume folder is gone

        sizes = json.loads((out / "sizes.json").read_text())
        tars = _tars(out)
        assert set(tars) == set(sizes) and sum(sizes.values()) == 36
        assert {name: _samples(data) for name, data in tars.items()} == sizes
        # only shards and sizes.json: the rerun removed the killed tasks' unfinished temp files
        assert not [p.name for p in out.iterdir() if p.name not in tars and p.name != "sizes.json"]
        rows = lk.read(spark, str(killed), tables.DOWNLOADS)
        assert rows.count() == len(urls) == rows.select("image_url").distinct().count()  # no URL twice
        runs = lk.read(spark, str(killed), tables.DOWNLOAD_RUNS).collect()
        assert len(runs) == 1 and runs[0]["urls"] == len(urls) and len(runs[0]["shards"]) == expected
        # the resumed shards' rows are the rerun's (a later --retry-failed retries their failures too)
        assert {r["download_run_id"] for r in rows.select("download_run_id").collect()} == {rerun.run_id}

        clean_out = tmp_path / "clean-shards"
        execute(download, spark, _cfg(str(clean), str(clean_out)))
        assert json.loads((clean_out / "sizes.json").read_text()) == sizes
        assert _tars(clean_out) == tars  # byte for byte, the killed run's shards and the rerun's alike
        cols = ["image_url", "shard", "key", "status", "http_status", "bytes", "width", "height", "sha256"]
        assert sorted(rows.select(cols).collect()) == sorted(
            lk.read(spark, str(clean), tables.DOWNLOADS).select(cols).collect())
    finally:
        site.server.shutdown()
