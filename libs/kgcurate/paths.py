"""Local paths as a shell would read them: a config's ``~/x`` is the home folder, not a ``./~`` folder."""

from __future__ import annotations

import os


def is_uri(path: str) -> bool:
    """A Hadoop/S3 URI (``s3a://``, ``hdfs://``, ``file:``): passed on as written."""
    return "://" in path or path.startswith("file:")


def expand_home(path: str) -> str:
    """``~`` / ``~user`` at the start of a local path expanded (YAML and ``--x=~/y`` get no shell expansion,
    so ``lake: ~/x`` made a literal ``./~/x`` folder, one ``rm -rf ~`` away from the home folder); URIs and
    other paths unchanged."""
    return path if is_uri(path) else os.path.expanduser(path)
