"""Input expansion (driver side, names only) and the session/config plumbing, without Spark."""

from __future__ import annotations

import gzip

import pytest

from kgcurate import config
from kgcurate.errors import UserError
from kgcurate.session import build_conf
from kgcurate.wat.inputs import expand_inputs, listing_base_for, resolve_listed, same_file_key


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_directory_glob_and_dedup(tmp_path):
    a = _touch(tmp_path / "d" / "a.warc.wat.gz")
    b = _touch(tmp_path / "d" / "sub" / "b.wat")
    _touch(tmp_path / "d" / "notes.txt")
    _touch(tmp_path / "d" / "wat.paths.gz")
    got = expand_inputs([str(tmp_path / "d"), str(a), str(tmp_path / "d" / "*.gz")])
    # directory finds both WAT files (not the listing or notes), the explicit file and glob add nothing new
    assert got == [str(a), str(b)]


def test_a_glob_keeps_wat_files_and_reads_listings_only_when_it_asks_for_them(tmp_path):
    """`dir/*.gz` used to take the folder's wat.paths.gz for a WAT file: logged failed on every run (exit 1);
    `dir/*` took manifest.json too. A glob keeps WAT files, as a directory and an S3 glob do; a pattern for
    listings (`crawls/*/wat.paths.gz`) reads what they list."""
    a = _touch(tmp_path / "d" / "a.warc.wat.gz")
    _touch(tmp_path / "d" / "manifest.json")
    _touch(tmp_path / "d" / "wat.paths.gz", gzip.compress(b"a.warc.wat.gz\n"))
    assert expand_inputs([str(tmp_path / "d" / "*.gz")]) == expand_inputs([str(tmp_path / "d" / "*")]) == [str(a)]
    with pytest.raises(UserError, match=r"no WAT file matches .*\*\.json, only listings, WARC/WET files or notes"):
        expand_inputs([str(tmp_path / "d" / "*.json")])
    # a glob still names WAT files without the suffix (parts of a split file), as it always did
    parts = [_touch(tmp_path / "p" / f"part-0000{i}") for i in range(2)]
    _touch(tmp_path / "p" / "part-00000.md5")
    assert expand_inputs([str(tmp_path / "p" / "part-*")]) == [str(p) for p in parts]
    b = _touch(tmp_path / "e" / "seg" / "b.wat.gz")
    _touch(tmp_path / "e" / "wat.paths.gz", gzip.compress(b"seg/b.wat.gz\n"))
    assert expand_inputs([str(tmp_path / "*" / "wat.paths.gz")]) == [str(a), str(b)]


def test_a_file_uri_names_the_same_file_as_its_path(tmp_path):
    """A `file://` --listing-base (or a listing's file:// entries) made a second key for the same file: it was
    read twice in one run, its bad records written twice, and read again by a run naming the folder."""
    a = _touch(tmp_path / "d" / "a.warc.wat.gz")
    b = _touch(tmp_path / "d" / "b.warc.wat.gz")
    listing = _touch(tmp_path / "d" / "wat.paths.gz", gzip.compress(f"a.warc.wat.gz\nfile://{b}\n".encode()))
    got = expand_inputs([str(listing), str(tmp_path / "d")], listing_base=f"file://{tmp_path}/d/")
    assert got == [str(a), str(b)]
    assert expand_inputs([f"file://{tmp_path}/d/./a.warc.wat.gz", str(a)]) == [str(a)]


def test_a_folder_is_walked_through_symlinked_subfolders_once(tmp_path):
    """os.walk does not follow links by default: a segment linked into the folder was left out, silently.
    A file the plain walk reaches keeps that key (a link that sorts first must not rename it: ingest_log
    knows it by that key), and a loop is walked once."""
    a = _touch(tmp_path / "top" / "CC-MAIN-2024-51" / "a.wat.gz")
    b = _touch(tmp_path / "elsewhere" / "seg" / "b.wat.gz")
    (tmp_path / "top" / "0-current").symlink_to(a.parent)
    (tmp_path / "top" / "seg").symlink_to(b.parent)
    (tmp_path / "top" / "loop").symlink_to(tmp_path / "top")
    assert expand_inputs([str(tmp_path / "top")]) == [str(a), str(tmp_path / "top" / "seg" / "b.wat.gz")]


def test_a_folder_that_cannot_be_listed_is_named_and_the_rest_read(tmp_path, monkeypatch, caplog):
    """A subfolder the walk cannot list (a mount root's lost+found) was skipped in silence; it is named in
    a warning, and the input's other files are read (no WAT file at all stays an error)."""
    import os

    a = _touch(tmp_path / "top" / "a.wat.gz")
    real = os.scandir

    def refuse(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    (tmp_path / "top" / "locked").mkdir()
    monkeypatch.setattr(os, "scandir", refuse)
    with caplog.at_level("WARNING", logger="kgcurate"):
        assert expand_inputs([str(tmp_path / "top")]) == [str(a)]
    assert f"cannot list folder {tmp_path / 'top' / 'locked'} under input {tmp_path / 'top'}: Permission denied" \
        in caplog.text


def test_listing_relative_to_its_folder_and_to_a_base(tmp_path):
    listing = tmp_path / "crawl" / "wat.paths.gz"
    listing.parent.mkdir()
    listing.write_bytes(gzip.compress(b"crawl-data/CC-MAIN-2024-22/segments/1/wat/x.warc.wat.gz\n\n/abs/y.wat.gz\n"))
    assert expand_inputs([str(listing)]) == [
        str(tmp_path / "crawl" / "crawl-data/CC-MAIN-2024-22/segments/1/wat/x.warc.wat.gz"), "/abs/y.wat.gz"]
    got = expand_inputs([str(listing)], listing_base="s3a://commoncrawl/")
    assert got[0] == "s3a://commoncrawl/crawl-data/CC-MAIN-2024-22/segments/1/wat/x.warc.wat.gz"


def test_a_relative_listing_base_and_comment_lines(tmp_path, monkeypatch):
    """Keys from a relative --listing-base are absolute (they named the working directory's files, so
    the same file passed directly was a second key); a listing's # lines are comments, not files."""
    mirror = tmp_path / "mirror"
    (mirror / "seg").mkdir(parents=True)
    (mirror / "seg" / "a.warc.wat.gz").write_bytes(b"x")
    listing = tmp_path / "wat.paths"
    listing.write_text("# made by hand\nseg/a.warc.wat.gz\n\n")
    monkeypatch.chdir(tmp_path)
    got = expand_inputs([str(listing), str(mirror / "seg" / "a.warc.wat.gz")], "mirror")
    assert got == [str(mirror / "seg" / "a.warc.wat.gz")]


def test_s3_spellings_share_one_key():
    assert same_file_key("s3a://b/k.wat.gz") == same_file_key("s3n://b/k.wat.gz") == "s3://b/k.wat.gz"
    assert same_file_key("/local/s3a://x") == "/local/s3a://x" and same_file_key("https://h/a") == "https://h/a"
    assert same_file_key("file:///w/a.wat.gz") == same_file_key("file:/w/a.wat.gz") == "/w/a.wat.gz"

    assert expand_inputs(["s3://b/x.warc.wat.gz", "s3a://b/x.warc.wat.gz"]) == ["s3://b/x.warc.wat.gz"]
    # s3n:// (Hadoop's third name) is an S3 object too, not a local path that is not found
    assert expand_inputs(["s3n://b/x.warc.wat.gz", "s3://b/x.warc.wat.gz"]) == ["s3n://b/x.warc.wat.gz"]


def test_an_http_listing_url_with_a_query_is_a_listing(monkeypatch):
    """`?`, `*` and `[` in an http(s) URL are not glob characters: such a listing URL was taken for one WAT file."""
    from kgcurate.wat import inputs

    monkeypatch.setattr(inputs, "read_listing_names", lambda listing: ["crawl-data/C/segments/1/wat/a.warc.wat.gz"])
    url = "https://mirror.example/get?path=crawl-data/CC-MAIN-2024-51/wat.paths.gz"
    assert expand_inputs([url], listing_base="https://data.commoncrawl.org/") == [
        "https://data.commoncrawl.org/crawl-data/C/segments/1/wat/a.warc.wat.gz"]


def test_listing_base_defaults():
    assert listing_base_for("s3://commoncrawl/crawl-data/CC-MAIN-2024-22/wat.paths.gz") == "s3://commoncrawl/"
    assert resolve_listed("a/b.wat.gz", "https://data.commoncrawl.org/") == "https://data.commoncrawl.org/a/b.wat.gz"


@pytest.mark.parametrize("bad", ["missing.wat.gz", "nothing-*.wat.gz"])
def test_bad_paths_are_one_line_user_errors(tmp_path, bad):
    with pytest.raises(UserError) as err:
        expand_inputs([str(tmp_path / bad)])
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)


def test_corrupt_listing_is_a_user_error(tmp_path):
    listing = _touch(tmp_path / "wat.paths.gz", b"not gzip at all")
    with pytest.raises(UserError, match="not valid gzip"):
        expand_inputs([str(listing)])
    empty = _touch(tmp_path / "empty.paths.gz", gzip.compress(b"\n"))
    with pytest.raises(UserError, match=f"listing {empty} names no file"):
        expand_inputs([str(empty)])


def test_local_conf_has_delta_and_cluster_conf_leaves_master_alone():
    local = build_conf(cluster=False, env={})
    assert local["spark.master"] == "local[*]"
    assert local["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    cluster = build_conf({"spark.sql.shuffle.partitions": 800}, cluster=True, env={})
    assert "spark.master" not in cluster and "spark.jars" not in cluster
    assert cluster["spark.sql.shuffle.partitions"] == "800"


def test_a_local_jvm_collects_with_the_parallel_collector(spark):
    """Local sessions (the tests' own included) ask for it, and the JVM they started runs it; a cluster's
    JVM options are the cluster's."""
    assert "-XX:+UseParallelGC" in build_conf(cluster=False, env={})["spark.driver.extraJavaOptions"]
    assert "spark.driver.extraJavaOptions" not in build_conf(cluster=True, env={})
    beans = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()
    assert sorted(b.getName() for b in beans) == ["PS MarkSweep", "PS Scavenge"]


def test_s3_endpoint_from_environment_never_credentials():
    conf = build_conf(cluster=True, env={"KGCURATE_S3_ENDPOINT": "http://127.0.0.1:9000",
                                         "AWS_SECRET_ACCESS_KEY": "sekret", "AWS_ACCESS_KEY_ID": "AKIA"})
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9000"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert not any("sekret" in v or "AKIA" in v for v in conf.values())


def test_config_file_and_flag_precedence(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lake: /data/lake\nbalance:\n  t: 20000\n")
    cfg = config.load(p)
    assert cfg["lake"] == "/data/lake" and cfg["balance"]["t"] == 20000 and cfg["balance"]["seed"] == 0
    config.set_if_given(cfg, "balance.t", None)
    assert cfg["balance"]["t"] == 20000
    config.set_if_given(cfg, "balance.t", 5)
    assert cfg["balance"]["t"] == 5
    (tmp_path / "bad.yaml").write_text("lake: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        config.load(tmp_path / "bad.yaml")


def test_settings_asked_of_a_running_session_are_named_not_dropped_silently(spark, caplog) -> None:
    from kgcurate.session import get_spark

    before = spark.conf.get("spark.sql.shuffle.partitions")
    with caplog.at_level("WARNING", logger="kgcurate.session"):
        same = get_spark("again", {"spark.sql.shuffle.partitions": 999, "spark.sql.session.timeZone": "UTC"})
    assert same is spark and spark.conf.get("spark.sql.shuffle.partitions") == before
    [warning] = [r.getMessage() for r in caplog.records if r.name == "kgcurate.session"]
    assert "spark.sql.shuffle.partitions=999" in warning and "timeZone" not in warning


def test_a_path_with_brackets_that_exists_is_a_path_not_a_pattern(tmp_path):
    """`br[1]/a.wat.gz` and `CC [copy].wat.gz` were read as character sets, matched nothing and stopped the run
    ("no file matches"); a shell reads an existing name as itself, and so do we. A missing one is a pattern."""
    a = _touch(tmp_path / "br[1]" / "a.warc.wat.gz")
    b = _touch(tmp_path / "lit" / "CC [copy].wat.gz")
    listing = _touch(tmp_path / "lit" / "wat[1].paths.gz", gzip.compress(b"CC [copy].wat.gz\n"))
    assert expand_inputs([str(a)]) == expand_inputs([str(tmp_path / "br[1]")]) == [str(a)]
    assert expand_inputs([str(b)]) == expand_inputs([str(listing)]) == [str(b)]
    assert expand_inputs([str(tmp_path / "br?1?" / "*.gz")]) == [str(a)]  # not a name: still a pattern
