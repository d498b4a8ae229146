"""Build what a cluster needs into ``deploy/dist/`` (``make dist``: ``.venv/bin/python deploy/build.py``).

Why each piece:
- ``kgcurate-<v>-py3-none-any.whl``: installed into the job image / on cluster nodes, with its pinned
  dependencies (pyarrow, FastWARC, ... have native code, so they cannot travel in a zip);
- ``kgcurate_native-<v>-cp311-abi3-manylinux_2_<n>_x86_64.whl``: the compiled WAT path (``native/``, Rust
  through maturin), for the cluster's platform (linux x86_64; the tag names the newest glibc its symbols need,
  at most the job image's, Ubuntu 22.04's 2.35: built with maturin's manylinux_2_35 policy, which checks
  the symbols); without it the parser falls back to pure Python, which is what an image built from a
  dist made on another host (a Mac, arm64) gets: there it is skipped with a warning (or ``--no-native``);
- ``kgcurate.zip``: the pure-Python package for ``--py-files``, so a code fix ships without
  rebuilding the image (it shadows the installed copy on driver and executors);
- ``jobs/``: the spark-submit entry scripts; ``conf/``: cluster.yaml, train-smoke.yaml (the compose demo's
  train), the entity sets, extra model configs;
- ``constraints.txt``: every package pinned, for the training image (``deploy/Dockerfile.train``);
- ``packages.txt``: the Maven coordinates pinned to the Spark line (``--packages``);
- ``spark-defaults.conf``: the session settings (``kgcurate.session.SESSION_CONF``: Delta);
- ``stages.tsv``: command -> job script, so ``deploy/spark-submit.sh`` needs no Python to map it;
- ``airflow/``: the DAG and the stage list it imports, ready to drop into a dags folder.
The build is deterministic for a given tree (sorted zip entries, fixed timestamps).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "deploy" / "dist"
ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def _zip_package(src: Path, dest: Path) -> int:
    """Zip ``libs/kgcurate`` as ``kgcurate/...`` (sources and package data, no caches)."""
    files = sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                   and p.suffix not in (".pyc", ".pyo"))
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            info = zipfile.ZipInfo(str(Path("kgcurate") / path.relative_to(src)), ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
    return len(files)


def _wheel(dest: Path) -> Path:
    """``pip wheel --no-deps``; offline, retry without build isolation (needs setuptools+wheel here)."""
    before = set(dest.glob("kgcurate-*.whl"))
    base = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest)]
    if subprocess.run([*base, str(ROOT)]).returncode != 0:
        subprocess.run([*base, "--no-build-isolation", str(ROOT)], check=True)
    new = sorted(set(dest.glob("kgcurate-*.whl")) - before) or sorted(dest.glob("kgcurate-*.whl"))
    if not new:
        raise SystemExit("kgcurate: error: pip wheel produced no kgcurate wheel")
    return new[-1]


IMAGE_GLIBC = (2, 35)  # the job image's (apache/spark ...-ubuntu: Ubuntu 22.04)


def native_wheel_problem(name: str) -> str | None:
    """Why a ``kgcurate_native`` wheel file name does not fit the job image (linux x86_64, CPython 3.11,
    glibc <= IMAGE_GLIBC), or None."""
    parts = name[:-4].split("-") if name.endswith(".whl") else []
    if len(parts) != 5 or parts[0] != "kgcurate_native":
        return f"not a kgcurate_native wheel: {name}"
    _, _, python, abi, platform = parts
    if not (python == "cp311" and abi in ("abi3", "cp311")):
        return f"not for CPython 3.11: {python}-{abi}"
    tags = [t for t in platform.split(".") if t.endswith("_x86_64")]
    for tag in tags:
        m = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64", tag)
        if m and (int(m.group(1)), int(m.group(2))) <= IMAGE_GLIBC:
            return None
        if tag in ("manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"):
            return None
    return f"platform {platform} is not manylinux x86_64 with glibc <= {IMAGE_GLIBC[0]}.{IMAGE_GLIBC[1]}"


def native_host_problem(system: str, machine: str) -> str | None:
    """Why this host cannot build the job image's ``kgcurate_native`` wheel (linux x86_64), or None: maturin
    builds for the host's own platform, so a Mac or an arm64 machine would make a wheel no image can use."""
    if system == "Linux" and machine in ("x86_64", "AMD64"):
        return None
    return (f"this host is {system} {machine}: kgcurate_native (the compiled WAT parser) is built for linux x86_64 "
            "only, so the image and the cluster get the pure-Python parser (several times slower); run `make "
            "dist` on linux x86_64 (a container will do) for the compiled one")


def _native_wheel(dest: Path) -> Path:
    """``pip wheel ./native`` (maturin, cargo): the compiled WAT path's wheel, checked for the image."""
    before = set(dest.glob("kgcurate_native-*.whl"))
    # maturin (pip's build backend here) tags a PEP 517 build plain linux_x86_64 unless told a policy; with one it
    # also checks the library's glibc symbols against it (and fails the build if they are newer).
    env = {**os.environ, "MATURIN_PEP517_ARGS": f"--compatibility manylinux_{IMAGE_GLIBC[0]}_{IMAGE_GLIBC[1]}"}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest), str(ROOT / "native")],
                   check=True, env=env)
    new = sorted(set(dest.glob("kgcurate_native-*.whl")) - before) or sorted(dest.glob("kgcurate_native-*.whl"))
    if not new:
        raise SystemExit("kgcurate: error: pip wheel produced no kgcurate_native wheel")
    problem = native_wheel_problem(new[-1].name)
    if problem:
        raise SystemExit(f"kgcurate: error: {problem} (build on an older-glibc machine or a manylinux container)")
    return new[-1]


def build(dist: Path = DIST, wheel: bool = True, native: bool = True) -> dict:
    """(Re)create ``dist`` and return a manifest of what is in it. ``native``: build the compiled WAT
    parser's wheel too, where this host can (:func:`native_host_problem`)."""
    from kgcurate.jars import COORDINATES, SPARK_VERSION
    from kgcurate.registry import STAGES
    from kgcurate.session import SESSION_CONF

    if dist.exists():
        shutil.rmtree(dist)
    dist.mkdir(parents=True)
    manifest: dict = {"spark_version": SPARK_VERSION, "packages": list(COORDINATES)}
    if wheel:
        import platform

        manifest["wheel"] = _wheel(dist).name
        skipped = "--no-native" if not native else native_host_problem(platform.system(), platform.machine())
        if skipped is None:
            manifest["native_wheel"] = _native_wheel(dist).name
        else:
            manifest["native_skipped"] = skipped
            print(f"deploy/build.py: warning: no kgcurate_native wheel: {skipped}", file=sys.stderr)
    manifest["py_files"] = "kgcurate.zip"
    manifest["zip_files"] = _zip_package(ROOT / "libs" / "kgcurate", dist / "kgcurate.zip")
    shutil.copytree(ROOT / "jobs", dist / "jobs", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (dist / "conf").mkdir()
    for name in ("cluster.yaml", "train-smoke.yaml"):  # train-smoke: the compose demo's `train` service
        if (ROOT / "conf" / name).exists():
            shutil.copy2(ROOT / "conf" / name, dist / "conf" / name)
    for folder in ("entity_sets", "models"):
        if (ROOT / "conf" / folder).is_dir():
            shutil.copytree(ROOT / "conf" / folder, dist / "conf" / folder)
    # every transitive package pinned, for the training image's `pip install -c` (deploy/Dockerfile.train)
    shutil.copy2(ROOT / "constraints.txt", dist / "constraints.txt")
    (dist / "packages.txt").write_text(",".join(COORDINATES) + "\n")
    (dist / "spark-defaults.conf").write_text("".join(f"{k} {v}\n" for k, v in SESSION_CONF.items()))
    (dist / "stages.tsv").write_text("".join(f"{s.name}\t{s.job_script}\n" for s in STAGES))
    (dist / "airflow").mkdir()
    shutil.copy2(ROOT / "deploy" / "airflow" / "kgcurate_dag.py", dist / "airflow" / "kgcurate_dag.py")
    shutil.copy2(ROOT / "deploy" / "pipeline.py", dist / "airflow" / "pipeline.py")
    shutil.copy2(ROOT / "deploy" / "stages.json", dist / "airflow" / "stages.json")
    missing = [s.job_script for s in STAGES if not (dist / s.job_script).exists()]
    if missing:
        raise SystemExit(f"kgcurate: error: job scripts missing for stages: {', '.join(missing)}")
    manifest["stages"] = sorted(s.name for s in STAGES)
    (dist / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def project_env_missing(script: str = "deploy/build.py", target: str = "dist") -> str | None:
    """Why this interpreter cannot build (the build imports kgcurate and pyspark): a system ``python``
    outside the project's venv failed with a ModuleNotFoundError trace. None when it can."""
    import importlib.util

    for module in ("kgcurate", "pyspark"):
        if importlib.util.find_spec(module) is None:
            return (f"{sys.executable} has no {module} (not the project's environment): "
                    f"run `make {target}`, or `.venv/bin/python {script}` after `make setup`")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=".venv/bin/python deploy/build.py", description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=DIST, help="output folder (default deploy/dist)")
    parser.add_argument("--no-wheel", action="store_true", help="skip the wheel (zip, jobs and conf only)")
    parser.add_argument("--no-native", action="store_true",
                        help="skip the compiled WAT parser's wheel (the image and cluster use the pure-Python one)")
    args = parser.parse_args(argv)
    missing = project_env_missing()
    if missing:
        print(f"deploy/build.py: {missing}", file=sys.stderr)
        return 2
    manifest = build(args.dist, wheel=not args.no_wheel, native=not args.no_native)
    wheels = " ".join(w for w in (manifest.get("wheel", "no wheel"), manifest.get("native_wheel")) if w)
    print(f"built {args.dist}: {wheels}, kgcurate.zip ({manifest['zip_files']} files), "
          f"{len(manifest['stages'])} stages, packages {','.join(manifest['packages'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
