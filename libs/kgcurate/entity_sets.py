"""Entity sets (EntityNet-style): which Wikidata entities belong to a named set, by graph rules.

A set is declared in YAML (``conf/entity_sets/*.yaml``)::

    name: organisms
    roots: [Q729, Q756]                   # animal, plant
    rules: ["P31/P279*", "P279+", "P171+"]  # property paths from a member up to a root (a union)
    include_roots: true
    exclusions: [Q5, Q24334299, Q795052, Q4886]
    exclusion_rules: ["P31/P279*", "P279*"]  # a member reaching an exclusion this way is dropped
    require_image: false
    min_sitelinks: 0
    max_depth: 40                           # at most this many hops from a root (and per * or + step)

Rules use SPARQL property-path syntax over the three graph columns of ``entities``
(P31 instance_of, P279 subclass_of, P171 parent_taxon): steps joined by ``/``, each a property or
an alternative ``(P279|P171)``, optionally followed by ``*`` (zero or more) or ``+`` (one or more).
``x P31/P279* root`` means x is an instance of root or of one of its subclasses.

Evaluation runs in Spark as iterative joins from the roots downwards (the path read right to
left), to a fixpoint: each hop joins the frontier with the edge table and removes what was
already reached, so cycles end and every entity is expanded once per step. Only per-iteration
counts reach the driver. ``depth`` is the number of hops from the nearest root (the BFS level).
Spec loading and path parsing are pure; :func:`compute` and :func:`write_entity_set` need Spark.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kgcurate.errors import UserError

log = logging.getLogger("kgcurate.entity_sets")

GRAPH_COLUMNS = {"P31": "instance_of", "P279": "subclass_of", "P171": "parent_taxon"}
_STEP = re.compile(r"(?:(P\d+)|\((P\d+(?:\|P\d+)*)\))([*+]?)")
_QID = re.compile(r"Q\d+")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Step:
    props: tuple[str, ...]
    quant: str  # "" one hop, "*" zero or more, "+" one or more


def parse_path(text: str) -> tuple[Step, ...]:
    """``"P31/P279*"`` -> steps; ValueError for anything outside the supported grammar."""
    steps = []
    for part in str(text).replace(" ", "").split("/"):
        m = _STEP.fullmatch(part)
        if not m:
            raise ValueError(f"bad property path step {part!r} in {text!r} (use e.g. P31/P279*, P171+, (P279|P171)*)")
        props = (m.group(1),) if m.group(1) else tuple(m.group(2).split("|"))
        unknown = [p for p in props if p not in GRAPH_COLUMNS]
        if unknown:
            raise ValueError(f"property {unknown[0]} in path {text!r} is not in the entities graph "
                             f"(only {', '.join(GRAPH_COLUMNS)})")
        steps.append(Step(props, m.group(3)))
    return tuple(steps)


@dataclass(frozen=True)
class EntitySetSpec:
    name: str
    roots: tuple[str, ...]
    rules: tuple[str, ...] = ("P279*",)
    exclusions: tuple[str, ...] = ()
    exclusion_rules: tuple[str, ...] = ("P31/P279*", "P279*")
    include_roots: bool = True
    require_image: bool = False
    min_sitelinks: int = 0
    max_depth: int = 40
    description: str = ""
    source: str | None = field(default=None, compare=False)

    @property
    def paths(self) -> tuple[tuple[Step, ...], ...]:
        return tuple(parse_path(r) for r in self.rules)

    @property
    def exclusion_paths(self) -> tuple[tuple[Step, ...], ...]:
        return tuple(parse_path(r) for r in self.exclusion_rules)


def _qids(value: Any, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and _QID.fullmatch(v.strip()) for v in value):
        raise UserError(f"{where}: '{key}' must be a list of item ids like Q729")
    return tuple(dict.fromkeys(v.strip() for v in value))


def _bool(data: dict, key: str, default: bool, where: str) -> bool:
    """true/false as YAML writes them: ``'false'`` (quoted) was ``bool('false')``, True."""
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise UserError(f"{where}: '{key}' must be true or false, got {value!r}")
    return value


def _int(data: dict, key: str, default: int, where: str) -> int:
    """A whole number (``2.9`` was cut to 2, ``.inf`` raised OverflowError); null keeps the default."""
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{where}: '{key}' must be a whole number, got {value!r}")
    return value


def spec_from_dict(data: Any, where: str = "entity set") -> EntitySetSpec:
    """Validate a decoded YAML mapping into a spec (every error is one clear UserError line)."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: must be a mapping with at least 'name' and 'roots'")
    known = {f for f in EntitySetSpec.__dataclass_fields__ if f != "source"}
    extra = sorted(str(k) for k in set(data) - known)
    if extra:
        raise UserError(f"{where}: unknown key(s) {', '.join(extra)} (known: {', '.join(sorted(known))})")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(f"{where}: 'name' must be letters, digits, '_', '-' or '.' (it keys the entity_sets table)")
    roots = _qids(data.get("roots"), "roots", where)
    if not roots:
        raise UserError(f"{where}: 'roots' must name at least one item id (e.g. [Q729])")
    rules = data.get("rules", ["P279*"])
    exclusion_rules = data.get("exclusion_rules", ["P31/P279*", "P279*"])
    for key, value in (("rules", rules), ("exclusion_rules", exclusion_rules)):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise UserError(f"{where}: '{key}' must be a list of property paths like P31/P279*")
        for rule in value:
            try:
                parse_path(rule)
            except ValueError as exc:
                raise UserError(f"{where}: {exc}") from exc
    min_sitelinks = _int(data, "min_sitelinks", 0, where)
    max_depth = _int(data, "max_depth", 40, where)
    if max_depth < 1:
        raise UserError(f"{where}: max_depth must be at least 1")
    return EntitySetSpec(
        name=name, roots=roots,
        rules=tuple([rules] if isinstance(rules, str) else rules),
        exclusions=_qids(data.get("exclusions"), "exclusions", where),
        exclusion_rules=tuple([exclusion_rules] if isinstance(exclusion_rules, str) else exclusion_rules),
        include_roots=_bool(data, "include_roots", True, where),
        require_image=_bool(data, "require_image", False, where),
        min_sitelinks=min_sitelinks, max_depth=max_depth,
        description=str(data.get("description") or ""),
    )


def load_spec(path: str | Path) -> EntitySetSpec:
    """A spec from a local YAML file (the driver reads it before Spark starts)."""
    if isinstance(path, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", path):  # s3a://, file:, https://
        raise UserError(f"entity set spec {path}: specs are read from a local file, not a URI: copy it next to the "
                        "job (spark-submit --files ships it) and pass its path")
    p = Path(path)
    if not p.is_file():
        raise UserError(f"entity set spec not found: {p} (pass a YAML file such as conf/entity_sets/organisms.yaml)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"entity set spec {p} is not UTF-8 text: save it as UTF-8 YAML") from None
    except yaml.YAMLError as exc:
        raise UserError(f"entity set spec {p} is not valid YAML: fix its syntax") from exc
    spec = spec_from_dict(data, str(p))
    return EntitySetSpec(**{**spec.__dict__, "source": str(p)})


# --- Spark -------------------------------------------------------------------------------------

def edges_of(entities):  # noqa: ANN001, ANN201 - DataFrame in, DataFrame out
    """(child, prop, parent) for every P31/P279/P171 value of every entity."""
    from pyspark.sql import functions as F

    parts = [
        entities.select(F.col("qid").alias("child"), F.lit(prop).alias("prop"),
                        F.explode(F.col(column)).alias("parent"))
        for prop, column in GRAPH_COLUMNS.items()
    ]
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def _hop(edges, frontier):  # noqa: ANN001, ANN202
    from pyspark.sql import functions as F

    return (
        edges.join(frontier, edges["parent"] == frontier["qid"])
        .select(edges["child"].alias("qid"), (frontier["depth"] + 1).alias("depth"))
        .groupBy("qid").agg(F.min("depth").alias("depth"))
    )


EXCLUSION_DEPTH = 1000  # exclusion closures run to their fixpoint; this only bounds a pathological graph


def closure(edges, start, max_depth: int, label: str = ""):  # noqa: ANN001, ANN201
    """``start`` and the entities reaching it by one or more edges (a ``*`` step; ``X+`` is ``X/X*``), each at
    its smallest depth: a start entity's depth plus the hops from it, up to ``max_depth``.

    Breadth-first by depth, not by round: the start entities of depth d join the frontier at depth d
    (they come from an earlier step of a path such as ``P279*/P31/P279*``, at several depths), so an
    entity reached first from a deep start and later, by a shorter route, from a shallow one gets the
    short route's depth (counting rounds from the whole start set gave it the long one, and ``max_depth``
    then dropped it). Each depth's new entities are checkpointed once; what was reached already is
    dropped (so cycles stop); ``reached`` is the union of those checkpoints, so the plan stays flat.
    """
    from pyspark.sql import functions as F

    start = start.localCheckpoint()
    depths = sorted(int(r[0]) for r in start.select("depth").distinct().collect())  # a few small integers
    levels: list = []
    frontier = None
    for depth in range(depths[0] if depths else max_depth + 1, max_depth + 1):
        seeds = start.where(F.col("depth") == depth) if depth in depths else None
        parts = ([_hop(edges, frontier)] if frontier is not None else []) + ([seeds] if seeds is not None else [])
        if not parts:
            if depth >= depths[-1]:
                break
            continue
        step = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1]).groupBy("qid").agg(
            F.min("depth").alias("depth"))
        if levels:
            seen = levels[0].select("qid")
            for lv in levels[1:]:
                seen = seen.unionByName(lv.select("qid"))
            step = step.join(seen, "qid", "left_anti")
        step = step.localCheckpoint()
        n = step.count()
        log.info("entity-set %s: depth %d: %d new", label, depth, n)
        frontier = step if n else None
        if n:
            levels.append(step)
        if frontier is None and depth >= depths[-1]:
            break
        if depth == max_depth and frontier is not None:  # not a fixpoint: what lies deeper is left out
            log.warning("entity-set %s: depth %d (max_depth) still found %d new entities: the set is cut there; "
                        "raise max_depth in its spec to reach the rest", label, depth, n)
    if not levels:
        return start.limit(0)
    reached = levels[0]
    for lv in levels[1:]:
        reached = reached.unionByName(lv)
    return reached.groupBy("qid").agg(F.min("depth").alias("depth"))


def _expand(steps: tuple[Step, ...]) -> tuple[Step, ...]:
    """``X+`` -> ``X/X*``: same set and depths, and the ``X*`` closure is shared with other rules."""
    out: list[Step] = []
    for st in steps:
        if st.quant == "+":
            out += [Step(st.props, ""), Step(st.props, "*")]
        else:
            out.append(st)
    return tuple(out)


def evaluate_path(edges, start, steps, max_depth: int, label: str = "", memo: dict | None = None):  # noqa: ANN001, ANN201
    """Entities x with ``x <steps> s`` for some s in ``start`` (qid, depth), read right to left.

    ``memo`` caches results per path suffix (for one ``start``), so rules sharing a tail such as
    ``P31/P279*`` and ``P279+`` (= ``P279/P279*``) run that closure once.
    """
    from pyspark.sql import functions as F

    memo = {} if memo is None else memo
    steps = _expand(tuple(steps))
    current = start
    for k in range(len(steps) - 1, -1, -1):
        key = steps[k:]
        if key in memo:
            current = memo[key]
            continue
        step = steps[k]
        e = edges.where(F.col("prop").isin(*step.props)).select("child", "parent")
        if step.quant == "":
            current = _hop(e, current).localCheckpoint()
        else:
            current = closure(e, current, max_depth, label).localCheckpoint()
        memo[key] = current
    return current


def compute(spark, entities_df, spec: EntitySetSpec):  # noqa: ANN001, ANN201
    """The set's members as (set_name, qid, depth), from an ``entities`` frame."""
    from pyspark.sql import functions as F

    present = {r["qid"] for r in entities_df.where(F.col("qid").isin(list(spec.roots))).select("qid").collect()}
    missing = [q for q in spec.roots if q not in present]  # a typo, or a dump that lacks it: say so
    if missing:
        log.warning("entity-set %s: root%s %s not in entities (a mistyped qid, or a dump without it): only what "
                    "the dump's edges reach below %s counts%s", spec.name, "s" * (len(missing) > 1),
                    ", ".join(missing), "them" if len(missing) > 1 else "it",
                    "; no root of the set is there" if len(missing) == len(spec.roots) else "")
    edges = edges_of(entities_df).persist()
    try:
        roots = spark.createDataFrame([(q, 0) for q in spec.roots], "qid string, depth int")
        memo: dict = {}
        found = [evaluate_path(edges, roots, steps, spec.max_depth, f"{spec.name}[{rule}]", memo)
                 for rule, steps in zip(spec.rules, spec.paths, strict=True)]
        if spec.include_roots:
            found.append(roots)
        members = found[0]
        for f in found[1:]:
            members = members.unionByName(f)
        members = members.groupBy("qid").agg(F.min("depth").alias("depth")).where(F.col("depth") <= spec.max_depth)
        if not spec.include_roots:  # the roots, however reached: by a `*` step's zero hops, or again by a cycle
            members = members.where(~F.col("qid").isin(list(spec.roots)))
        if spec.exclusions:
            ex_roots = spark.createDataFrame([(q, 0) for q in spec.exclusions], "qid string, depth int")
            ex_memo: dict = {}
            # to a fixpoint, not max_depth: a member near a root may lie far below an excluded one
            excluded = [evaluate_path(edges, ex_roots, steps, EXCLUSION_DEPTH, f"{spec.name}[exclude {rule}]", ex_memo)
                        for rule, steps in zip(spec.exclusion_rules, spec.exclusion_paths, strict=True)]
            ex = ex_roots.select("qid")
            for x in excluded:
                ex = ex.unionByName(x.select("qid"))
            members = members.join(ex.distinct(), "qid", "left_anti")
        info = entities_df.select("qid", "has_image", "sitelinks")
        if spec.require_image:
            info = info.where(F.col("has_image"))
        if spec.min_sitelinks > 0:
            info = info.where(F.col("sitelinks") >= spec.min_sitelinks)
            unknown = members.join(entities_df.where(F.col("sitelinks").isNull()).select("qid"), "qid").count()
            if unknown:  # a truthy N-Triples dump has no sitelinks counts: say why they are left out
                log.warning("entity-set %s: %d members have no sitelinks count (a truthy N-Triples dump carries "
                            "none), so min_sitelinks %d leaves them out: ingest latest-all.json or latest-all.nt "
                            "to judge them", spec.name, unknown, spec.min_sitelinks)
        out = (
            members.join(info.select("qid").distinct(), "qid")
            .select(F.lit(spec.name).alias("set_name"), "qid", F.col("depth").cast("int").alias("depth"))
            .localCheckpoint()
        )
    finally:
        edges.unpersist()
    return out


def write_entity_set(spark, lake: str, spec: EntitySetSpec) -> int:  # noqa: ANN001
    """Compute the set from the lake's ``entities`` and replace its rows in ``entity_sets``."""
    from pyspark.sql import functions as F

    from kgcurate import lake as lk
    from kgcurate import tables

    if not lk.exists(spark, lake, tables.ENTITIES):
        raise UserError(f"no entities table in lake {lake}: run `kgcurate ingest-wikidata` first")
    members = compute(spark, lk.read(spark, lake, tables.ENTITIES), spec)
    lk.overwrite(spark, lake, tables.ENTITY_SETS, members, replace_where=f"set_name = '{spec.name}'")
    return int(lk.read(spark, lake, tables.ENTITY_SETS).where(F.col("set_name") == spec.name).count())
