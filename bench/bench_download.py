"""``kgcurate download`` against the peer a user would pick instead: img2dataset, same URLs, same server.

A loopback image server runs in its own process on several loopback addresses (127.0.0.1-4, one fake
host each: every address of 127.0.0.0/8 reaches ``lo`` on Linux) and serves generated JPEGs and PNGs of
300-1200 px with photo-like content (gradients, blobs, noise: realistic sizes and decode cost), plus a
few 404s and non-images. Both downloaders get the same URL list and the same output: webdataset shards,
JPEG quality 95, longer side shrunk to 256 px, never upscaled (ours ``--resize-mode keep_ratio_largest``;
img2dataset ``resize_mode="keep_ratio_largest", resize_only_if_bigger=True``), 16 threads in one worker
process (ours ``local[1]``, one task; img2dataset ``processes_count=1, thread_count=16``), one try per URL,
no EXIF extraction (we keep none; img2dataset's would be extra work).

Per core is images per CPU-second of the whole process tree (user + system time of the command and
every process under it: our JVM and Python workers, img2dataset's pool and logger processes). The
machine is shared with other jobs, so wall-clock rates say more about the neighbours than about the
code; CPU time does not, and it is what a cluster pays for. Each command runs under a small wrapper in
a cgroup of its own (``cpu_meter``), which counts every process the command starts: PySpark's daemon
ignores SIGCHLD, so its workers are reaped by the kernel and their CPU reaches no parent's rusage (before
session 36 the wrapper counted rusage only, and our stage's Python work, the downloads, went uncounted).
Without a cgroup (not root) it falls back to rusage, as a child subreaper, and says so. The server's CPU
is in neither.

Rounds are interleaved and the median ratio is reported, with:
- ``kgcurate download`` as a user runs it: a lake with a curated run, ``python -m kgcurate.cli
  download``: JVM start, the Delta reads, MERGE and commits included (a fixed cost per run);
- a run of each on a handful of URLs (``--fixed-images``) in every round: the cost per extra image is
  (big - small) / the extra images stored, the same estimator for both tools, and the fixed cost the
  intercept;
- the per-shard core alone (:func:`kgcurate.download.shard_task.download_shard`, CPU time of the call),
  for reference: our cost per image without the Spark wrapper (the Arrow handoff, MERGE and writes).
Within a round the order is reversed every other round (``rounds.py``'s convention).
The success rates must be equal (and equal to the share of good URLs), else the exit status is 1.

img2dataset is never a project dependency (it pulls ~56 packages): ``make bench-peers-setup`` installs
it into ``.cache/peers-img2dataset``, and it runs in a subprocess with that folder on ``PYTHONPATH``.

    make bench-peers-setup
    .venv/bin/python bench/bench_download.py --images 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import ctypes
import io
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import get_context
from pathlib import Path

import cpu_meter  # bench/ is on sys.path: this script's folder

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / ".cache" / "peers-img2dataset"
HOSTS = 4
DISTINCT = 48  # distinct images served (URL i gets image i % DISTINCT)
IMAGE_SIZE = 256
THREADS = 16
PR_SET_CHILD_SUBREAPER = 36


# ---------------------------------------------------------------- the server (its own process)


def make_images(seed: int = 7) -> list[tuple[bytes, str]]:
    """``DISTINCT`` (body, content type) pairs: 80% JPEG q90, 20% PNG, 300-1200 px a side."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for i in range(DISTINCT):
        w, h = (int(x) for x in rng.integers(300, 1201, size=2))
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        planes = []
        for _ in range(3):
            fx, fy, phase = rng.uniform(0.002, 0.03, 2).tolist() + [float(rng.uniform(0, 6.3))]
            planes.append(127 + 90 * np.sin(x * fx + y * fy + phase))
        rgb = np.stack(planes, axis=-1) + rng.normal(0, 12, (h, w, 3))
        im = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
        buf = io.BytesIO()
        if i % 5 == 4:
            im.save(buf, "PNG", compress_level=6)
            images.append((buf.getvalue(), "image/png"))
        else:
            im.save(buf, "JPEG", quality=90)
            images.append((buf.getvalue(), "image/jpeg"))
    return images


def serve(ready, port_out) -> None:
    """Serve /img/N.jpg (image N % DISTINCT), /missing/N.jpg (404), /page/N.jpg (HTML) on 127.0.0.1-HOSTS."""
    images = make_images()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real image hosts do

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            kind, _, name = self.path.lstrip("/").partition("/")
            if kind == "img":
                body, ctype = images[int(name.split(".")[0]) % DISTINCT]
                self._send(200, body, ctype)
            elif kind == "page":
                self._send(200, b"<html><body>not an image</body></html>", "image/jpeg")
            else:
                self._send(404, b"not found", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address) -> None:
            pass  # a client closing a kept-alive connection is not news

    first = Server(("127.0.0.1", 0), Handler)
    port = first.server_address[1]
    servers = [first] + [Server((f"127.0.0.{i}", port), Handler) for i in range(2, HOSTS + 1)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    port_out.value = port
    ready.set()
    threading.Event().wait()  # until SIGTERM


@dataclass(frozen=True)
class UrlSet:
    urls: list[str]
    good: int  # URLs that are images
    bytes: int  # bytes served for the good ones


def url_set(port: int, n: int, seed: int = 3) -> UrlSet:
    """``n`` distinct URLs over the hosts: ~3% 404s, ~2% HTML pages, the rest images."""
    images = make_images()
    rng = random.Random(seed)
    urls, good, size = [], 0, 0
    for i in range(n):
        host = f"127.0.0.{1 + i % HOSTS}:{port}"
        r = rng.random()
        if r < 0.03:
            urls.append(f"http://{host}/missing/{i}.jpg")
        elif r < 0.05:
            urls.append(f"http://{host}/page/{i}.jpg")
        else:
            urls.append(f"http://{host}/img/{i}.jpg")
            good += 1
            size += len(images[i % DISTINCT][0])
    return UrlSet(urls, good, size)


# ---------------------------------------------------------------- measuring a process tree


def measured(cmd: list[str], env: dict[str, str], cwd: str) -> tuple[float, float, str]:
    """Run ``cmd`` under the subreaper wrapper: (CPU seconds of the whole tree, wall seconds, stdout)."""
    wrapper = [sys.executable, __file__, "--measure-wrapper", "--", *cmd]
    done = subprocess.run(wrapper, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    lines = done.stdout.rstrip().splitlines()
    if done.returncode != 0 or not lines or not lines[-1].startswith("{"):
        raise SystemExit(f"bench_download: {' '.join(cmd[:4])} ... failed ({done.returncode}):\n"
                         f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    m = json.loads(lines[-1])
    if m["rc"] != 0:
        raise SystemExit(f"bench_download: {' '.join(cmd[:4])} ... exited {m['rc']}:\n{done.stderr[-4000:]}")
    return m["cpu"], m["wall"], "\n".join(lines[:-1])


def measure_wrapper(cmd: list[str]) -> int:
    """Become a child subreaper, run ``cmd``, reap every descendant, print {rc, cpu, wall} as JSON."""

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit("bench_download: prctl(PR_SET_CHILD_SUBREAPER) failed")
    meter = cpu_meter.Meter("kgcurate-bench-download").start().require_exact()  # PySpark's self-reaped workers too
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd)
    rc = proc.wait()
    wall = time.monotonic() - t0
    deadline = time.monotonic() + 60
    while True:  # orphaned descendants are ours now: wait for them, so their CPU time is counted
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if time.monotonic() > deadline:
                for child in _children():
                    os.kill(child, signal.SIGKILL)
                deadline = time.monotonic() + 10
            time.sleep(0.05)
    cpu = meter.seconds()
    meter.stop()
    print(json.dumps({"rc": rc, "cpu": cpu, "wall": wall}))
    return 0


def _children() -> list[int]:
    me = os.getpid()
    return [pid for pid, (parent, _) in cpu_meter.processes().items() if parent == me]


# ---------------------------------------------------------------- the three runners


def base_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def make_lake(root: str, urls: list[str]) -> None:
    """A lake with one curated run (as balance writes it) of ``urls``, one caption each; own process."""
    code = f"""
import json, sys
from datetime import datetime, timezone
from kgcurate import tables, lake as lk
from kgcurate.session import get_spark
urls = json.load(open({json.dumps(root + '.urls.json')}))
spark = get_spark("bench-download-lake", {{"spark.sql.shuffle.partitions": "2", "spark.driver.memory": "1g"}})
rows = [(i, u, f"caption {{i}}", [7], "bench") for i, u in enumerate(urls)]
lk.append(spark, {root!r}, tables.CURATED, spark.createDataFrame(rows, tables.schema(tables.CURATED)))
run = [("bench", 5.0, None, None, 0, False, len(rows), len(rows), 0, len(rows), {{"pairs": 1}},
        datetime.now(timezone.utc))]
lk.append(spark, {root!r}, tables.CURATION_RUNS, spark.createDataFrame(run, tables.schema(tables.CURATION_RUNS)))
spark.stop()
"""
    Path(root + ".urls.json").write_text(json.dumps(urls))
    env = base_env(PYTHONPATH=str(ROOT / "libs"), KGCURATE_MASTER="local[1]")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)


def run_ours_stage(lake: str, work: str) -> tuple[float, float, int, int]:
    """``kgcurate download`` on a fresh copy of ``lake``: (cpu, wall, tried, stored)."""
    copy, out = f"{work}/lake", f"{work}/shards"
    shutil.copytree(lake, copy)
    cmd = [sys.executable, "-m", "kgcurate.cli", "download", "--lake", copy, "--out", out, "--allow-private",
           "--attempts", "1", "--threads", str(THREADS), "--max-per-host", str(THREADS // HOSTS),
           "--image-size", str(IMAGE_SIZE), "--resize-mode", "keep_ratio_largest", "--shard-size", "10000",
           "--spark-conf", "spark.sql.shuffle.partitions=1", "--spark-conf", "spark.driver.memory=1g",
           "--spark-conf", "spark.ui.enabled=false"]
    env = base_env(PYTHONPATH=str(ROOT / "libs"), KGCURATE_MASTER="local[1]", PYSPARK_PYTHON=sys.executable)
    cpu, wall, stdout = measured(cmd, env, work)
    m = re.search(r"([\d,]+) images tried, ([\d,]+) stored", stdout)
    if not m:
        raise SystemExit(f"bench_download: no summary line from kgcurate download:\n{stdout}")
    return cpu, wall, int(m[1].replace(",", "")), int(m[2].replace(",", ""))


def run_ours_core(urls: list[str], work: str) -> tuple[float, float, int, int]:
    """``download_shard`` in this process (CPU time of the call): (cpu, wall, tried, stored)."""
    from kgcurate.download.fetch import FetchConfig
    from kgcurate.download.images import ImageConfig
    from kgcurate.download.policy import RetryPolicy
    from kgcurate.download.shard_task import DownloadConfig, download_shard

    config = DownloadConfig(fetch=FetchConfig(allow_private=True, retry=RetryPolicy(max_attempts=1)),
                            image=ImageConfig(IMAGE_SIZE, "keep_ratio_largest"), threads=THREADS,
                            max_per_host=THREADS // HOSTS)
    samples = [{"image_url": u, "text": f"caption {i}", "texts": []} for i, u in enumerate(urls)]
    os.makedirs(work, exist_ok=True)
    c0, t0 = time.process_time(), time.monotonic()
    result = download_shard(samples, 0, work, config)
    return time.process_time() - c0, time.monotonic() - t0, len(result.rows), result.samples


def run_peer(urls: list[str], work: str, peer: Path) -> tuple[float, float, int, int]:
    """img2dataset's ``download`` in a subprocess: (cpu, wall, tried, stored from its _stats.json files)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(work, exist_ok=True)
    listing = f"{work}/urls.parquet"
    pq.write_table(pa.table({"url": urls, "caption": [f"caption {i}" for i in range(len(urls))]}), listing)
    out = f"{work}/shards"
    code = f"""
from img2dataset import download
download(url_list={listing!r}, input_format="parquet", url_col="url", caption_col="caption",
         output_format="webdataset", output_folder={out!r}, processes_count=1, thread_count={THREADS},
         image_size={IMAGE_SIZE}, resize_mode="keep_ratio_largest", resize_only_if_bigger=True, encode_quality=95,
         number_sample_per_shard=10000, timeout=10, retries=0, enable_wandb=False, extract_exif=False)
"""
    cpu, wall, _ = measured([sys.executable, "-c", code], base_env(PYTHONPATH=str(peer)), work)
    tried = stored = 0
    for stats in Path(out).glob("*_stats.json"):
        s = json.loads(stats.read_text())
        tried += s["count"]
        stored += s["successes"]
    return cpu, wall, tried, stored


def tar_bytes(folder: str) -> tuple[int, int]:
    """(tar bytes, JPEG members) under ``folder``: what was written."""
    size = jpgs = 0
    for p in Path(folder).rglob("*.tar"):
        size += p.stat().st_size
        with tarfile.open(p) as tar:
            jpgs += sum(m.name.endswith(".jpg") for m in tar.getmembers())
    return size, jpgs


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=600, help="URLs per run (default 600)")
    ap.add_argument("--fixed-images", type=int, default=20, help="URLs of the fixed-cost runs (default 20)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--peer", type=Path, default=PEER, help="where img2dataset is installed")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "libs"))  # this checkout's kgcurate, for the in-process core runs
    if not (args.peer / "img2dataset").is_dir():
        raise SystemExit(f"bench_download: img2dataset is not installed in {args.peer}: run `make bench-peers-setup`")

    ctx = get_context("fork")
    ready, port = ctx.Event(), ctx.Value("i", 0)
    server = ctx.Process(target=serve, args=(ready, port), daemon=True)
    server.start()
    work = tempfile.mkdtemp(prefix="kgcurate-bench-download-")
    try:
        if not ready.wait(120):
            raise SystemExit("bench_download: the image server did not start")
        big, small = url_set(port.value, args.images), url_set(port.value, args.fixed_images)
        print(f"{len(big.urls):,} URLs over {HOSTS} loopback hosts, {big.good:,} images "
              f"({big.bytes / 1e6:.1f} MB, 300-1200 px, 80% JPEG / 20% PNG), {len(big.urls) - big.good} bad; "
              f"both: {THREADS} threads in 1 process, longer side <= {IMAGE_SIZE} px, JPEG q95", flush=True)
        lakes = {}
        for name, s in (("big", big), ("small", small)):
            lakes[name] = f"{work}/lake-{name}"
            make_lake(lakes[name], s.urls)

        def row(label: str, r: tuple[float, float, int, int]) -> str:
            cpu, wall, tried, stored = r
            return (f"{label} {cpu:6.1f}s cpu {wall:6.1f}s wall: {stored / cpu:6.1f} images/s/core, "
                    f"{stored:,}/{tried:,} stored ({stored / max(tried, 1):.1%})")

        # Every round runs each tool on the small and the big URL set: the cost per extra image is the same
        # estimator for both, (big - small) / extra images stored, and each round has its own fixed cost
        # (one fixed run subtracted from every round made a second's noise in it look like a trend).
        stage_ratios, extra_ratios, core_ratios, peers, stages, cores = [], [], [], [], [], []
        fixed: dict[str, list[float]] = {"img2dataset": [], "ours stage": []}
        same = True
        for r in range(args.rounds):
            sides = [("peer-small", lambda w: run_peer(small.urls, w, args.peer)),
                     ("peer", lambda w: run_peer(big.urls, w, args.peer)),
                     ("stage-small", lambda w: run_ours_stage(lakes["small"], w)),
                     ("stage", lambda w: run_ours_stage(lakes["big"], w)),
                     ("core", lambda w: run_ours_core(big.urls, w))]
            got = {name: fn(f"{work}/r{r}-{name}") for name, fn in (sides if r % 2 == 0 else sides[::-1])}
            peer, stage, core = got["peer"], got["stage"], got["core"]
            peers.append(peer)
            stages.append(stage)
            cores.append(core)
            stage_ratios.append((stage[3] / stage[0]) / (peer[3] / peer[0]))

            def per_extra(big_run: tuple, small_run: tuple) -> float:  # ms CPU per extra image stored
                return 1000 * (big_run[0] - small_run[0]) / (big_run[3] - small_run[3])

            peer_ms, stage_ms = per_extra(peer, got["peer-small"]), per_extra(stage, got["stage-small"])
            core_ms = 1000 * core[0] / core[3]
            fixed["img2dataset"].append(peer[0] - peer[3] * peer_ms / 1000)
            fixed["ours stage"].append(stage[0] - stage[3] * stage_ms / 1000)
            extra_ratios.append(peer_ms / stage_ms)
            core_ratios.append(peer_ms / core_ms)
            ok = {x[3] for x in (peer, stage, core)} == {big.good} and {x[2] for x in (peer, stage, core)} == {
                len(big.urls)}
            same = same and ok
            print(f"round {r + 1}: " + row("img2dataset", peer) + " | " + row("kgcurate download", stage)
                  + " | " + row("download_shard", core), flush=True)
            print(f"         ours: whole run {stage_ratios[-1]:.2f}x img2dataset's images/s/core; per extra image "
                  f"{extra_ratios[-1]:.2f}x ({stage_ms:.1f} vs {peer_ms:.1f} ms cpu; the per-shard core alone "
                  f"{core_ms:.1f} ms, {core_ratios[-1]:.2f}x); fixed cost (intercept) ours "
                  f"{fixed['ours stage'][-1]:.1f}s cpu, img2dataset {fixed['img2dataset'][-1]:.1f}s; "
                  f"same success: {ok}", flush=True)
        peer_tar, peer_jpg = tar_bytes(f"{work}/r0-peer/shards")
        our_tar, our_jpg = tar_bytes(f"{work}/r0-stage/shards")
        print(f"written: img2dataset {peer_tar / 1e6:.1f} MB of tars ({peer_jpg} jpg), ours {our_tar / 1e6:.1f} MB "
              f"({our_jpg} jpg); downloaded {big.bytes / 1e6:.1f} MB each")

        def med(xs: list[float]) -> str:
            return f"{statistics.median(xs):.2f}x ({min(xs):.2f}-{max(xs):.2f}x)"

        print(f"median of {args.rounds} interleaved rounds, against img2dataset 1.47.0: kgcurate download whole run "
              f"{med(stage_ratios)} its images/s/core, per extra image {med(extra_ratios)} (the per-shard core "
              f"alone {med(core_ratios)}); images/s/core: img2dataset "
              f"{statistics.median(x[3] / x[0] for x in peers):.1f}, kgcurate download "
              f"{statistics.median(x[3] / x[0] for x in stages):.1f}, download_shard "
              f"{statistics.median(x[3] / x[0] for x in cores):.1f}; fixed cost (cpu s, intercept): img2dataset "
              f"{statistics.median(fixed['img2dataset']):.1f}, kgcurate download "
              f"{statistics.median(fixed['ours stage']):.1f}; success rates equal "
              f"({big.good / len(big.urls):.1%}): {same}")
        return 0 if same else 1
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.join(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--measure-wrapper":
        sys.exit(measure_wrapper(sys.argv[3:]))
    sys.exit(main())
