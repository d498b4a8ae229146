#!/usr/bin/env bash
# The docker-compose `job` service: generate the demo sample, put it in the bucket, run the whole
# pipeline against s3a:// on the Spark master. tests/test_compose.py runs this same script
# against a moto S3 server and local[2] Spark, so every command here is exercised without Docker.
#
# Environment: KGCURATE_HOME (repo or /opt/kgcurate), KGCURATE_BUCKET (default kgcurate),
# KGCURATE_S3_ENDPOINT + AWS_* (default chain), KGCURATE_SUBMIT_OPTS (e.g. --master spark://...),
# SAMPLE_FILES / SAMPLE_RECORDS (sample size), KGCURATE_SAMPLES (local scratch folder).
set -euo pipefail
home="${KGCURATE_HOME:-/opt/kgcurate}"
bucket="${KGCURATE_BUCKET:-kgcurate}"
samples="${KGCURATE_SAMPLES:-/tmp/kgcurate-samples}"
python="${KGCURATE_PYTHON:-python}"
cd "$home"

"$python" -m kgcurate.cli make-sample --out "$samples" --files "${SAMPLE_FILES:-4}" --records "${SAMPLE_RECORDS:-400}"
"$python" deploy/s3_stage.py "$samples" "s3://$bucket/samples/"
deploy/spark-submit.sh run --config deploy/compose.yaml --lake "s3a://$bucket/lake" "$@"
echo "kgcurate demo done: lake at s3a://$bucket/lake"
