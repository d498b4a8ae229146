#!/usr/bin/env bash
# The docker-compose `job` service: generate the demo sample, put it in the bucket, run the whole
# pipeline against s3a:// on the Spark master; with SAMPLE_IMAGE_BASE_URL, the sample's image links
# point at that server (its files written to SAMPLE_IMAGES) and the newest curated run is downloaded
# into s3://BUCKET/shards (the `train` service trains on them). tests/test_compose.py runs this same
# script against a moto S3 server, a loopback HTTP server and local[2] Spark, so every command here is
# exercised without Docker.
#
# Environment: KGCURATE_HOME (repo or /opt/kgcurate), KGCURATE_BUCKET (default kgcurate),
# KGCURATE_S3_ENDPOINT + AWS_* (default chain), KGCURATE_SUBMIT_OPTS (e.g. --master spark://...),
# SAMPLE_FILES / SAMPLE_RECORDS (sample size), KGCURATE_SAMPLES (local scratch folder),
# SAMPLE_IMAGE_BASE_URL / SAMPLE_IMAGES (the image server and the folder it serves),
# KGCURATE_REPORTS (the report's folder; default deploy/compose.yaml's report.out, the `reports` volume).
# Another KGCURATE_BUCKET is used throughout this job (the config's s3a://kgcurate/ paths are rewritten);
# docker-compose.yml's minio-init and train services name the bucket too: change them with it.
set -euo pipefail
home="${KGCURATE_HOME:-/opt/kgcurate}"
bucket="${KGCURATE_BUCKET:-kgcurate}"
samples="${KGCURATE_SAMPLES:-/tmp/kgcurate-samples}"
python="${KGCURATE_PYTHON:-python}"
cd "$home"

images_url="${SAMPLE_IMAGE_BASE_URL:-}"
image_args=()
if [[ -n "$images_url" ]]; then
  image_args=(--image-base-url "$images_url" --images "${SAMPLE_IMAGES:?set SAMPLE_IMAGES, the folder $images_url serves}")
fi

"$python" -m kgcurate.cli make-sample --out "$samples" --files "${SAMPLE_FILES:-4}" --records "${SAMPLE_RECORDS:-400}" \
  "${image_args[@]}"
"$python" deploy/s3_stage.py "$samples" "s3://$bucket/samples/"
report_args=()
if [[ -n "${KGCURATE_REPORTS:-}" ]]; then
  report_args=(--out "$KGCURATE_REPORTS")
fi
# The config names the sample's listing in the bucket: the one this job uploaded to.
config="$(mktemp -t kgcurate-compose.XXXXXX.yaml)"
trap 'rm -f "$config"' EXIT
sed "s#s3a://kgcurate/#s3a://$bucket/#g" deploy/compose.yaml > "$config"
deploy/spark-submit.sh run --config "$config" --lake "s3a://$bucket/lake" "${report_args[@]}" "$@"
if [[ -n "$images_url" ]]; then
  # The image server is on the compose network (a private address): allowed explicitly, for this demo only.
  deploy/spark-submit.sh download --config "$config" --lake "s3a://$bucket/lake" \
    --out "s3://$bucket/shards" --allow-private
fi
echo "kgcurate demo done: lake at s3a://$bucket/lake"
