"""Upload a local folder to S3 (``python deploy/s3_stage.py LOCAL_DIR s3://bucket/prefix/``).

Why: the docker-compose job generates the demo sample on local disk and must put it where the
pipeline reads it (MinIO), and the tests do the same against moto. boto3 with the default
credential chain and ``KGCURATE_S3_ENDPOINT``, like everything else; creates the bucket if absent
(MinIO's ``mc`` init service normally has). Re-running overwrites the same keys (idempotent). An
S3 error is one line and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError


def upload(local: Path, dest: str) -> int:
    from kgcurate import s3

    _, bucket, prefix = s3.split_url(dest)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    client = s3.client()
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:  # only an absent bucket is created; 403 (wrong keys) and the like are errors
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
            raise
        client.create_bucket(Bucket=bucket)
    count = 0
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        key = prefix + path.relative_to(local).as_posix()
        client.upload_file(str(path), bucket, key)
        count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python deploy/s3_stage.py", description=__doc__.splitlines()[0])
    parser.add_argument("local", type=Path)
    parser.add_argument("dest", help="s3://bucket/prefix/")
    args = parser.parse_args(argv)
    if not args.local.is_dir():
        print(f"kgcurate: error: {args.local} is not a directory", file=sys.stderr)
        return 2
    where = os.environ.get("KGCURATE_S3_ENDPOINT", "AWS")
    try:
        n = upload(args.local, args.dest)
    except (BotoCoreError, ClientError, S3UploadFailedError) as exc:  # one line: what, where, what to do
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"kgcurate: error: cannot upload {args.local} to {args.dest} (endpoint {where}): {why}: check "
              "KGCURATE_S3_ENDPOINT, the credentials and that the bucket is yours", file=sys.stderr)
        return 2
    print(f"uploaded {n} files from {args.local} to {args.dest} (endpoint {where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
