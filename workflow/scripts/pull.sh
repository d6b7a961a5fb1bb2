#!/usr/bin/env bash
# Fetch data, checkpoints and results from the DVC remote, then tell
# Snakemake they are up to date.
#
# `dvc pull` writes files with new modification times, in no particular
# order, so Snakemake's mtime check would rerun everything. Once `dvc status`
# confirms that every pulled output matches dvc.lock (same content as the
# pusher's, for the committed params and code), `snakemake --touch --forceall`
# marks the whole DAG up to date and records its params/code provenance, so a
# later parameter change still reruns exactly what depends on it.
set -euo pipefail
dvc pull "$@"
if ! dvc status --quiet; then
  dvc status
  echo "pull.sh: the workspace differs from dvc.lock; not marking outputs up to date" >&2
  exit 1
fi
snakemake --cores 1 --touch --forceall --quiet
