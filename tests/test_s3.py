"""kgcurate.s3 against a real S3 server on loopback (moto server mode), no Spark."""

from __future__ import annotations

import fnmatch
import gzip
import io

import pytest

from helpers import assert_other_readers_agree, execute
from kgcurate import s3
from kgcurate.errors import UserError
from kgcurate.wat.inputs import expand_inputs, open_input, read_listing_names
from s3server import SECRET_KEY, running_server

CRAWL = "CC-MAIN-2099-01"
SEG = f"crawl-data/{CRAWL}/segments/1700000000000.0"


@pytest.fixture(scope="module")
def server():
    with running_server() as srv:
        srv.create_bucket("ccdata")
        for i in range(3):
            srv.put("ccdata", f"{SEG}/wat/CC-MAIN-x-{i:05d}.warc.wat.gz", gzip.compress(b"WARC/1.0\r\n" * (i + 1)))
        srv.put("ccdata", f"{SEG}/warc/CC-MAIN-x-00000.warc.gz", b"not a wat")
        srv.put("ccdata", f"{SEG}/wat/README.txt", b"x")
        listing = "\n".join(f"{SEG}/wat/CC-MAIN-x-{i:05d}.warc.wat.gz" for i in range(3)) + "\n"
        srv.put("ccdata", f"crawl-data/{CRAWL}/wat.paths.gz", gzip.compress(listing.encode()))
        yield srv


def test_split_url_and_errors():
    assert s3.split_url("s3a://b/k/x.gz") == ("s3a", "b", "k/x.gz")
    assert s3.split_url("s3://b") == ("s3", "b", "")
    with pytest.raises(ValueError):
        s3.split_url("/local/path")
    with pytest.raises(ValueError):
        s3.split_url("s3:///nokey")


def test_expand_prefix_glob_and_key(server):
    wats = [f"s3a://ccdata/{SEG}/wat/CC-MAIN-x-{i:05d}.warc.wat.gz" for i in range(3)]
    # prefix: everything under it, same scheme as asked
    under = s3.expand_s3(f"s3a://ccdata/{SEG}/wat/")
    assert under == sorted([*wats, f"s3a://ccdata/{SEG}/wat/README.txt"])
    # glob: '*' stays in one segment, '**' crosses
    assert s3.expand_s3(f"s3a://ccdata/crawl-data/{CRAWL}/segments/*/wat/*.wat.gz") == wats
    assert s3.expand_s3(f"s3a://ccdata/crawl-data/{CRAWL}/*.wat.gz") == []
    assert s3.expand_s3(f"s3://ccdata/crawl-data/{CRAWL}/**.wat.gz") == [w.replace("s3a://", "s3://") for w in wats]
    assert s3.expand_s3(f"s3a://ccdata/{SEG}/wat/CC-MAIN-x-0000[02].warc.wat.gz") == [wats[0], wats[2]]
    assert s3.expand_s3(f"s3a://ccdata/{SEG}/wat/CC-MAIN-x-0000[!02].warc.wat.gz") == [wats[1]]
    # an exact key is itself (not its siblings sharing the prefix); a folder name expands
    assert s3.expand_s3(wats[1]) == [wats[1]]
    assert s3.expand_s3(f"s3a://ccdata/{SEG}/warc") == [f"s3a://ccdata/{SEG}/warc/CC-MAIN-x-00000.warc.gz"]
    assert s3.expand_s3("s3a://ccdata/nothing/here/") == []
    # through expand_inputs: a folder named without its slash expands to its WAT files (it was taken
    # for one file and failed); the same file spelled s3:// and s3a:// is read once
    assert expand_inputs([f"s3a://ccdata/{SEG}/wat"]) == wats
    as_s3 = [w.replace("s3a://", "s3://") for w in wats]
    assert expand_inputs([wats[0], as_s3[0], f"s3://ccdata/{SEG}/wat/"]) == [wats[0], *as_s3[1:]]  # first spelling
    with pytest.raises(UserError, match="no object matches"):
        expand_inputs(["s3a://ccdata/nothing/here"])


def test_open_streams_and_missing_objects(server):
    url = f"s3a://ccdata/{SEG}/wat/CC-MAIN-x-00002.warc.wat.gz"
    with s3.open_s3(url) as f:
        assert gzip.decompress(f.read()) == b"WARC/1.0\r\n" * 3
    assert s3.exists(url)
    assert not s3.exists("s3a://ccdata/missing.gz")
    with pytest.raises(FileNotFoundError):
        s3.open_s3("s3a://ccdata/missing.gz")
    with pytest.raises(FileNotFoundError):
        s3.open_s3("s3a://no-such-bucket/x")
    with pytest.raises(IsADirectoryError):
        s3.open_s3("s3a://ccdata")


def test_stream_is_incremental(server):
    """A 5 MB object read in small slices: the buffer, not the object, bounds memory."""
    blob = bytes(range(256)) * (5 * 4096)
    server.put("ccdata", "big/blob.bin", blob)
    with s3.open_s3("s3://ccdata/big/blob.bin", buffer_size=64 * 1024) as f:
        raw = f.raw
        first = f.read(1000)
        assert first == blob[:1000]
        assert raw.pos <= 64 * 1024  # only one buffer fetched so far
        rest = f.read()
    assert first + rest == blob


def test_lead_inputs_use_s3_for_listings_and_globs(server):
    listing = f"s3a://ccdata/crawl-data/{CRAWL}/wat.paths.gz"
    names = read_listing_names(listing)
    assert len(names) == 3 and names[0].startswith("crawl-data/")
    files = expand_inputs([listing])  # relative to the bucket root, as CommonCrawl's are
    assert files == [f"s3a://ccdata/{SEG}/wat/CC-MAIN-x-{i:05d}.warc.wat.gz" for i in range(3)]
    assert expand_inputs([f"s3a://ccdata/{SEG}/wat/"]) == files  # README.txt is not a WAT file
    with open_input(files[0]) as f:
        assert f.read(2) == b"\x1f\x8b"
    with pytest.raises(UserError, match="listing not found"):
        expand_inputs(["s3a://ccdata/crawl-data/CC-MAIN-2000-01/wat.paths.gz"])


def test_listing_url():
    assert s3.listing_url("CC-MAIN-2024-51") == "s3://commoncrawl/crawl-data/CC-MAIN-2024-51/wat.paths.gz"
    assert s3.listing_url("CC-MAIN-2024-51", "s3a://mirror/cc/") == (
        "s3a://mirror/cc/crawl-data/CC-MAIN-2024-51/wat.paths.gz")
    with pytest.raises(UserError, match="CC-MAIN-YYYY-WW"):
        s3.listing_url("2024-51")


class _FlakyBody:
    """A response body that breaks after ``fail_after`` bytes, like a reset connection."""

    def __init__(self, data: bytes, fail_after: int | None):
        self.buf, self.fail_after, self.sent = io.BytesIO(data), fail_after, 0

    def read(self, n: int = -1) -> bytes:
        from urllib3.exceptions import ProtocolError

        if self.fail_after is not None and self.sent >= self.fail_after:
            raise ProtocolError("Connection broken: connection reset by peer")
        chunk = self.buf.read(n if self.fail_after is None else min(n, self.fail_after - self.sent))
        self.sent += len(chunk)
        return chunk

    def close(self) -> None:
        pass


class _FlakyClient:
    def __init__(self, data: bytes, breaks: int):
        self.data, self.breaks, self.calls = data, breaks, []

    def get_object(self, Bucket, Key, Range=None, IfMatch=None):  # noqa: N803 - boto3's names
        self.calls.append((Range, IfMatch))
        start = int(Range.split("=")[1].rstrip("-")) if Range else 0
        fail = 1000 if self.breaks > 0 else None
        self.breaks -= 1
        body = _FlakyBody(self.data[start:], fail)
        return {"Body": body, "ContentLength": len(self.data) - start, "ETag": '"abc"'}


def test_resume_after_connection_reset():
    data = bytes(range(256)) * 40  # 10,240 bytes, broken every 1,000 bytes three times
    fake = _FlakyClient(data, breaks=3)
    raw = s3.ResumableObject(fake, "b", "k", retries=5, backoff=0)
    with io.BufferedReader(raw, buffer_size=256) as f:
        assert f.read() == data
    assert raw.resumes == 3
    assert fake.calls[0] == (None, None)
    assert fake.calls[1] == ("bytes=1000-", '"abc"')  # resumed where it broke, pinned to the ETag
    assert fake.calls[2] == ("bytes=2000-", '"abc"')


def test_resume_gives_up_after_retries():
    from urllib3.exceptions import ProtocolError

    raw = s3.ResumableObject(_FlakyClient(b"x" * 5000, breaks=10), "b", "k", retries=2, backoff=0)
    with pytest.raises(ProtocolError), io.BufferedReader(raw, buffer_size=256) as f:
        f.read()


def test_no_secret_in_errors(server):
    try:
        s3.open_s3("s3a://ccdata/missing.gz")
    except FileNotFoundError as exc:
        assert SECRET_KEY not in repr(exc) and SECRET_KEY not in str(exc)


def test_latest_crawl_in_a_bucket(server):
    """`--crawl latest` on an S3 root lists crawl-data/'s folders only and takes the newest with a WAT listing."""
    from kgcurate.stages import refresh

    server.create_bucket("cc-latest")
    server.put("cc-latest", "mirror/crawl-data/CC-MAIN-2024-51/wat.paths.gz", b"")
    server.put("cc-latest", "mirror/crawl-data/CC-MAIN-2024-51/segments/1/wat/a.warc.wat.gz", b"")
    server.put("cc-latest", "mirror/crawl-data/CC-MAIN-2025-05/segments/1/wat/b.warc.wat.gz", b"")  # no listing yet
    server.put("cc-latest", "mirror/crawl-data/CC-MAIN-2023-50/wat.paths.gz", b"")
    assert s3.list_folders("cc-latest", "mirror/crawl-data/") == ["CC-MAIN-2023-50", "CC-MAIN-2024-51",
                                                                  "CC-MAIN-2025-05"]
    assert refresh.latest_crawl("s3a://cc-latest/mirror/") == "CC-MAIN-2024-51"
    with pytest.raises(UserError, match="no crawl-data/CC-MAIN-YYYY-WW/wat.paths.gz under s3://cc-latest/none/"):
        refresh.latest_crawl("s3://cc-latest/none/")


# --- Spark through s3a: a crawl in one bucket, the whole lake in another -----------------------------


@pytest.mark.slow
def test_refresh_from_bucket_to_bucket_lake(spark, tmp_path, capfd, caplog):
    """WAT files read from S3 (boto3), every table written through s3a to S3, one listed object missing."""
    from kgcurate import config, lake, tables
    from kgcurate.stages import build_metadata, refresh
    from kgcurate.wat.sample import ANIMALS, OBJECTS, write_sample
    from kgcurate.wat.sample import CRAWL as SAMPLE_CRAWL
    from s3server import point_spark_at, restore_spark

    write_sample(tmp_path / "gen", files=2, records=40, seed=3, corrupt=False)
    with running_server() as srv:
        srv.create_bucket("commoncrawl-mirror")
        srv.create_bucket("kgcurate-lake")
        seg = f"crawl-data/{SAMPLE_CRAWL}/segments/1.0/wat"
        keys = []
        for path in sorted((tmp_path / "gen").glob("*.warc.wat.gz")):
            srv.upload_file(str(path), "commoncrawl-mirror", f"{seg}/{path.name}")
            keys.append(f"{seg}/{path.name}")
        missing = f"{seg}/CC-MAIN-2099-01-sample-99999.warc.wat.gz"
        listing = "\n".join([*keys, missing]) + "\n"
        srv.put("commoncrawl-mirror", f"crawl-data/{SAMPLE_CRAWL}/wat.paths.gz", gzip.compress(listing.encode()))
        previous = point_spark_at(spark, srv)
        try:
            root = "s3a://kgcurate-lake/lake"
            rows = [(e, "test", None) for e in ANIMALS + OBJECTS]
            meta = build_metadata.derive(spark.createDataFrame(rows, "entry string, source string, qid string"))
            lake.overwrite(spark, root, tables.METADATA, meta)
            cfg = config.load(None)
            cfg["lake"] = root
            cfg["balance"]["target_size"] = 10
            cfg["refresh"] = {"crawl": SAMPLE_CRAWL, "listing_base": "s3a://commoncrawl-mirror/"}
            cfg["wat"]["progress_interval"] = 3600
            s = execute(refresh, spark, cfg)
            assert s.ingest.files == 3 and s.ingest.ok == 2
            failed = dict(s.ingest.failed)
            assert list(failed) == [f"s3a://commoncrawl-mirror/{missing}"]
            assert "FileNotFoundError" in failed[f"s3a://commoncrawl-mirror/{missing}"]
            assert s.balance.pairs_out == 10
            log = lake.read(spark, root, tables.INGEST_LOG)
            assert log.where("status = 'ok'").count() == 2 and log.where("status = 'failed'").count() == 1
            pairs = lake.read(spark, root, tables.PAIRS)
            assert pairs.count() > 10 and pairs.select("source_file").distinct().count() == 2
            assert pairs.groupBy("image_url", "text").count().where("count > 1").count() == 0
            stored = srv.keys("kgcurate-lake", "lake/")
            for name in (tables.PAIRS, tables.INGEST_LOG, tables.MATCHES, tables.ENTRY_COUNTS, tables.CURATED,
                         tables.CURATION_RUNS):
                assert any(k.startswith(f"lake/{name}/_delta_log/") for k in stored), name
            # staging cleaned up (s3a may leave its empty "directory" marker)
            assert not [k for k in stored if k.startswith("lake/_staging/") and not k.endswith("/")]
            # No credential anywhere: not in any object of the lake, nor in any log line.
            client = srv.client()
            for key in stored:
                body = client.get_object(Bucket="kgcurate-lake", Key=key)["Body"].read()
                assert SECRET_KEY.encode() not in body, key
            for row in lake.read(spark, root, tables.INGEST_LOG).collect():
                assert SECRET_KEY not in str(row)
            # DuckDB (httpfs and an S3 secret) and delta-rs read the bucket's lake as Spark does
            assert len(assert_other_readers_agree(spark, root)) >= 8
        finally:
            restore_spark(spark, previous)
    out, err = capfd.readouterr()
    assert SECRET_KEY not in out + err + caplog.text


@pytest.mark.parametrize("pattern", ["a/[]x]*.gz", "a/[!]x]*.gz", "a/[^b]c", "a/[a-c]1", "a/[!a-c]1", "a/[x", "a/[[]x",
                                     "a/*.wat.gz", "a/?1"])
def test_key_globs_read_character_sets_as_fnmatch_does(pattern):
    """A set led by "]" ("[]x]") was a regex error (a trace, not a listing); "^" first is a character."""
    keys = ["a/]1.gz", "a/x.gz", "a/y.gz", "a/^c", "a/bc", "a/dc", "a/b1", "a/d1", "a/[x", "a/f.wat.gz", "a/b/c.wat.gz"]
    regex = s3._glob_regex(pattern)
    assert [k for k in keys if regex.match(k)] == [k for k in keys if fnmatch.fnmatchcase(k, pattern) and
                                                   k.count("/") == pattern.count("/")]
