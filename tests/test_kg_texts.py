"""pair_texts: KG texts for each curated pair, on the Wikidata fixture and the real excerpt."""

from __future__ import annotations

import copy
import inspect

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from helpers import execute
from kgcurate import config, ids, kg_texts, lake, tables
from kgcurate.kg_texts import KG_ALIAS, KG_COMMON_NAME, KG_DESCRIPTION, KG_LABEL, KG_TAXON
from kgcurate.matching import reference_match
from kgcurate.stages import build_metadata
from kgcurate.wikidata.json_entity import parse_lines

ORGANISMS = ["Q729", "Q756", "Q7377", "Q144", "Q146", "Q228283", "Q18099", "Q149892", "Q89", "Q12004"]
# (caption, text_source): an organism by its name, one by its common name (mul label), one whose
# caption *is* its label, one matching only WordNet entries.
CAPTIONS = [("an oak tree in autumn", "alt"), ("a grey wolf in the snow", "alt"), ("dog", "title"),
            ("really hot weather", "alt")]


# --- pure rules --------------------------------------------------------------------------------------

def test_language_rule():
    assert kg_texts.text_language(KG_LABEL, ["en"]) == "en"
    assert kg_texts.text_language(KG_ALIAS, ["en", "mul"]) == "en"  # mul is the fallback, not a choice
    assert kg_texts.text_language(KG_TAXON, ["en"]) == "mul"
    for source in (KG_LABEL, KG_DESCRIPTION, KG_ALIAS, KG_COMMON_NAME):  # which of several: not kept
        assert kg_texts.text_language(source, ["de", "en"]) is None
    assert kg_texts.text_language(KG_TAXON, ["de", "en"]) == "mul"
    assert kg_texts.text_language("alt", ["en"]) is None


def test_pure_dedup_order_and_own_text():
    a = {"qid": "Q2", "label": "Wolf", "description": "  species\tof mammal ", "aliases": ["wolf", " "],
         "common_names": ["grey wolf", "WOLF"], "taxon_name": "Canis lupus"}
    b = {"qid": "Q1", "label": "Canis lupus", "description": "species of mammal", "aliases": ["grey wolf"],
         "common_names": [], "taxon_name": None}
    got = kg_texts.pair_texts("a grey wolf", "alt", [a, b], ["en"])
    assert got == [("a grey wolf", "alt", None, None)] + sorted([
        ("Canis lupus", KG_LABEL, "Q1", "en"),  # Q1's label beats Q2's taxon name
        ("Wolf", KG_LABEL, "Q2", "en"),  # label beats common name WOLF and alias wolf (case-folded)
        ("grey wolf", KG_COMMON_NAME, "Q2", "en"),  # common name beats Q1's alias
        ("species of mammal", KG_DESCRIPTION, "Q1", "en"),  # whitespace-normalized; smaller qid
    ])
    # a KG text equal to the pair's own text (any case) is not repeated as a KG text
    assert ("Wolf", KG_LABEL, "Q2", "en") not in kg_texts.pair_texts("wolf", "alt", [a], ["en"])


# --- Spark -------------------------------------------------------------------------------------------

def _entities(spark, rows: list[dict]) -> DataFrame:
    schema = tables.schema(tables.ENTITIES)
    return spark.createDataFrame([tuple(r.get(f.name) for f in schema.fields) for r in rows], schema)


def _kg_lake(spark, root: str, entity_rows: list[dict], members: list[str], wordnet_dir: str | None) -> None:
    """entities from the real parser's rows, an entity set, and metadata from the real build-metadata stage."""
    lake.overwrite(spark, root, tables.ENTITIES, _entities(spark, entity_rows))
    sets = spark.createDataFrame([("organisms", q, 1) for q in members], tables.schema(tables.ENTITY_SETS))
    lake.overwrite(spark, root, tables.ENTITY_SETS, sets)
    cfg = copy.deepcopy(config.DEFAULTS)
    cfg["lake"] = root
    cfg["metadata"].update(entity_sets=["organisms"], wordnet=wordnet_dir is not None, wordnet_dir=wordnet_dir)
    execute(build_metadata, spark, cfg)


def _curated(spark, root: str, captions: list[tuple[str, str]], copies: int = 1, run_id: str = "run-1",
             site: str = "img", write_pairs: bool = True) -> tuple[DataFrame, dict[int, str]]:
    """Curated rows as balance writes them (entry_ids = the caption's matches) and {pair_id: text}.
    With ``write_pairs`` their ``pairs`` rows are appended, else the frame carries text_source itself."""
    meta = [(r["entry_id"], r["entry"]) for r in lake.read(spark, root, tables.METADATA).collect()]
    rows = [(f"http://{site}.example/{i}/{k}.jpg", text, source, sorted(reference_match(text, meta)))
            for i, (text, source) in enumerate(captions) for k in range(copies)]
    df = (spark.createDataFrame(rows, "image_url string, text string, text_source string, entry_ids array<long>")
          .withColumn("pair_id", ids.pair_id()).withColumn("run_id", F.lit(run_id)))
    if write_pairs:
        lake.append(spark, root, tables.PAIRS, df.select(
            "pair_id", "image_url", "text", "text_source",
            *[F.lit(None).cast("string").alias(c) for c in ("page_url", "crawl", "source_file", "run_id")]))
        df = df.drop("text_source")
    return df, {r["pair_id"]: r["text"] for r in df.select("pair_id", "text").collect()}


def _table(spark, root: str, texts: dict[int, str]) -> dict[str, set[tuple]]:
    """pair_texts of the given pairs, by the pair's text: {text: {(text, text_source, qid, language)}}."""
    out: dict[str, set[tuple]] = {}
    for r in lake.read(spark, root, tables.PAIR_TEXTS).where(F.col("pair_id").isin(list(texts))).collect():
        out.setdefault(texts[r["pair_id"]], set()).add((r["text"], r["text_source"], r["qid"], r["language"]))
    return out


def _reference(spark, root: str, captions: list[tuple[str, str]], languages: list[str]) -> dict[str, set[tuple]]:
    meta = lake.read(spark, root, tables.METADATA).collect()
    qids_of: dict[int, set[str]] = {}
    for r in kg_texts.entry_qids(lake.read(spark, root, tables.METADATA)).collect():
        qids_of.setdefault(r["entry_id"], set()).add(r["qid"])
    ents = {r["qid"]: r.asDict() for r in lake.read(spark, root, tables.ENTITIES).collect()}
    entries = [(r["entry_id"], r["entry"]) for r in meta]
    out = {}
    for text, source in captions:
        qids = {q for e in reference_match(text, entries) for q in qids_of.get(e, ())}
        out[text] = set(kg_texts.pair_texts(text, source, [ents[q] for q in sorted(qids) if q in ents], languages))
    return out


@pytest.fixture(scope="module")
def fixture_lake(spark, tmp_path_factory, fixtures):
    root = str(tmp_path_factory.mktemp("kgtexts") / "lake")
    lines = (fixtures / "wikidata" / "sample.json").read_bytes().split(b"\n")
    rows = [{**r, "source_file": "sample.json"} for r in parse_lines(lines, ["en"]).rows]
    _kg_lake(spark, root, rows, ORGANISMS, str(fixtures / "wordnet"))
    return root


@pytest.mark.spark
def test_entry_qids_on_both_metadata_layouts(spark):
    old = spark.createDataFrame(
        [(1, "dog", "wordnet", None), (2, "dog", "kg", "Q144"), (3, "wolf", "kg", "Q18099"),
         (4, "Canis lupus", "kg", "Q18099"), (4, "Canis lupus", "kg", "Q18099")],
        "entry_id long, entry string, source string, qid string")
    new = spark.createDataFrame(
        [(10, "dog", ["kg", "wordnet"], ["Q144"]), (11, "hot", ["wordnet"], []), (12, "wolf", ["kg"], ["Q1", "Q2"]),
         (13, "odd", ["metaclip"], None)],
        "entry_id long, entry string, sources array<string>, qids array<string>")
    assert sorted(map(tuple, kg_texts.entry_qids(old).collect())) == [(2, "Q144"), (3, "Q18099"), (4, "Q18099")]
    assert sorted(map(tuple, kg_texts.entry_qids(new).collect())) == [(10, "Q144"), (12, "Q1"), (12, "Q2")]


@pytest.mark.spark
def test_fixture_organisms_get_their_kg_texts(spark, fixture_lake, monkeypatch):
    """Every caption's rows, on metadata built by the real stage; a pair matching only WordNet gets
    only its own row; nothing input-sized is collected (every collect of the run returns at most one
    row while the run handles 40 pairs)."""
    root = fixture_lake
    curated, texts = _curated(spark, root, CAPTIONS, copies=10)
    fetched: list[int] = []
    cls = type(curated)  # the classic DataFrame class, whose methods the driver actually calls
    real_collect = cls.collect

    def counting_collect(self):
        rows = real_collect(self)
        fetched.append(len(rows))
        return rows

    monkeypatch.setattr(cls, "collect", counting_collect)
    for name in ("toPandas", "toLocalIterator", "toArrow"):
        monkeypatch.setattr(cls, name, lambda *a, **k: pytest.fail("input-sized fetch to the driver"))
    summary = kg_texts.write_pair_texts(spark, root, curated, None, None, ["en"])
    monkeypatch.undo()
    assert fetched and max(fetched) <= 1
    assert "collect(" not in inspect.getsource(kg_texts) and ".rdd" not in inspect.getsource(kg_texts)

    got = _table(spark, root, texts)
    assert summary["rows_inserted"] == 10 * sum(len(v) for v in got.values())
    assert got == _reference(spark, root, CAPTIONS, ["en"])
    assert got["an oak tree in autumn"] == {
        ("an oak tree in autumn", "alt", None, None),
        ("oak", KG_LABEL, "Q12004", "en"),  # also its common name: label wins
        ("Quercus", KG_TAXON, "Q12004", "mul"),  # also its alias: taxon wins
        ("genus of trees", KG_DESCRIPTION, "Q12004", "en"),
    }
    assert got["a grey wolf in the snow"] == {
        ("a grey wolf in the snow", "alt", None, None),
        ("Canis lupus", KG_LABEL, "Q18099", "en"),  # the mul label (Wikidata: valid in every language)
        ("grey wolf", KG_COMMON_NAME, "Q18099", "en"), ("wolf", KG_COMMON_NAME, "Q18099", "en"),
        ("C. lupus", KG_ALIAS, "Q18099", "en"), ("species of mammal", KG_DESCRIPTION, "Q18099", "en"),
    }
    assert got["dog"] == {  # the label and common name "dog" are the pair's own text: not repeated
        ("dog", "title", None, None), ("domestic dog", KG_COMMON_NAME, "Q144", "en"),
        ("Canis familiaris", KG_ALIAS, "Q144", "en"), ("domestic animal", KG_DESCRIPTION, "Q144", "en"),
    }
    assert got["really hot weather"] == {("really hot weather", "alt", None, None)}


@pytest.mark.spark
def test_rerun_adds_nothing_and_a_later_run_replaces_only_its_pairs(spark, fixture_lake):
    """Same lake as above, other pairs (other image URLs); curated carries text_source itself."""
    root = fixture_lake
    cat = ("a house cat asleep", "alt")
    first = [cat, CAPTIONS[1], CAPTIONS[2]]
    curated, texts = _curated(spark, root, first, site="rerun", write_pairs=False)
    s1 = kg_texts.write_pair_texts(spark, root, curated, None, None, ["en"])
    before = _table(spark, root, texts)
    assert s1["rows_inserted"] == sum(len(v) for v in before.values())
    s2 = kg_texts.write_pair_texts(spark, root, curated, None, None, ["en"])
    assert (s2["rows_inserted"], s2["rows_deleted"], s2["rows_updated"]) == (0, 0, 0)
    assert s2["version"] == s1["version"]  # no commit: the MERGE rewrote no file of the unchanged rows
    assert _table(spark, root, texts) == before

    # two configured languages: a KG text's language is no longer knowable, updated in place, and back
    english = sum(1 for rows in before.values() for row in rows if row[3] == "en")
    s_two = kg_texts.write_pair_texts(spark, root, curated, None, None, ["en", "de"])
    assert (s_two["rows_inserted"], s_two["rows_deleted"], s_two["rows_updated"]) == (0, 0, english) and english
    assert _table(spark, root, texts) == {
        text: {(*row[:3], None if row[3] == "en" else row[3]) for row in rows} for text, rows in before.items()}
    s_en = kg_texts.write_pair_texts(spark, root, curated, None, None, ["en"])
    assert (s_en["rows_inserted"], s_en["rows_deleted"], s_en["rows_updated"]) == (0, 0, english)
    assert _table(spark, root, texts) == before

    # a newer dump changes the cat's description; the next run curates the cat pair and a new one
    old = ("domesticated feline", KG_DESCRIPTION, "Q146", "en")
    assert old in before[cat[0]]
    row = lake.read(spark, root, tables.ENTITIES).where(F.col("qid") == "Q146")
    lake.merge(spark, root, tables.ENTITIES, row.withColumn("description", F.lit("small domesticated feline")),
               "t.qid = s.qid", matched_update_when="true")
    curated2, texts2 = _curated(spark, root, [cat, CAPTIONS[0]], run_id="run-2", site="rerun", write_pairs=False)
    s3 = kg_texts.write_pair_texts(spark, root, curated2, None, None, ["en"])
    after = _table(spark, root, {**texts, **texts2})
    assert (s3["rows_deleted"], s3["rows_updated"]) == (1, 0)
    assert after[cat[0]] == before[cat[0]] - {old} | {("small domesticated feline", KG_DESCRIPTION, "Q146", "en")}
    assert ("Quercus", KG_TAXON, "Q12004", "mul") in after[CAPTIONS[0][0]]
    for text, _ in first[1:]:  # pairs of the earlier run keep their texts
        assert after[text] == before[text]


@pytest.mark.spark
def test_new_metadata_layout_gives_the_same_texts(spark, fixture_lake):
    """build_pair_texts on both metadata layouts (whichever the stage wrote, the other derived from it):
    one row per (entry, source, qid) with a qid column, one row per string with a qids array."""
    meta = lake.read(spark, fixture_lake, tables.METADATA)
    if "qids" in meta.columns:
        meta, relaid = meta.select("entry_id", "entry", F.explode_outer("qids").alias("qid")), meta
    else:
        relaid = meta.groupBy("entry").agg(
            F.xxhash64("entry").alias("entry_id"), F.array_sort(F.collect_set("qid")).alias("qids"))
    own = spark.createDataFrame([(1, "a grey wolf in the snow", "alt")],
                                "pair_id long, text string, text_source string")
    ents = lake.read(spark, fixture_lake, tables.ENTITIES)

    def texts(m):
        wolf = m.where(F.col("entry").isin("grey wolf", "wolf")).agg(F.collect_set("entry_id").alias("entry_ids"))
        return {tuple(r) for r in kg_texts.build_pair_texts(own.crossJoin(wolf), m, ents, ["en"]).collect()}

    assert texts(relaid) == texts(meta)
    assert (1, "Canis lupus", KG_LABEL, "Q18099", "en") in texts(relaid)


@pytest.mark.spark
def test_real_excerpt_organisms(spark, tmp_path, shared_data):
    """The 2017 excerpt's dog (Q144) and whales (Cetacea, Q160): label, taxon name (Cetacea's equals
    its label, so it is one kg_label row) and description in the configured language."""
    path = shared_data / "wikidata" / "latest-all-2017-head50.json"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    root = str(tmp_path / "lake")
    rows = [{**r, "source_file": path.name} for r in parse_lines(path.read_bytes().split(b"\n"), ["en"]).rows]
    _kg_lake(spark, root, rows, ["Q144", "Q160"], None)
    captions = [("a dog on the beach", "alt"), ("Cetaceans in the bay", "alt")]
    curated, texts = _curated(spark, root, captions)
    kg_texts.write_pair_texts(spark, root, curated, None, None, ["en"])
    got = _table(spark, root, texts)
    assert got == _reference(spark, root, captions, ["en"])
    cetacea = next(r for r in rows if r["qid"] == "Q160")
    assert cetacea["taxon_name"] == cetacea["label"] == "Cetacea"
    assert got["Cetaceans in the bay"] == {
        ("Cetaceans in the bay", "alt", None, None), ("Cetacea", KG_LABEL, "Q160", "en"),
        ("Cetaceans", KG_COMMON_NAME, "Q160", "en"), ("order of mammals", KG_DESCRIPTION, "Q160", "en")}
    # dog's common name "Dog" is its label up to case: one row
    assert got["a dog on the beach"] == {
        ("a dog on the beach", "alt", None, None), ("dog", KG_LABEL, "Q144", "en"),
        ("domestic animal", KG_DESCRIPTION, "Q144", "en")}


@pytest.mark.spark
def test_balance_writes_pair_texts_with_its_run(spark, fixture_lake, tmp_path):
    """The balance stage writes its run's pair_texts before the run row, and records the version."""
    import shutil

    from kgcurate.stages import balance, match

    root = str(tmp_path / "lake")
    shutil.copytree(fixture_lake, root)
    if lake.exists(spark, root, tables.PAIR_TEXTS):
        shutil.rmtree(lake.table_path(root, tables.PAIR_TEXTS))
    rows = [(f"http://img.example/b{i}.jpg", text, src) for i, (text, src) in enumerate(CAPTIONS)]
    pairs = (spark.createDataFrame(rows, "image_url string, text string, text_source string")
             .withColumn("pair_id", ids.pair_id()))
    lake.overwrite(spark, root, tables.PAIRS, pairs.select(
        "pair_id", "image_url", "text", "text_source",
        *[F.lit(None).cast("string").alias(c) for c in ("page_url", "crawl", "source_file", "run_id")]))
    cfg = config.load(None)
    cfg["lake"] = root
    execute(match, spark, cfg)
    cfg["balance"]["t"] = 1e9  # keep every matched pair
    s = execute(balance, spark, cfg)
    assert s.input_versions[tables.PAIR_TEXTS] == lake.version(spark, root, tables.PAIR_TEXTS)
    texts = lake.read(spark, root, tables.PAIR_TEXTS)
    oak = [r for r in texts.collect() if r["text_source"] == KG_TAXON]
    assert ("Quercus", "Q12004") in {(r["text"], r["qid"]) for r in oak}
    curated = {r[0] for r in balance.latest_curated(spark, root).select("pair_id").collect()}
    assert {r[0] for r in texts.select("pair_id").distinct().collect()} == curated

    # the same run again is found done; with other label languages its texts are written again
    written = {n: lake.version(spark, root, n) for n in (tables.CURATED, tables.CURATION_RUNS, tables.PAIR_TEXTS)}
    again = execute(balance, spark, cfg)
    assert again.done_by == s.run_id and (again.pairs_out, again.input_versions) == (s.pairs_out, s.input_versions)
    assert {n: lake.version(spark, root, n) for n in written} == written
    cfg["wikidata"]["languages"] = ["de", "en"]
    other = execute(balance, spark, cfg)
    assert other.done_by is None and other.run_id == s.run_id and other.pairs_out == s.pairs_out
    assert lake.version(spark, root, tables.CURATED) > written[tables.CURATED]  # selected and written again
    assert execute(balance, spark, cfg).done_by == s.run_id  # the row took that write's versions

    # a run failing before its run row leaves pair_texts as it was, not only curated (the MERGE had already
    # rewritten the languages of the visible run's texts, and that run was no longer found done)
    def kept():
        return sorted((r["pair_id"], r["text"], r["language"] or "") for r in lake.read(spark, root, tables.PAIR_TEXTS)
                      .collect())
    before, real_merge = kept(), lake.merge

    def fail_on_run_row(sp, r, name, *args, **kwargs):
        if name == tables.CURATION_RUNS:
            raise RuntimeError("disk full while writing curation_runs")
        return real_merge(sp, r, name, *args, **kwargs)

    lake.merge = fail_on_run_row
    try:
        cfg["wikidata"]["languages"] = ["en"]
        with pytest.raises(RuntimeError, match="disk full"):
            execute(balance, spark, {**cfg, "balance": {**cfg["balance"], "full": True}})
    finally:
        lake.merge = real_merge
    assert kept() == before
    cfg["wikidata"]["languages"] = ["de", "en"]
    assert execute(balance, spark, cfg).done_by == s.run_id


def test_the_label_languages_are_the_ones_entities_were_ingested_with(spark, fixture_lake, tmp_path):
    """`ingest-wikidata --languages de` then a plain `balance` (config default en) recorded German labels as
    `en` in pair_texts: balance now reads the languages the ingest noted on its entities commit."""
    import shutil

    from kgcurate.stages import balance, ingest_wikidata, match

    note = ingest_wikidata.commit_note("ingest-wikidata-x", ingest_wikidata.inputs_record([], ("de", "mul")))
    assert ingest_wikidata.noted_languages(note) == ["de"]
    assert ingest_wikidata.noted_languages(None) is None and ingest_wikidata.noted_languages('{"other": 1}') is None
    root = str(tmp_path / "lake")
    shutil.copytree(fixture_lake, root)
    if lake.exists(spark, root, tables.PAIR_TEXTS):
        shutil.rmtree(lake.table_path(root, tables.PAIR_TEXTS))
    cfg = config.load(None)
    cfg["lake"] = root
    assert balance.label_languages(spark, root, cfg) == ["en"]  # no ingest note: the config's
    same = lake.read(spark, root, tables.ENTITIES).collect()
    with lake.commit_note(spark, note):  # what the ingest's MERGE leaves (here its rows written again as they are)
        lake.overwrite(spark, root, tables.ENTITIES, spark.createDataFrame(same, tables.schema(tables.ENTITIES)))
    assert balance.label_languages(spark, root, cfg) == ["de"]
    rows = [("http://img.example/wolf.jpg", "a grey wolf in the snow", "alt")]
    pairs = (spark.createDataFrame(rows, "image_url string, text string, text_source string")
             .withColumn("pair_id", ids.pair_id()))
    lake.overwrite(spark, root, tables.PAIRS, pairs.select(
        "pair_id", "image_url", "text", "text_source",
        *[F.lit(None).cast("string").alias(c) for c in ("page_url", "crawl", "source_file", "run_id")]))
    execute(match, spark, cfg)
    cfg["balance"]["t"] = 1e9
    execute(balance, spark, cfg)
    labels = {(r["text"], r["language"]) for r in lake.read(spark, root, tables.PAIR_TEXTS).collect()
              if r["text_source"] == KG_LABEL}
    assert labels and {language for _, language in labels} == {"de"}

