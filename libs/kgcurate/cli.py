"""``kgcurate`` command line: one entry for every stage; ``jobs/*.py`` call the same code.

Each stage is declared in :mod:`kgcurate.registry`, lives in ``kgcurate.stages.<module>`` and exposes
``execute(ctx, cfg)`` and ``report(summary, args) -> int`` (optionally ``prepare(args, cfg)`` for checks
before Spark starts, and ``add_arguments(parser)`` for flags that set no config key); its config flags
come from :mod:`kgcurate.settings`. Stage modules are imported only when their command runs, so
``kgcurate --help`` and one stage's failure to import never block the others.
Exit codes: 0 success, 1 a job that ran but failed (see its log tables), 2 bad usage or
unreadable input, with one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kgcurate import config, lake_rs, paths, registry, session, settings
from kgcurate.context import Context
from kgcurate.errors import UserError, first_line, io_error_from_jvm

# command -> (module, help), derived from the registry (kgcurate/registry.py)
STAGES: dict[str, tuple[str, str]] = {s.name: (s.module, s.help) for s in registry.STAGES}

log = logging.getLogger("kgcurate")


VALUE_OPTIONS = ("--lake", "--config", "--spark-conf")  # common options whose value a command name follows
NO_LAKE = {s.name for s in registry.STAGES if s.lake == "none"}  # commands that never touch the lake
READ_ONLY = {s.name for s in registry.STAGES if s.lake == "read"}  # commands that only read it


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (what is wrong and where to look), exit 2. No abbreviated flags:
    a prefix that matches one flag today (``refresh --t`` once read as ``--target-size``) silently means
    something else when flags are added."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    help_hint: str | None = None  # the command's own help, when the error is about its flags

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"kgcurate: error: {message} (see {self.help_hint or self.prog + ' --help'})\n")


def check_lake(lake: str, command: str, spark_conf: Mapping[str, Any] | None = None) -> None:
    """A local lake that cannot be a directory we write is a usage error now, not a JVM trace later; an empty
    one too (``--lake ""`` wrote every table into the working directory)."""
    if command in NO_LAKE:
        return
    if not lake.strip():
        raise UserError("the lake is empty (--lake \"\" or the config's lake: \"\"): pass a lake path, "
                        "e.g. --lake ./lake or --lake s3a://bucket/prefix")
    where = lake_rs.table_uri(lake, "").rstrip("/")  # absolute: the working folder's name counts for ./lake
    if re.search(r"%[0-9A-Fa-f]{2}", where):
        raise UserError(f"lake {where}: a '%' followed by two hex digits in the lake's path is not supported "
                        "(delta-rs, which writes the leases table, reads it back as an escape and looks in another "
                        "folder): rename the folder or pick another lake")
    scheme = lake.partition("://")[0].lower() if "://" in lake else ""
    if scheme in ("s3", "s3n") and registry.BY_NAME[command].needs_spark:
        raise UserError(f"lake {lake}: Spark's S3 filesystem is s3a://, not {scheme}:// (Hadoop has no {scheme}:// "
                        f"here): pass --lake s3a://{lake.partition('://')[2]}")
    if scheme == "s3a" and registry.BY_NAME[command].needs_spark and not session.under_spark_submit():
        from kgcurate import s3

        conf = session.build_conf(spark_conf, cluster=False)  # the endpoint Spark will use, flags included
        if not any(key.startswith("spark.hadoop.fs.s3a.proxy.") for key in conf):  # no direct route to test
            why = s3.unreachable_endpoint(conf.get("spark.hadoop.fs.s3a.endpoint"))
            if why is not None:
                raise UserError(f"lake {lake} is not reachable (S3 endpoint {why}): start the S3 service or fix "
                                "KGCURATE_S3_ENDPOINT (or spark.hadoop.fs.s3a.endpoint), then re-run")
    if paths.is_uri(lake):
        return
    path = Path(lake).absolute()
    try:
        _check_local_lake(path, writable=command not in READ_ONLY)
    except PermissionError as exc:
        raise UserError(f"lake {path} is not accessible ({exc.filename}: permission denied): "
                        "pick a lake you can reach or fix its permissions") from None


def _check_local_lake(path: Path, writable: bool) -> None:
    if path.exists() and not path.is_dir():
        raise UserError(f"lake {path} is a file, not a directory: pass a directory for --lake "
                        "(it is created when missing)")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"lake {path} cannot be created: {existing} is a file, not a directory")
    if writable and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"lake {path} is not writable ({existing}: permission denied): "
                        "pick a lake you can write or fix its permissions")


def _spark_conf_pair(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config (conf/demo.yaml, conf/cluster.yaml); flags override it")
    parser.add_argument("--lake", help="lake root: a local path, s3a://bucket/prefix or any Hadoop path")
    parser.add_argument("--spark-conf", action="append", type=_spark_conf_pair, default=[],
                        metavar="KEY=VALUE", help="extra Spark setting (repeatable)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    cfg = config.load(getattr(args, "config", None))
    config.set_if_given(cfg, "lake", getattr(args, "lake", None))
    for key, value in getattr(args, "spark_conf", []) or []:
        cfg.setdefault("spark", {}).setdefault("conf", {})[key] = value
    return cfg


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = OneLineParser(prog="kgcurate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for stage in registry.STAGES:
        sp = sub.add_parser(stage.name, help=stage.help, description=stage.help)
        if stage.name == command:
            add_common(sp)
            settings.add_flags(sp, stage.flag_keys)
            extra = getattr(importlib.import_module(f"kgcurate.stages.{stage.module}"), "add_arguments", None)
            if extra is not None:  # flags that set no config key (output format, step selection)
                extra(sp)
    return parser


def _command_of(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def run_stage(module: Any, args: argparse.Namespace, cfg: dict[str, Any]) -> int:
    """The one way a command runs its stage: checks that need no Spark (``prepare``), then
    ``execute(ctx, cfg)`` with a context whose session starts on first use, then ``report``
    (the summary lines, the exit code)."""
    prepare = getattr(module, "prepare", None)
    extra = prepare(args, cfg) if prepare is not None else {}
    summary = module.execute(Context.of(args.command, cfg), cfg, **extra)
    return int(module.report(summary, args) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    command = _command_of(argv)
    if command is not None and command not in registry.BY_NAME:
        later = next((a for a in argv if a in registry.BY_NAME), None)
        if later is not None and argv[0] in VALUE_OPTIONS and argv[1] == command:  # `kgcurate --lake L match`
            rest = " ".join(a for a in argv if a != later)
            print(f"kgcurate: error: options go after the command: kgcurate {later} {rest}", file=sys.stderr)
        else:
            print(f"kgcurate: error: unknown command '{command}' (see kgcurate --help)", file=sys.stderr)
        return 2
    parser = build_parser(command)
    if command is not None:
        parser.help_hint = f"kgcurate {command} --help"
    args = parser.parse_args(argv)  # exits 2 with argparse's one-line usage error
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(f"kgcurate.stages.{registry.BY_NAME[args.command].module}")
    if not args.debug and not session.under_spark_submit():  # a terminal: our one line says it all
        session.console_log_level = "OFF"  # (under spark-submit the driver log keeps Spark's WARN/ERROR)
    lake: str | None = None
    try:
        cfg = resolve_config(args)
        lake = str(cfg.get("lake") or "")
        settings.apply_flags(args, cfg, registry.BY_NAME[args.command].flag_keys)
        settings.expand_paths(cfg)
        check_lake(str(cfg.get("lake") or ""), args.command, (cfg.get("spark") or {}).get("conf"))
        return run_stage(module, args, cfg)
    except UserError as exc:
        if args.debug:  # the trace, then the same exit code: a scheduler adding --debug sees the same outcome
            traceback.print_exc()
        print(f"kgcurate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kgcurate: interrupted; tables keep their last committed version", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for users, the trace with --debug
        if args.debug:
            traceback.print_exc()
        io_error = io_error_from_jvm(exc, lake)
        if io_error is not None:
            print(f"kgcurate: error: {args.command}: {io_error}", file=sys.stderr)
            return 2
        first = first_line(exc)
        print(f"kgcurate: error: {args.command} failed: {type(exc).__name__}: {first[:300]} "
              "(tables keep their last committed version; re-run with --debug for the trace)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
