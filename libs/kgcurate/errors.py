"""User-facing errors: one line that says what, where, and what to do."""

from __future__ import annotations

import contextlib
import re
from urllib.parse import urlsplit


class UserError(Exception):
    """Bad usage or unreadable input. The CLI prints ``kgcurate: error: <message>`` and exits 2."""


class ConcurrentRunError(UserError):
    """Another run changed the same table at the same time; this one was rolled back."""


# JVM exceptions that are the user's environment, not our bug: (pattern in the Java message, cause).
_IO_CAUSES = (
    (re.compile(r"AccessDeniedException: (\S+)"), "permission denied"),
    (re.compile(r"(?:Mkdirs failed to create|Cannot create directory) (\S+)"), "cannot create the directory"),
    (re.compile(r"ParentNotDirectoryException: [^\n]*?(/\S+)"), "a parent is a file, not a directory"),
    (re.compile(r"FileAlreadyExistsException: [^\n]*?(/\S+)"), "a file is in the way of a directory"),
    (re.compile(r"(\S+) \(Permission denied\)"), "permission denied"),
    (re.compile(r"(\S+) \(Not a directory\)"), "a parent is a file, not a directory"),
    (re.compile(r"(\S+) \(Read-only file system\)"), "read-only file system"),
)


# No credentials for S3: boto3's (in the driver, or in a Python worker's trace) and Hadoop s3a's, which
# comes wrapped in an AccessDeniedException that would otherwise read as a permission problem.
_NO_CREDENTIALS = re.compile(r"NoAuthWithAWSException|NoCredentialsError|Unable to locate credentials")


# A host or bucket that is not there or not answering: Hadoop's (hdfs: UnknownHostException, "Call From a to
# b:8020 failed on connection exception: java.net.ConnectException"), s3a's (the SDK's cause re-thrown as
# UnknownHostException / ConnectException, a missing bucket as UnknownStoreException "Bucket b does not exist",
# the service's NoSuchBucket). A refused connection is the lake's only when it names the lake's host: Spark's own
# connections between driver and executors fail with the same exception and are no usage error.
_UNKNOWN = re.compile(r"\b(?:[\w.]+\.)?(?:UnknownHostException|UnknownStoreException|NoSuchBucket(?:Exception)?)\b"
                      r"[^\n]*")
_REFUSED = re.compile(r"\b(?:[\w.]+\.)?(?:ConnectException|HttpHostConnectException|NoRouteToHostException)\b[^\n]*")


def _names_lake(text: str, lake: str | None) -> bool:
    """Whether ``text`` names the lake's host (hdfs://nn:8020) or bucket (s3a://bucket/...)."""
    parts = urlsplit(lake) if lake and "://" in lake else None
    if parts is None or not parts.hostname:
        return False
    host = re.escape(parts.hostname)
    if parts.scheme in ("s3a", "s3", "s3n"):
        return re.search(rf"s3[an]?://{host}(?![\w.-])|(?<![\w.-]){host}\.s3[\w.-]*", text, re.I) is not None
    return re.search(rf"(?<![\w.-]){host}(?![\w-])", text, re.I) is not None


def _unreachable(text: str, lake: str | None) -> UserError | None:
    names_lake = _names_lake(text, lake)
    m = _UNKNOWN.search(text) or (_REFUSED.search(text) if names_lake else None)
    if m is None:
        return None
    detail = m.group(0).strip().rstrip(".")
    detail = detail if len(detail) <= 200 else detail[:197] + "..."
    if names_lake:
        return UserError(f"lake {lake} is not reachable ({detail}): check --lake (host, port or bucket) and the "
                         "network, then re-run")
    return UserError(f"a host or bucket is not reachable ({detail}): check --lake and the input paths, then re-run")


def io_error_from_jvm(exc: BaseException, lake: str | None = None) -> UserError | None:
    """A Py4J/JVM failure whose root is an I/O problem with a path, missing S3 credentials, or a lake (host,
    bucket) that cannot be reached, as one UserError line; else None."""
    text = str(exc)
    java = getattr(exc, "java_exception", None)
    if java is not None:
        with contextlib.suppress(Exception):  # the gateway may be gone
            text += "\n" + str(java.toString())
    if _NO_CREDENTIALS.search(text):
        return UserError("no AWS credentials for S3: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
                         "AWS_PROFILE, or run with an instance role) and re-run")
    unreachable = _unreachable(text, lake)
    if unreachable is not None:
        return unreachable
    for pattern, cause in _IO_CAUSES:
        m = pattern.search(text)
        if m:
            path = m.group(1).rstrip(".,;:)")
            return UserError(f"cannot write {path}: {cause} (check the lake path and its permissions)")
    return None


# The last line of a Python traceback: "module.Error: message" at the start of a line.
_PY_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b.*)$", re.M)


def root_cause(exc: BaseException) -> str:
    """The innermost ``Caused by:`` of a JVM failure (``spark.sql.shuffle.partitions should be int, but was
    abc`` under Spark's ``Error while instantiating ...SessionStateBuilder``), else :func:`first_line`."""
    causes = [ln.strip()[len("Caused by:"):].strip() for ln in str(exc).splitlines()
              if ln.strip().startswith("Caused by:")]
    return causes[-1] if causes else first_line(exc)


def first_line(exc: BaseException) -> str:
    """The line worth showing: for a Py4J error the Java exception and its message, not the gateway's
    'An error occurred while calling o131.parquet'; for a Python worker's failure (PySpark's
    'An exception was thrown from the Python worker. Please see the stack trace below.') the
    worker's own error line, the last of its traceback."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if lines and lines[0].startswith("An error occurred while calling"):
        lines = [ln.lstrip(": ") for ln in lines[1:]] or lines
    if "Traceback (most recent call last)" in text:
        tail = text[text.rindex("Traceback (most recent call last)"):]
        found = _PY_ERROR_LINE.findall(tail)
        if found:
            return found[-1].strip()
    return lines[0] if lines else ""
