"""Entity sets: spec loading (pure), closure on generated graphs against a plain BFS reference,
and the organisms set on the real Wikidata excerpt linked up to animal (Q729)."""

from __future__ import annotations

import heapq
import random

import pytest

from kgcurate import tables
from kgcurate.entity_sets import (
    EntitySetSpec,
    compute,
    load_spec,
    parse_path,
    spec_from_dict,
    write_entity_set,
)
from kgcurate.errors import UserError
from kgcurate.wikidata.json_entity import parse_lines

REPO_SPECS = "conf/entity_sets"
COLUMN = {"P31": "instance_of", "P279": "subclass_of", "P171": "parent_taxon"}


def entity(qid, p31=(), p279=(), p171=(), has_image=True, sitelinks=10, label=None):
    return {"qid": qid, "label": label or qid, "description": None, "aliases": [], "common_names": [],
            "taxon_name": None, "sitelinks": sitelinks, "instance_of": list(p31), "subclass_of": list(p279),
            "parent_taxon": list(p171), "has_image": has_image, "source_file": "test"}


def frame(spark, rows):
    return spark.createDataFrame([tuple(r[f.name] for f in tables.schema(tables.ENTITIES).fields) for r in rows],
                                 tables.schema(tables.ENTITIES))


# --- a plain single-machine reference of the same semantics ---------------------------------------
def reference(rows, spec: EntitySetSpec) -> dict[str, int]:
    children: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        for prop, col in COLUMN.items():
            for parent in r[col]:
                children.setdefault((prop, parent), set()).add(r["qid"])

    def hop(props, start: dict[str, int]) -> dict[str, int]:
        out: dict[str, int] = {}
        for q, d in start.items():
            for p in props:
                for c in children.get((p, q), ()):
                    out[c] = min(out.get(c, 1 << 30), d + 1)
        return out

    def star(props, start, limit):
        """Shortest routes from several starts of their own depths (unit edges, by depth), to ``limit``."""
        best = dict(start)
        heap = [(d, q) for q, d in start.items()]
        heapq.heapify(heap)
        while heap:
            d, q = heapq.heappop(heap)
            if d > best[q] or d >= limit:
                continue
            for c, cd in hop(props, {q: d}).items():
                if cd < best.get(c, 1 << 30):
                    best[c] = cd
                    heapq.heappush(heap, (cd, c))
        return best

    def path(steps, start, limit=spec.max_depth):
        cur = start
        for st in reversed(steps):
            if st.quant == "+":
                cur = star(st.props, hop(st.props, cur), limit)
            else:
                cur = hop(st.props, cur) if st.quant == "" else star(st.props, cur, limit)
        return cur

    roots = {q: 0 for q in spec.roots}
    members: dict[str, int] = dict(roots) if spec.include_roots else {}
    for steps in spec.paths:
        for q, d in path(steps, roots).items():
            members[q] = min(members.get(q, 1 << 30), d)
    excluded = set(spec.exclusions)
    for steps in spec.exclusion_paths:
        excluded |= set(path(steps, {q: 0 for q in spec.exclusions}, 1 << 30))  # to the fixpoint
    info = {r["qid"]: r for r in rows}
    return {q: d for q, d in members.items() if q not in excluded and q in info and d <= spec.max_depth
            and (spec.include_roots or q not in roots)
            and (info[q]["has_image"] or not spec.require_image)
            and (spec.min_sitelinks == 0 or (info[q]["sitelinks"] or -1) >= spec.min_sitelinks)}


# --- pure ---------------------------------------------------------------------------------------
def test_repo_specs_load():
    org = load_spec(f"{REPO_SPECS}/organisms.yaml")
    assert org.name == "organisms" and org.roots == ("Q729", "Q756")
    assert org.exclusions == ("Q5", "Q24334299", "Q795052", "Q4886")
    assert [str(s) for s in org.rules] == ["P31/(P279|P171)*", "(P279|P171)+"]
    drinks = load_spec(f"{REPO_SPECS}/drinks.yaml")
    assert drinks.min_sitelinks == 5 and drinks.rules == ("P279*",)


def test_paths_and_spec_errors():
    assert [(s.props, s.quant) for s in parse_path("P31/(P279|P171)*")] == [(("P31",), ""), (("P279", "P171"), "*")]
    with pytest.raises(ValueError, match="not in the entities graph"):
        parse_path("P31/P361*")
    with pytest.raises(ValueError, match="bad property path"):
        parse_path("P279**")
    base = {"name": "x", "roots": ["Q1"]}
    assert spec_from_dict(base).rules == ("P279*",)
    for bad, msg in [({**base, "roots": ["dog"]}, "item ids"), ({**base, "name": "a b"}, "'name'"),
                     ({**base, "rules": ["P31/"]}, "bad property path"), ({**base, "root": ["Q1"]}, "unknown key"),
                     ({"name": "x"}, "at least one"), ({**base, "max_depth": 0}, "max_depth"),
                     # YAML values taken as they are: 'false' (quoted) was true, 2.9 was 2, .inf a trace
                     ({**base, "require_image": "false"}, "'require_image' must be true or false"),
                     ({**base, "include_roots": "no"}, "'include_roots' must be true or false"),
                     ({**base, "max_depth": 2.9}, "'max_depth' must be a whole number"),
                     ({**base, "min_sitelinks": float("inf")}, "'min_sitelinks' must be a whole number"),
                     ({**base, 2024: "a note", True: "on:"}, "unknown key")]:
        with pytest.raises(UserError, match=msg):
            spec_from_dict(bad)
    assert spec_from_dict({**base, "max_depth": None, "include_roots": None}).max_depth == 40  # null: default
    with pytest.raises(UserError, match="not found"):
        load_spec("conf/entity_sets/nope.yaml")
    with pytest.raises(UserError, match="read from a local file, not a URI"):
        load_spec("s3a://bucket/sets/organisms.yaml")


def test_a_spec_that_is_not_utf8_is_one_line(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes("name: caf\xe9\nroots: [Q1]\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        load_spec(str(p))


# --- Spark --------------------------------------------------------------------------------------
def generated_graph(seed: int = 7) -> list[dict]:
    rows = [entity("Q1"), entity("Q2")]  # roots
    # deep subclass chain Q100 <- Q101 <- ... <- Q119 under Q1 (longer than max_depth 12)
    rows += [entity(f"Q{100 + i}", p279=[f"Q{99 + i}" if i else "Q1"]) for i in range(20)]
    rows += [
        entity("Q200", p279=["Q201", "Q1"]), entity("Q201", p279=["Q200"]),  # a cycle hanging off the root
        entity("Q210", p279=["Q211", "Q212"]), entity("Q211", p279=["Q1"]), entity("Q212", p279=["Q100"]),  # diamond
        entity("Q220", p31=["Q210"]), entity("Q221", p31=["Q1"]),  # instances
        entity("Q230", p171=["Q2"]), entity("Q231", p171=["Q230"]), entity("Q232", p171=["Q231", "Q233"]),
        entity("Q233", p171=["Q232"]),  # taxon chain with a cycle at the bottom
        entity("Q240", p31=["Q230"]),  # instance of a taxon: P31/P279* does not reach it
        entity("Q250", p279=["Q9"]), entity("Q9"),  # unrelated
        entity("Q260", p279=["Q1"]), entity("Q261", p31=["Q260"]), entity("Q262", p279=["Q260"]),  # excluded
        entity("Q270", p279=["Q1"], has_image=False), entity("Q271", p279=["Q1"], sitelinks=1),
    ]
    rng = random.Random(seed)
    ids = [f"Q{1000 + i}" for i in range(300)]
    for i, q in enumerate(ids):  # random graph with back edges (cycles) and shared parents
        parents = rng.sample(ids[:i] + ["Q1", "Q2", "Q9"], k=min(len(ids[:i]) + 3, rng.randint(0, 3)))
        if rng.random() < 0.05:
            parents.append(rng.choice(ids))  # may point forward: a cycle
        props = {"P31": [], "P279": [], "P171": []}
        for p in parents:
            props[rng.choice(["P31", "P279", "P279", "P171"])].append(p)
        rows.append(entity(q, p31=props["P31"], p279=props["P279"], p171=props["P171"]))
    return rows


def test_closure_matches_reference_on_generated_graph(spark):
    rows = generated_graph()
    spec = spec_from_dict({"name": "gen", "roots": ["Q1", "Q2"], "rules": ["P31/P279*", "P279+", "P171+"],
                           "exclusions": ["Q260"], "max_depth": 12})
    got = {r["qid"]: r["depth"] for r in compute(spark, frame(spark, rows), spec).collect()}
    want = reference(rows, spec)
    assert got == want
    # spot checks of the hand-made part, independent of the reference
    assert got["Q111"] == 12 and "Q112" not in got  # depth limit
    assert got["Q200"] == 1 and got["Q201"] == 2  # cycle: each once
    assert got["Q210"] == 2 and got["Q220"] == 3 and got["Q221"] == 1  # diamond, instances
    assert got["Q232"] == 3 and got["Q233"] == 4 and "Q240" not in got
    assert not {"Q250", "Q9", "Q260", "Q261", "Q262"} & set(got)
    assert got["Q270"] == 1 and got["Q1"] == 0
    assert len([q for q in got if len(q) == 5]) >= 10  # the random part (Q1000..Q1299) contributes


def test_depth_is_the_shortest_route_from_starts_at_several_depths(spark):
    """``P279*/P31/P279*``: the last closure starts from instances at depths 1 and 4. QX is 5 hops away
    through the deep one and 3 through the shallow one: 3, and still a member at max_depth 4."""
    rows = [entity("Q1"), entity("QA", p279=["Q1"]), entity("QB", p279=["QA"]), entity("QC", p279=["QB"]),
            entity("QI1", p31=["QC"]), entity("QI2", p31=["Q1"]), entity("QY", p279=["QI2"]),
            entity("QX", p279=["QI1", "QY"])]
    for depth in (40, 4):
        spec = spec_from_dict({"name": "mixed", "roots": ["Q1"], "rules": ["P279*/P31/P279*"], "max_depth": depth})
        got = {r["qid"]: r["depth"] for r in compute(spark, frame(spark, rows), spec).collect()}
        assert got["QX"] == 3 and got == reference(rows, spec), depth
    # an exclusion reaches further than max_depth: Q94 is 4 subclass hops below the excluded Q90
    chain = [entity("Q90"), *(entity(f"Q9{i}", p279=[f"Q9{i - 1}"]) for i in range(1, 4)),
             entity("Q94", p279=["Q93", "Q1"])]
    spec = spec_from_dict({"name": "ex", "roots": ["Q1"], "rules": ["P279*"], "exclusions": ["Q90"], "max_depth": 3})
    got = {r["qid"]: r["depth"] for r in compute(spark, frame(spark, rows + chain), spec).collect()}
    assert "Q94" not in got and got == reference(rows + chain, spec) and got["QA"] == 1
    # include_roots: false leaves the roots out, also when a `*` rule reaches them by zero hops
    spec = spec_from_dict({"name": "below", "roots": ["Q1"], "rules": ["P279*"], "include_roots": False})
    assert {r["qid"]: r["depth"] for r in compute(spark, frame(spark, rows), spec).collect()} == {
        "QA": 1, "QB": 2, "QC": 3}
    graph = generated_graph()
    spec = spec_from_dict({"name": "gen2", "roots": ["Q1", "Q2"], "rules": ["(P279|P171)*/P31/P279*"], "max_depth": 9})
    got = {r["qid"]: r["depth"] for r in compute(spark, frame(spark, graph), spec).collect()}
    assert got == reference(graph, spec) and len(got) > 20


def test_a_root_on_a_cycle_stays_out_and_a_missing_root_is_named(spark, caplog):
    """include_roots: false used to test depth > 0, so a root reached again through a cycle (Q100 -> Q101 ->
    Q100 by P171) was a member at depth 2; a root not in entities (a typo: Q7290 for Q729) gave an empty set
    and exit 0 with no word."""
    rows = [entity("Q100", p171=["Q101"]), entity("Q101", p171=["Q100"]), entity("Q102", p171=["Q101"])]
    spec = spec_from_dict({"name": "cycle", "roots": ["Q100"], "rules": ["P171+"], "include_roots": False})
    got = {r["qid"]: r["depth"] for r in compute(spark, frame(spark, rows), spec).collect()}
    assert got == reference(rows, spec) == {"Q101": 1, "Q102": 2}
    assert "not in entities" not in caplog.text
    with caplog.at_level("WARNING", logger="kgcurate"):
        typo = spec_from_dict({"name": "typo", "roots": ["Q7290"], "rules": ["P171*"]})
        assert compute(spark, frame(spark, rows), typo).count() == 0
        half = spec_from_dict({"name": "half", "roots": ["Q101", "Q9999"], "rules": ["P171*"]})
        assert {r["qid"] for r in compute(spark, frame(spark, rows), half).collect()} == {"Q100", "Q101", "Q102"}
    assert "entity-set typo: root Q7290 not in entities" in caplog.text and "no root of the set is there" in caplog.text
    assert "entity-set half: root Q9999 not in entities" in caplog.text


def test_filters_image_and_sitelinks(spark, caplog):
    # Q272: no sitelinks count (a truthy N-Triples dump has none): left out by min_sitelinks, with a warning
    rows = [*generated_graph()[:60], entity("Q272", p279=["Q1"], sitelinks=None)]
    spec = spec_from_dict({"name": "strict", "roots": ["Q1"], "rules": ["P279+"], "require_image": True,
                           "min_sitelinks": 5, "include_roots": False, "max_depth": 3})
    with caplog.at_level("WARNING", logger="kgcurate"):
        got = {r["qid"]: r["depth"] for r in compute(spark, frame(spark, rows), spec).collect()}
    assert got == reference(rows, spec)
    assert "Q270" not in got and "Q271" not in got and "Q272" not in got and "Q1" not in got and got["Q100"] == 1
    assert "1 members have no sitelinks count" in caplog.text


def test_organisms_on_real_excerpt(spark, lake, shared_data):
    lines = (shared_data / "wikidata" / "latest-all-2017-head50.json").read_bytes().split(b"\n")
    real = [{**r, "source_file": "head50"} for r in parse_lines(lines, ["en"]).rows]
    dog = next(r for r in real if r["qid"] == "Q144")
    cetacea = next(r for r in real if r["qid"] == "Q160")
    assert "Q622852" in dog["subclass_of"] and "Q25833" in cetacea["parent_taxon"]
    # The excerpt's ancestors are not in it: link what its rows point to up to animal.
    ancestors = [
        entity("Q729", label="animal"), entity("Q756", label="plant"),
        entity("Q622852", p279=["Q729"], label="domesticated animal"),  # dog P279 this
        entity("Q25833", p171=["Q7377"], label="Cetartiodactyla"),  # Cetacea P171 this
        entity("Q7377", p171=["Q729"], label="mammal"),  # taxa are linked by P171 alone
        entity("Q5", p279=["Q7377"], label="human"),  # George Washington (Q23) is an instance
        # a common-name item: a subclass of a taxon, reached only by a chain mixing P279 and P171
        entity("Q1865281", p279=["Q160"], label="whale"),
        entity("Q9001", p31=["Q1865281"], label="a whale someone named"),
    ]
    from kgcurate import lake as lk

    lk.overwrite(spark, lake, tables.ENTITIES, frame(spark, real + ancestors))
    spec = load_spec(f"{REPO_SPECS}/organisms.yaml")
    n = write_entity_set(spark, lake, spec)
    got = {r["qid"]: r["depth"] for r in lk.read(spark, lake, tables.ENTITY_SETS).collect()}
    assert n == len(got)
    assert got["Q144"] == 2 and got["Q160"] == 3
    assert got["Q1865281"] == 4 and got["Q9001"] == 5  # whale P279 Cetacea P171 ... animal; its instance
    assert "Q31" not in got and "Q23" not in got and "Q5" not in got and "Q42" not in got
    assert set(got) == {"Q729", "Q756", "Q622852", "Q25833", "Q7377", "Q144", "Q160", "Q1865281", "Q9001"}
    # re-running replaces the set's rows, never duplicates them
    assert write_entity_set(spark, lake, spec) == n
