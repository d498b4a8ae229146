#!/usr/bin/env bash
# deploy/spark-submit.sh STAGE [ARGS...]: run one kgcurate stage with spark-submit.
#
# Uses what `make dist` (deploy/build.py) wrote to deploy/dist (or $KGCURATE_DIST): the job script for
# STAGE (stages.tsv), kgcurate.zip for --py-files, the Delta settings (spark-defaults.conf) and
# the Maven coordinates (packages.txt). ARGS are the stage's own, exactly as `kgcurate STAGE ARGS`.
#
# Environment:
#   SPARK_SUBMIT          spark-submit to run (default: spark-submit on PATH, else $SPARK_HOME/bin)
#   KGCURATE_SUBMIT_OPTS  extra spark-submit options, e.g. "--master yarn --deploy-mode cluster"
#   KGCURATE_JARS         comma-separated local jars to use instead of --packages (offline clusters,
#                         or an image with the jars baked in: set it to "none" to pass neither)
#   KGCURATE_DRY_RUN=1    print the command instead of running it
# Credentials come from the default AWS chain of wherever the driver/executors run; never pass
# keys on this command line (they would show in `ps` and in Spark's UI).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dist="${KGCURATE_DIST:-$here/dist}"

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  echo "usage: deploy/spark-submit.sh STAGE [ARGS...]   (stages: see $dist/stages.tsv)" >&2
  exit 2
fi
stage="$1"; shift

if [[ ! -f "$dist/stages.tsv" ]]; then
  echo "kgcurate: error: $dist/stages.tsv not found; run 'make dist' (deploy/build.py) first" >&2
  exit 2
fi
script="$(awk -F'\t' -v s="$stage" '$1 == s { print $2 }' "$dist/stages.tsv")"
if [[ -z "$script" ]]; then
  echo "kgcurate: error: unknown stage '$stage' (one of: $(cut -f1 "$dist/stages.tsv" | tr '\n' ' '))" >&2
  exit 2
fi

submit="${SPARK_SUBMIT:-}"
if [[ -z "$submit" ]]; then
  if command -v spark-submit >/dev/null 2>&1; then submit="spark-submit"
  elif [[ -n "${SPARK_HOME:-}" ]]; then submit="$SPARK_HOME/bin/spark-submit"
  else echo "kgcurate: error: spark-submit not found (set SPARK_SUBMIT or SPARK_HOME)" >&2; exit 2
  fi
fi

cmd=("$submit" --name "kgcurate-$stage")
# shellcheck disable=SC2206 - word splitting of user-given options is intended
[[ -n "${KGCURATE_SUBMIT_OPTS:-}" ]] && cmd+=(${KGCURATE_SUBMIT_OPTS})
jars="${KGCURATE_JARS:-}"
if [[ -z "$jars" ]]; then
  cmd+=(--packages "$(tr -d '\n' < "$dist/packages.txt")")
elif [[ "$jars" != "none" ]]; then
  cmd+=(--jars "$jars")
fi
while read -r key value; do
  [[ -n "$key" ]] && cmd+=(--conf "$key=$value")
done < "$dist/spark-defaults.conf"
cmd+=(--py-files "$dist/kgcurate.zip" "$dist/$script" "$@")

if [[ "${KGCURATE_DRY_RUN:-0}" == "1" ]]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
exec "${cmd[@]}"
