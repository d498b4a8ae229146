"""User-facing errors: one line that says what, where, and what to do."""

from __future__ import annotations

import contextlib
import re


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


def io_error_from_jvm(exc: BaseException) -> UserError | None:
    """A Py4J/JVM failure whose root is an I/O problem with a path, or missing S3 credentials, as one
    UserError line; else None."""
    text = str(exc)
    java = getattr(exc, "java_exception", None)
    if java is not None:
        with contextlib.suppress(Exception):  # the gateway may be gone
            text += "\n" + str(java.toString())
    if _NO_CREDENTIALS.search(text):
        return UserError("no AWS credentials for S3: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
                         "AWS_PROFILE, or run with an instance role) and re-run")
    for pattern, cause in _IO_CAUSES:
        m = pattern.search(text)
        if m:
            path = m.group(1).rstrip(".,;:)")
            return UserError(f"cannot write {path}: {cause} (check the lake path and its permissions)")
    return None


# The last line of a Python traceback: "module.Error: message" at the start of a line.
_PY_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b.*)$", re.M)


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
