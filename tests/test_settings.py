"""Config keys declared once (kgcurate.settings): defaults, YAML types and command flags agree."""

from __future__ import annotations

import pytest

from kgcurate import cli, config, registry, settings
from kgcurate.metadata import kg


def _flags(command: str, argv: list[str], cfg: dict | None = None) -> dict:
    args = cli.build_parser(command).parse_args([command, *argv])
    cfg = cfg if cfg is not None else settings.defaults()
    settings.apply_flags(args, cfg, registry.BY_NAME[command].flag_keys)
    return cfg


def test_flags_land_on_their_config_keys_and_absent_flags_leave_the_yaml() -> None:
    cfg = settings.defaults()
    cfg["wat"]["crawl"] = "CC-MAIN-2020-01"  # as if from YAML
    _flags("ingest-wat", ["--no-title", "--min-text-length", "5", "a.wat.gz", "b.wat.gz"], cfg)
    assert cfg["wat"]["text_sources"] == ["alt"] and cfg["wat"]["min_text_length"] == 5
    assert cfg["wat"]["inputs"] == ["a.wat.gz", "b.wat.gz"] and cfg["wat"]["crawl"] == "CC-MAIN-2020-01"
    assert cfg["wat"]["force"] is False  # a store_true flag not given is not "False from the CLI"
    wd = _flags("ingest-wikidata", ["--languages", "de, en,", "dump.json.bz2"])["wikidata"]
    assert wd["languages"] == ["de", "en"] and wd["input"] == ["dump.json.bz2"]
    md = _flags("build-metadata", ["--no-wordnet", "--entity-set", "a.yaml", "--entity-set", "b"])["metadata"]
    assert md["wordnet"] is False and md["entity_sets"] == ["a.yaml", "b"]
    sample = _flags("make-sample", ["--uncompressed", "--files", "2"])["sample"]
    assert sample["gzip"] is False and sample["corrupt"] is True and sample["files"] == 2


def test_an_empty_list_flag_is_refused_not_taken_for_absent(capsys) -> None:
    """`--languages ","` parsed to [], which counts as not given: the run silently used the default (en)."""
    for command, flag in (("ingest-wikidata", "--languages"), ("download", "--opt-out")):
        with pytest.raises(SystemExit) as exc:
            cli.build_parser(command).parse_args([command, flag, ",", "--lake", "L"])
        assert exc.value.code == 2 and f"argument {flag}: expected a comma-separated list, got ','" in (
            capsys.readouterr().err)


def test_a_true_false_flag_wins_over_the_yaml_both_ways() -> None:
    """A config's `dry_run: true` (or `wordnet: false`) could not be undone from the command line: the flags
    only set one way. Each now has both forms, and one not given leaves the YAML's value."""
    cfg = settings.defaults()
    cfg["maintain"]["dry_run"] = True
    assert _flags("maintain", ["--no-dry-run"], cfg)["maintain"]["dry_run"] is False
    assert _flags("maintain", ["--dry-run"], settings.defaults())["maintain"]["dry_run"] is True
    cfg["maintain"]["dry_run"] = True
    assert _flags("maintain", [], cfg)["maintain"]["dry_run"] is True
    cfg = settings.defaults()
    cfg["metadata"]["wordnet"] = False
    assert _flags("build-metadata", ["--wordnet"], cfg)["metadata"]["wordnet"] is True
    cfg = settings.defaults()
    cfg["balance"].update(t=5.0, per_qid=True)
    assert _flags("balance", ["--no-per-qid"], cfg)["balance"]["per_qid"] is False
    assert _flags("make-sample", ["--corrupt"], settings.defaults())["sample"]["corrupt"] is True
    with pytest.raises(SystemExit):
        _flags("maintain", ["--dry"])  # still no abbreviations


def test_a_target_flag_replaces_the_yaml_target_also_from_refresh() -> None:
    cfg = settings.defaults()
    cfg["balance"].update(t=50.0)
    _flags("balance", ["--target-size", "1000"], cfg)
    assert cfg["balance"]["target_size"] == 1000 and cfg["balance"]["t"] is None
    cfg = settings.defaults()
    cfg["balance"].update(tail_share=0.3)
    _flags("refresh", ["--crawl", "CC-MAIN-2024-51", "--target-size", "77"], cfg)
    assert cfg["balance"] == {**cfg["balance"], "target_size": 77, "t": None, "tail_share": None}
    assert cfg["refresh"]["crawl"] == "CC-MAIN-2024-51" and cfg["wat"]["crawl"] is None
    kept = settings.defaults()
    kept["balance"].update(t=50.0)
    assert _flags("balance", ["--seed", "3"], kept)["balance"]["t"] == 50.0
    # the docs' "refresh with a fixed --t": t itself, not --target-size by prefix (20,000 pairs, silently)
    cfg = settings.defaults()
    cfg["balance"].update(target_size=10**9)
    _flags("refresh", ["--crawl", "CC-MAIN-2024-51", "--t", "20000"], cfg)
    assert (cfg["balance"]["t"], cfg["balance"]["target_size"]) == (20000.0, None)
    assert _flags("refresh", ["--crawl", "C", "--tail-share", "0.2"])["balance"]["tail_share"] == 0.2


@pytest.mark.parametrize("argv", [["balance", "--target", "5"], ["refresh", "--cra", "C"], ["match", "--fu"]])
def test_an_abbreviated_flag_is_a_usage_error_not_a_guess(argv) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.build_parser(argv[0]).parse_args(argv)
    assert exc.value.code == 2


def test_exclusive_flags_given_together_are_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.build_parser("balance").parse_args(["balance", "--t", "5", "--target-size", "10"])
    assert exc.value.code == 2


def test_yaml_types_come_from_the_declarations() -> None:
    assert settings.value_types(settings.MaintainOptions, "vacuum_hours") == (int, float)  # 24 is a fine float
    assert settings.value_types(settings.WikidataOptions, "input") == (str, list)
    config.validate({"maintain": {"vacuum_hours": 24}, "balance": {"t": 3}}, "x.yaml")
    with pytest.raises(Exception, match=r"'wat.progress_interval' must be > 0"):
        config.validate({"wat": {"progress_interval": 0}}, "x.yaml")
    assert settings.SHARED_ALIAS_MODES == kg.SHARED_MODES


def test_typed_section_view() -> None:
    cfg = settings.defaults()
    cfg["match"]["lowercase"] = True
    m = settings.section(cfg, settings.MatchOptions)
    assert m.lowercase is True and m.full is False


def test_a_home_folder_in_config_paths_given_any_way(tmp_path, monkeypatch) -> None:
    """``--config=~/c.yaml`` and ``NAME=~/folder`` dataset specs reach kgcurate unexpanded (no shell): the
    config was "not found" and an evaluation folder "does not exist"."""
    from kgcurate.stages.evaluate import _named

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "c.yaml").write_text("lake: /data/lake\n", encoding="utf-8")
    assert config.load("~/c.yaml")["lake"] == "/data/lake"
    assert _named("in1k=~/imagenet") == ("in1k", str(tmp_path / "imagenet"))
    assert _named("~/shards") == (None, str(tmp_path / "shards"))
    assert _named("held=s3://bucket/shards") == ("held", "s3://bucket/shards")
    assert _named("cifar10") == (None, "cifar10")
