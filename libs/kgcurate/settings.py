"""Every config key, declared once: its YAML section and key, its default, its type, its help and,
when a command sets it, its CLI flag.

A section is a dataclass; each field is an :func:`option`. From these declarations come
``config.DEFAULTS`` (the YAML defaults), the types ``config.validate`` checks a YAML file against,
and the flags of each command (:func:`add_flags`, :func:`apply_flags`), so a key, its default and
its flag can no longer drift apart. Typed access for code: :func:`section` (``settings.section(cfg,
MatchOptions).lowercase``). Pure: no Spark, nothing heavy imported, so ``kgcurate --help`` stays fast.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, TypeVar

from kgcurate import argtypes, paths

S = TypeVar("S")
SHARED_ALIAS_MODES = ("keep_most_sitelinks", "drop")  # metadata.kg.SHARED_MODES (checked by a test)


def option(default: Any, help: str, *, flag: str | None = None, type: Callable[[str], Any] | None = None,
           action: str | None = None, const: Any = None, choices: tuple[str, ...] | None = None,
           metavar: str | None = None, nargs: str | None = None, exclusive: str | None = None,
           positive: bool = False, flag_help: str | None = None, path: bool = False,
           aliases: tuple[str, ...] = ()) -> Any:
    """A config key. ``flag``: its command-line form (``--name``, or a bare name for a positional);
    ``exclusive``: keys of one group exclude each other on the command line, and a flag given there
    clears the others' config values (the flag replaces the config's choice); ``flag_help``: the flag's
    own help where it says something else than the key (``--no-title`` for ``text_sources``); ``path``: a
    local path or URI (or a list of them), whose leading ``~`` is expanded (:func:`expand_paths`);
    ``aliases``: other spellings of the flag (those ../shared/design.md's CLI contract uses)."""
    meta = {"help": help, "flag": flag, "type": type, "action": action, "const": const, "choices": choices,
            "metavar": metavar, "nargs": nargs, "exclusive": exclusive, "positive": positive,
            "flag_help": flag_help, "path": path, "aliases": aliases}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type_copy(default), metadata=meta)
    return field(default=default, metadata=meta)


def type_copy(value: Any) -> Any:
    return [*value] if isinstance(value, list) else {**value}


def comma_list(text: str) -> list[str]:
    """``a,b`` as a list; an empty one is refused, since an empty list counts as not given (the default)."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


# ---------------------------------------------------------------- the sections


@dataclass(frozen=True)
class SparkOptions:
    conf: dict = option({}, "extra Spark settings (any key); --spark-conf KEY=VALUE adds one")


FAILED_FILES_HELP = ("exit 0 when some input files failed: they stay failed in ingest_log, are named on stderr as "
                     "a warning and the next run reads them again (for a scheduler whose later stages must run "
                     "anyway; every file failing, or a crash, is still exit 1)")


@dataclass(frozen=True)
class WatOptions:
    inputs: list = option([], "WAT files, directories, globs, s3a:// prefixes or a wat.paths(.gz) listing",
                          flag="inputs", nargs="*", metavar="INPUT", path=True)
    crawl: str | None = option(None, "crawl id for every input (default: taken from each file's path)",
                               flag="--crawl")
    listing_base: str | None = option(None, "base for a listing's relative paths (default: the listing's folder, "
                                      "or the bucket root for s3 listings)", flag="--listing-base",
                                      path=True)
    min_text_length: int = option(1, "texts shorter than this are filtered", flag="--min-text-length", type=int)
    max_text_length: int = option(2000, "texts longer than this are filtered", flag="--max-text-length", type=int)
    text_sources: list = option(["alt", "title"], "which texts make pairs: alt, title",
                                flag="--no-title", action="store_const", const=["alt"],
                                flag_help="use alt texts only (not title)")
    force: bool = option(False, "re-read files already done (ok or partial) in ingest_log", flag="--force")
    allow_failed_files: bool = option(False, FAILED_FILES_HELP, flag="--allow-failed-files")
    decode_all: bool = option(False, "JSON-decode payloads without image links too (stricter bad-record detection)")
    pairs_staging: str = option("auto", "who writes parsed pairs to staging: task (pyarrow in the Python task: "
                                "local and s3 lakes), spark (through the JVM: any lake), auto (task where allowed)")
    progress_interval: float = option(10.0, "seconds between progress lines (default 10; > 0)",
                                      flag="--progress-interval", type=argtypes.positive_float, positive=True)


@dataclass(frozen=True)
class WikidataOptions:
    input: str | list | None = option(None, "Wikidata dump: .json/.json.gz/.json.bz2 (or one pretty-printed entity "
                                      "file) or truthy N-Triples .nt/.nt.bz2", flag="inputs", nargs="*",
                                      metavar="INPUT", path=True)
    languages: list = option(["en"], "label languages in priority order (comma-separated on the command line); "
                             "mul is always the last fallback", flag="--languages", type=comma_list)
    format: str | None = option(None, "input format (default: from the file name)", flag="--format",
                                choices=("json", "nt"))
    force: bool = option(False, "re-read a dump already ingested unchanged (same files, sizes and modification "
                         "times, same languages)", flag="--force")
    allow_failed_files: bool = option(False, FAILED_FILES_HELP, flag="--allow-failed-files")


@dataclass(frozen=True)
class MetadataOptions:
    wordnet: bool = option(True, "WordNet lemmas as entries", flag="--no-wordnet", action="store_false",
                           flag_help="leave WordNet out (its previous rows are kept)")
    wordnet_dir: str | None = option(None, "WordNet 3.0 dict directory (default /usr/share/wordnet)",
                                     flag="--wordnet-dir", metavar="DIR", path=True)
    wordnet_entries: str = option("lemmas", "WordNet strings as entries: lemmas (every lemma, case kept) or "
                                  "metaclip (each synset's NLTK name, lowercased, as MetaCLIP's build_metadata)",
                                  flag="--wordnet-entries", choices=("lemmas", "metaclip"))
    metaclip_metadata: str | None = option(None, "MetaCLIP metadata.json (a JSON list of strings)",
                                           flag="--metaclip-metadata", metavar="FILE", path=True)
    entity_sets: list = option([], "entity set to add KG entries for: a conf/entity_sets/*.yaml file (computed "
                               "first) or the name of a set already in the entity_sets table (repeatable)",
                               flag="--entity-set", action="append", metavar="YAML_OR_NAME", path=True)
    replace_all: bool = option(False, "rebuild the whole table from this run's sources (drop rows of sources "
                               "not given)", flag="--replace-all")
    min_length: int = option(3, "KG names shorter than N characters are dropped", flag="--min-length", type=int,
                             metavar="N")
    min_length_cjk: int = option(1, "the same for names in CJK scripts")
    stop_words: bool = option(True, "drop KG names that are English function words")
    extra_stop_words: list = option([], "more words to drop as KG names")
    shared_alias: str = option("keep_most_sitelinks", "a KG name shared by several entities: keep it for the best "
                               "one, or drop it", flag="--shared-alias", choices=SHARED_ALIAS_MODES)
    shared_alias_min_qids: int = option(2, "a name naming this many entities or more is shared")
    force: bool = option(False, "rebuild even when nothing changed since the last build (same entries, entity-set "
                         "specs and options, same tables)", flag="--force")


@dataclass(frozen=True)
class MatchOptions:
    lowercase: bool = option(False, "lowercase captions and entries before matching (default: case-sensitive, "
                             "as MetaCLIP)", flag="--lowercase")
    full: bool = option(False, "re-match every pair instead of only the pairs added since the last run",
                        flag="--full")


@dataclass(frozen=True)
class BalanceOptions:
    t: int | float | None = option(None, "head/tail threshold: p_e = min(1, t / count_e)", flag="--t",
                                   type=argtypes.positive_float, exclusive="target")
    target_size: int | None = option(None, "keep exactly this many pairs (t is derived; 1 .. 2^63-1)",
                                     flag="--target-size", type=argtypes.positive_int64, exclusive="target")
    tail_share: int | float | None = option(None, "MetaCLIP p -> t: the count t at which the entries sorted by "
                                            "count reach this share of all matches (entries with count up to "
                                            "t hold about it, more when many share t)", flag="--tail-share", type=float,
                                            exclusive="target")
    seed: int = option(0, "coin seed (default 0; a 64-bit integer); same seed, same curated set", flag="--seed",
                       type=argtypes.int64)
    per_qid: bool = option(False, "balance knowledge-graph entries per entity (qid_counts) instead of per string",
                           flag="--per-qid")
    full: bool = option(False, "select from every match instead of building on a recorded run's curated set "
                        "plus the pairs matched since (the result is the same; this reads all of matches)",
                        flag="--full")


@dataclass(frozen=True)
class ReportOptions:
    out: str = option("./reports/latest", "the report's folder: index.html and its PNGs (default: report.out)",
                      flag="--out", path=True)


@dataclass(frozen=True)
class RefreshOptions:
    crawl: str | None = option(None, "crawl id, e.g. CC-MAIN-2024-51, or latest: the newest crawl whose WAT "
                               "listing is published under --listing-base (an s3:// or local base)", flag="--crawl")
    listing_base: str | None = option(None, "root laid out like s3://commoncrawl/ (default), holding "
                                      "crawl-data/<crawl>/wat.paths.gz; the listing's lines are relative to it",
                                      flag="--listing-base", path=True)


@dataclass(frozen=True)
class MaintainOptions:
    vacuum_hours: float = option(168.0, "history kept by VACUUM, hours (default 168: 7 days of time travel)",
                                 flag="--vacuum-hours", type=argtypes.non_negative_float)
    staging_hours: float = option(24.0, "remove staging folders of killed runs whose newest file is older than "
                                  "this, hours (default 24)", flag="--staging-hours", type=argtypes.positive_float,
                                  positive=True)
    dry_run: bool = option(False, "report only; change nothing", flag="--dry-run")
    parallel_tables: int = option(4, "tables optimized and vacuumed at once (default 4; 1: one after another)",
                                  flag="--parallel-tables", type=argtypes.int_in(1, 1024), positive=True)


@dataclass(frozen=True)
class EntitySetOptions:
    specs: list = option([], "entity set spec(s), see conf/entity_sets/ (default: the YAML files among the "
                         "config's metadata.entity_sets)", flag="specs", nargs="*", metavar="SPEC.yaml",
                         path=True)


@dataclass(frozen=True)
class CuratedOptions:
    action: str = option("list", "list the curated runs (the default), or drop one", flag="action",
                         choices=("list", "drop"), nargs="?")
    run_id: str | None = option(None, "the run to drop (see `kgcurate curated list`)", flag="run_id", nargs="?",
                                metavar="RUN_ID")


@dataclass(frozen=True)
class SampleOptions:
    out: str = option("samples", "output folder; WAT files go to OUT/wat/ (default: samples)", flag="--out", path=True)
    files: int = option(4, "number of WAT files (default 4)", flag="--files", type=int)
    records: int = option(400, "WARC records per file (default 400; 3 per page + warcinfo)", flag="--records",
                          type=int, exclusive="sample_size")
    seed: int = option(0, "random seed; the same seed writes the same bytes (default 0)", flag="--seed", type=int)
    corrupt: bool = option(True, "add deliberate corruptions (malformed JSON, truncated gzip member)",
                           flag="--no-corrupt", action="store_false",
                           flag_help="leave out the deliberate corruptions (malformed JSON, truncated gzip member)")
    gzip: bool = option(True, "one gzip member per record (.warc.wat.gz)", flag="--uncompressed",
                        action="store_false", flag_help="write plain .warc.wat instead of one gzip member per record")
    size_mb: int | float | None = option(None, "total size in MB (compressed) instead of --records per file",
                                         flag="--size-mb", type=float, exclusive="sample_size")
    image_base_url: str | None = option(None, "serve the image links from here: every image link becomes "
                                        "URL/<file> and the files are written to --images (a demo's downloads)",
                                        flag="--image-base-url", metavar="URL")
    images: str | None = option(None, "folder for the --image-base-url files (default: OUT/images)", flag="--images",
                                path=True)


@dataclass(frozen=True)
class DownloadOptions:
    run_id: str | None = option(None, "the curated run to download (default: the newest; see kgcurate curated list)",
                                flag="--run-id")
    out: str = option("./shards", "folder for the webdataset shards and sizes.json: a local path or s3://...",
                      flag="--out", path=True)
    shard_size: int = option(10_000, "images per shard, at most (hashed: 0.9x that on average; a key holds 4 digits "
                             "of index, so 10000 at most)",
                             flag="--shard-size", type=argtypes.int_in(1, 10_000), positive=True)
    threads: int = option(16, "concurrent downloads per task", flag="--threads", type=argtypes.int_in(1, 1024),
                          positive=True)
    max_per_host: int = option(4, "concurrent requests to one host per task", flag="--max-per-host",
                               type=argtypes.int_in(1, 1024), positive=True)
    host_delay: float = option(0.0, "seconds between request starts to one host per task", flag="--host-delay",
                               type=argtypes.non_negative_float)
    image_size: int = option(256, "longer side of the stored image in pixels (never upscaled)",
                             flag="--image-size", type=argtypes.int_in(8, 65_536), positive=True)
    resize_mode: str = option("keep_ratio_largest", "keep_ratio_largest: longer side = image_size; keep_ratio: "
                              "shorter side; no: keep the size", flag="--resize-mode",
                              choices=("keep_ratio_largest", "keep_ratio", "no"))
    timeout: float = option(10.0, "seconds to connect and for each read", flag="--timeout",
                            type=argtypes.positive_float, positive=True)
    attempts: int = option(3, "tries per URL (retries only timeouts, 429 and 5xx, with backoff)", flag="--attempts",
                           type=argtypes.int_in(1, 20), positive=True)
    max_redirects: int = option(5, "redirects followed per URL (0: none; at most 100)", type=argtypes.int_in(0, 100))
    max_bytes: int = option(32 * 2**20, "larger bodies are cut off (too_large; > 0)", type=argtypes.int_in(1),
                            positive=True)
    max_pixels: int = option(89_478_485, "images with more pixels are refused before decoding (too_large; > 0)",
                             type=argtypes.int_in(1), positive=True)
    opt_out: list = option(["noai", "noimageai"], "X-Robots-Tag directives that opt an image out (comma-separated "
                           "on the command line; replaces the list, so keep noai,noimageai: --opt-out "
                           "noai,noimageai,noindex,noimageindex honours the search-engine ones too)",
                           flag="--opt-out", type=comma_list)
    user_agent: str | None = option(None, "User-Agent (default: kgcurate/<version> with a project URL)",
                                    flag="--user-agent")
    allow_private: bool = option(False, "allow private and loopback addresses (a local mirror; tests)",
                                 flag="--allow-private")
    retry_failed: bool = option(False, "download again the URLs that failed with a timeout, 429 or 5xx, into new "
                                "shards", flag="--retry-failed")
    min_success_rate: float = option(0.5, "warn when fewer downloads than this share succeed",
                                     flag="--min-success-rate", type=argtypes.fraction)
    progress_interval: float = option(10.0, "seconds between progress lines", type=argtypes.positive_float,
                                      positive=True)


@dataclass(frozen=True)
class TrainOptions:
    download_run_id: str | None = option(None, "the download run whose shards to train on (default: the newest; its "
                                         "folder's shards from every run into it)", flag="--download-run-id",
                                         aliases=("--download-run",))
    download_runs_version: int | None = option(None, "Delta version of download_runs to read (default: the newest; "
                                               "recorded in train_runs)", flag="--download-runs-version",
                                               type=argtypes.int_in(0))
    model: str = option("ViT-B-32", "open_clip model name", flag="--model")
    model_config_dir: str | None = option(None, "folder of extra open_clip model configs (conf/models holds "
                                          "kgc-tiny)", flag="--model-config-dir", metavar="DIR", path=True)
    batch_size: int = option(256, "batch size per process", flag="--batch-size", type=argtypes.int_in(1),
                             positive=True)
    epochs: int = option(32, "epochs (with --samples: checkpoints, each of samples/epochs samples)", flag="--epochs",
                         type=argtypes.int_in(1), positive=True)
    samples: int | None = option(None, "samples seen in all, drawn with replacement (default: epochs x the shards' "
                                 "samples, in passes)", flag="--samples", type=argtypes.int_in(1))
    lr: float = option(5e-4, "peak learning rate", flag="--lr", type=argtypes.positive_float, positive=True)
    warmup: int = option(2000, "warmup steps", flag="--warmup", type=argtypes.int_in(0))
    wd: float = option(0.2, "weight decay", flag="--wd", type=float)
    precision: str = option("auto", "auto: amp on a GPU, fp32 on the CPU; or any open_clip precision",
                            flag="--precision", choices=("auto", "amp", "amp_bf16", "bf16", "fp16", "fp32"))
    workers: int = option(4, "dataloader workers per process", flag="--workers", type=argtypes.int_in(0))
    kg_text_share: float = option(0.5, "chance a draw shows a knowledge-graph text when the sample has one "
                                  "(0: curated texts only; EntityNet's mix is 0.5)", flag="--kg-text-share",
                                  type=argtypes.fraction)
    seed: int = option(0, "seed of the trainer and of the text draw", flag="--seed", type=argtypes.int64)
    experiments: str = option("./experiments", "folder holding one folder per experiment (open_clip's --logs)",
                              flag="--experiments", metavar="DIR", path=True)
    name: str | None = option(None, "the experiment's folder name (default: model and curated run)", flag="--name")
    resume: bool = option(False, "continue the experiment from its latest checkpoint (or start it when absent); "
                          "without it an existing experiment folder is refused", flag="--resume")
    gpus: int = option(1, "processes on this node: more than 1 runs open_clip under torchrun", flag="--gpus",
                       type=argtypes.int_in(1))
    log_every: int = option(100, "steps between loss lines (the manifest's loss curve)", flag="--log-every",
                            type=argtypes.int_in(1), positive=True)
    extra_args: list = option([], "more open_clip_train arguments, appended as given (YAML only)")


@dataclass(frozen=True)
class EvaluateOptions:
    train_run_id: str | None = option(None, "the train run whose checkpoint to evaluate (default: the newest finished "
                                      "one in train_runs, unless --checkpoint is given)", flag="--train-run-id",
                                      aliases=("--train-run",))
    checkpoint: str | None = option(None, "an open_clip checkpoint file to evaluate instead of a train run's (needs "
                                    "--model)", flag="--checkpoint", metavar="FILE", path=True)
    model: str | None = option(None, "open_clip model name of --checkpoint (e.g. kgc-tiny, ViT-B-32)", flag="--model")
    model_config_dir: str | None = option(None, "folder of <model>.json configs for --model (e.g. conf/models)",
                                          flag="--model-config-dir", metavar="DIR", path=True)
    datasets: list = option(["digits", "skimage"], "zero-shot sets: digits, skimage (offline), or a labelled folder "
                            "DIR/<class>/<image> as PATH or NAME=PATH (ImageNet, iNat; repeatable); none: "
                            "retrieval only",
                            flag="--dataset", action="append", metavar="SET", path=True)
    retrieval: list = option([], "held-out webdataset shards for image-text retrieval: a folder of *.tar or a glob, "
                             "as PATH or NAME=PATH (repeatable)", flag="--retrieval", action="append",
                             metavar="SHARDS", path=True)
    retrieval_limit: int = option(5000, "samples of a retrieval set scored (every image against every text)",
                                  flag="--retrieval-limit", type=argtypes.int_in(1, 1_000_000), positive=True)
    digits_per_class: int | None = option(None, "images per digit of the offline digits set (default all, ~180)",
                                          flag="--digits-per-class", type=argtypes.int_in(1, 200))
    templates: str = option("openai", "prompt templates: openai (80, open_clip's ImageNet set) or simple (7)",
                            flag="--templates", choices=("openai", "simple"))
    top_k: list = option([1, 5], "zero-shot accuracies reported: top-k for each k")
    recall_k: list = option([1, 5, 10], "retrieval recall@K reported for each K")
    batch_size: int = option(64, "images per forward pass", flag="--batch-size", type=argtypes.int_in(1, 65_536),
                             positive=True)
    workers: int = option(0, "DataLoader workers reading images (0: in the main process)", flag="--workers",
                          type=argtypes.int_in(0, 256))
    device: str = option("auto", "auto (cuda when present), cpu, cuda or cuda:N", flag="--device")


# YAML section -> its options; the order is the order of conf files and docs.
SECTIONS: dict[str, type] = {
    "spark": SparkOptions, "wat": WatOptions, "wikidata": WikidataOptions, "metadata": MetadataOptions,
    "match": MatchOptions, "balance": BalanceOptions, "report": ReportOptions, "refresh": RefreshOptions,
    "maintain": MaintainOptions, "entity_set": EntitySetOptions, "curated": CuratedOptions, "sample": SampleOptions,
    "download": DownloadOptions, "train": TrainOptions, "evaluate": EvaluateOptions,
}
TOP_LEVEL: dict[str, Any] = {"lake": "./lake"}  # keys outside any section
FREE_FORM = {"spark.conf"}  # any keys


def defaults() -> dict[str, Any]:
    """The whole default config as the dict a YAML file is merged over."""
    return {**TOP_LEVEL, **{name: asdict(cls()) for name, cls in SECTIONS.items()}}


def expand_paths(cfg: dict[str, Any]) -> None:
    """Expand a leading ``~`` in ``lake`` and every ``path`` key of the merged config (from YAML or a flag), in
    place: neither a YAML value nor ``--out=~/x`` goes through a shell, and a literal ``./~`` folder is a trap."""
    if isinstance(cfg.get("lake"), str):
        cfg["lake"] = paths.expand_home(cfg["lake"])
    for sec, cls in SECTIONS.items():
        values = cfg.get(sec)
        if not isinstance(values, dict):
            continue
        for f in fields(cls):
            value = values.get(f.name)
            if not f.metadata.get("path") or value is None:
                continue
            if isinstance(value, str):
                values[f.name] = paths.expand_home(value)
            elif isinstance(value, list):
                values[f.name] = [paths.expand_home(v) if isinstance(v, str) else v for v in value]


def value_types(cls: type, name: str) -> tuple[type, ...]:
    """The YAML value types a key accepts (None aside), from its annotation."""
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    out = [typing.get_origin(a) or a for a in args if a is not type(None)]
    if float in out and int not in out:  # a whole number is a fine float
        out.insert(out.index(float), int)
    return tuple(out) or (object,)


def meta(cls: type, name: str) -> dict[str, Any]:
    return next(f.metadata for f in fields(cls) if f.name == name)


def section(cfg: dict[str, Any], cls: type[S]) -> S:
    """A section of a merged config dict as its typed dataclass (unset keys take their defaults)."""
    name = next(n for n, c in SECTIONS.items() if c is cls)
    given = cfg.get(name) or {}
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in given.items() if k in known})


# ---------------------------------------------------------------- command-line flags


def flag_keys(sections: tuple[str, ...], extra: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys (``wat.crawl``) a command offers as flags: every flagged key of its sections, then
    ``extra`` (keys of other sections it sets, e.g. refresh's ``balance.target_size``)."""
    keys = [f"{s}.{f.name}" for s in sections for f in fields(SECTIONS[s]) if f.metadata.get("flag")]
    return keys + [k for k in extra if k not in keys]


def _split(dotted: str) -> tuple[type, str]:
    sec, name = dotted.split(".", 1)
    return SECTIONS[sec], name


def add_flags(parser: argparse.ArgumentParser, keys: list[str]) -> None:
    """One argparse argument per key; its value lands under ``dest = key`` (None when not given)."""
    groups: dict[str, Any] = {}
    members: dict[str, int] = {}
    for dotted in keys:
        group = meta(*_split(dotted))["exclusive"]
        if group:
            members[group] = members.get(group, 0) + 1
    for dotted in keys:
        cls, name = _split(dotted)
        m = meta(cls, name)
        target = parser
        if members.get(m["exclusive"], 0) > 1:
            if m["exclusive"] not in groups:
                groups[m["exclusive"]] = parser.add_mutually_exclusive_group()
            target = groups[m["exclusive"]]
        kwargs: dict[str, Any] = {"help": m["flag_help"] or m["help"]}
        if m["metavar"]:
            kwargs["metavar"] = m["metavar"]
        elif (m["flag"].startswith("-") and not m["action"] and not m["choices"]
              and not isinstance(field_default(cls, name), bool)):
            kwargs["metavar"] = m["flag"].lstrip("-").upper().replace("-", "_")
        if m["choices"]:
            kwargs["choices"] = m["choices"]
        if m["flag"].startswith("-"):
            kwargs["dest"] = dotted
            kwargs["default"] = None
            default = next(f for f in fields(cls) if f.name == name).default
            flag = m["flag"]
            if m["action"] == "store_false" and flag.startswith("--no-") and isinstance(default, bool):
                # both ways, as below: --no-wordnet, and --wordnet over a config's `wordnet: false`
                flag, kwargs["action"], kwargs["help"] = f"--{flag[5:]}", argparse.BooleanOptionalAction, m["help"]
            elif m["action"]:
                kwargs["action"] = m["action"]
                if m["action"] == "store_const":
                    kwargs["const"] = m["const"]
            elif isinstance(default, bool):
                # --x and --no-x: a flag wins over the YAML either way (`maintain: {dry_run: true}` and
                # `--no-dry-run`); with store_true alone a config's true could not be undone from the command line
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["type"] = m["type"]
            target.add_argument(flag, *m["aliases"], **kwargs)
        else:  # positional: argparse takes dest from the name
            kwargs["nargs"] = m["nargs"]
            target.add_argument(dotted, **kwargs)


def apply_flags(args: argparse.Namespace, cfg: dict[str, Any], keys: list[str]) -> None:
    """Set every key whose flag was given over the config; a given flag of an exclusive group clears
    the group's other keys (``--target-size`` replaces a ``t:`` from the YAML)."""
    for dotted in keys:
        value = getattr(args, dotted, None)
        if not _given(value):
            continue
        cls, name = _split(dotted)
        sec = cfg.setdefault(dotted.split(".")[0], {})
        group = meta(cls, name)["exclusive"]
        for other in fields(cls):
            if group and other.name != name and other.metadata.get("exclusive") == group:
                sec[other.name] = None
        sec[name] = list(value) if isinstance(value, list) else value


def _given(value: Any) -> bool:
    return value is not None and value != []


def field_default(cls: type, name: str) -> Any:
    f = next(f for f in fields(cls) if f.name == name)
    return f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
