"""The stage registry: one declaration per stage, and everything derived from it agrees with it."""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from kgcurate import cli, config, registry, settings, tables
from kgcurate.errors import UserError
from kgcurate.registry import Stage

REPO = Path(__file__).resolve().parents[1]
T = tables


def test_pipeline_order_puts_every_writer_before_its_readers() -> None:
    order = [s.name for s in registry.pipeline_order()]
    assert order == ["ingest-wat", "ingest-wikidata", "build-metadata", "match", "balance", "report"]
    seen: set[str] = set()
    for stage in registry.pipeline_order():
        for table in set(stage.reads) - registry.LOG_TABLES:
            writers = {s.name for s in registry.STAGES if s.pipeline and table in s.writes} - {stage.name}
            assert writers <= seen, (stage.name, table, writers - seen)
        seen.add(stage.name)


def test_stages_reading_each_other_are_refused() -> None:
    a = Stage("a", "a", "a", reads=("y",), writes=("x",), pipeline=True)
    b = Stage("b", "b", "b", reads=("x",), writes=("y",), pipeline=True)
    with pytest.raises(ValueError, match=r"\['a', 'b'\] read each other's tables"):
        registry.pipeline_order((a, b))
    # declaration order only breaks ties: a reader declared first still runs after its writer
    reader = Stage("r", "r", "r", reads=("x",), pipeline=True)
    writer = Stage("w", "w", "w", writes=("x",), pipeline=True)
    assert [s.name for s in registry.pipeline_order((reader, writer))] == ["w", "r"]


@pytest.mark.parametrize("stage", registry.STAGES, ids=lambda s: s.name)
def test_each_stage_keeps_the_contract(stage: Stage) -> None:
    module = importlib.import_module(f"kgcurate.stages.{stage.module}")
    assert callable(module.execute) and callable(module.report), stage.name
    assert list(inspect.signature(module.execute).parameters)[:2] == ["ctx", "cfg"], stage.name
    assert list(inspect.signature(module.report).parameters)[1:] == ["args"], stage.name
    for key in stage.flag_keys:  # every flag sets a declared config key
        section, name = key.split(".", 1)
        assert name in config.DEFAULTS[section], (stage.name, key)
    script = (REPO / stage.job_script).read_text()
    assert f'main(["{stage.name}", *sys.argv[1:]])' in script, stage.job_script
    docs = (REPO / "docs" / "stages.md").read_text()
    section = docs.split(f"## `kgcurate {stage.name}`\n", 1)
    assert len(section) == 2, f"docs/stages.md has no section for {stage.name}"
    assert registry.doc_line(stage) in section[1].split("\n## ", 1)[0], stage.name
    for table in (*stage.reads, *stage.writes):
        assert table in tables.SCHEMAS, (stage.name, table)


@pytest.mark.parametrize("stage", registry.STAGES, ids=lambda s: s.name)
def test_a_stage_touches_only_the_tables_it_declares(stage: Stage) -> None:
    names = {c: getattr(tables, c) for c in dir(tables) if c.isupper() and isinstance(getattr(tables, c), str)}
    source = (REPO / "libs" / "kgcurate" / "stages" / f"{stage.module}.py").read_text()
    used = {names[c] for c in re.findall(r"\btables\.([A-Z_]+)\b", source) if c in names}
    assert used <= set(stage.reads) | set(stage.writes), (stage.name, sorted(used - set(stage.reads + stage.writes)))


def test_deploy_definitions_are_rendered_from_the_registry() -> None:
    assert (REPO / "deploy" / "stages.json").read_text() == registry.deploy_json(), \
        "deploy/stages.json is stale: run `make render`"
    import sys

    sys.path.insert(0, str(REPO / "deploy"))
    try:
        pipeline = importlib.import_module("pipeline")
    finally:
        sys.path.pop(0)
    assert [s for s, _, _ in pipeline.STAGES] == [s.name for s in registry.deployed()]
    for stage in registry.deployed():
        assert pipeline.RESOURCES[stage.name]["executors"] == stage.deploy.executors
        assert (REPO / "deploy" / "k8s" / f"{stage.name}.yaml").is_file()


def _example_code() -> list[str]:
    """The code blocks of docs/architecture.md's "Adding a stage" example: its options, its registry line."""
    text = (REPO / "docs" / "architecture.md").read_text().split("## Adding a stage", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", text, re.S)


def _example_stage() -> Stage:
    return eval(_example_code()[-1], {"Stage": Stage, "T": tables})  # noqa: S307 - our own doc


def test_the_add_a_stage_example_options_become_its_flags_and_yaml_keys(monkeypatch) -> None:
    namespace = {"dataclass": dataclass, "option": settings.option}
    exec(_example_code()[0], namespace)  # noqa: S102 - our own doc
    monkeypatch.setitem(settings.SECTIONS, "sizes", namespace["SizesOptions"])
    example = _example_stage()
    monkeypatch.setattr(registry, "STAGES", (*registry.STAGES, example))
    monkeypatch.setattr(registry, "BY_NAME", {s.name: s for s in registry.STAGES})
    monkeypatch.setitem(sys.modules, "kgcurate.stages.sizes", types.ModuleType("kgcurate.stages.sizes"))
    args = cli.build_parser("sizes").parse_args(["sizes", "--top", "5"])
    cfg = settings.defaults()
    assert cfg["sizes"] == {"top": 20}
    settings.apply_flags(args, cfg, example.flag_keys)
    assert cfg["sizes"]["top"] == 5
    config.validate({"sizes": {"top": 3}}, "x.yaml", settings.defaults())
    with pytest.raises(UserError, match=r"'sizes.tpo' \(did you mean 'sizes.top'\?\)"):
        config.validate({"sizes": {"tpo": 3}}, "x.yaml", settings.defaults())
    with pytest.raises(UserError, match=r"'sizes.top' must be an integer"):
        config.validate({"sizes": {"top": "many"}}, "x.yaml", settings.defaults())


def test_the_add_a_stage_example_works_as_the_doc_says(monkeypatch, capsys) -> None:
    example = _example_stage()
    stages = (*registry.STAGES, example)
    monkeypatch.setattr(registry, "STAGES", stages)
    monkeypatch.setattr(registry, "BY_NAME", {s.name: s for s in stages})
    order = [s.name for s in registry.pipeline_order()]
    assert order.index("sizes") > order.index("balance")  # "after balance (it reads what balance writes)"
    parser = cli.build_parser(None)
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    assert "sizes" in capsys.readouterr().out and "curated pairs per image host" in example.help
    # and the contract test would fail until the module exists
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"kgcurate.stages.{example.module}")
