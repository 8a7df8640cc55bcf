#!/usr/bin/env bash
# Regenerates results/reference/<experiment>/ on this machine: the sweep, then its report.
#   bash results/reference/regenerate.sh                 # every experiment below (about two and a half hours)
#   bash results/reference/regenerate.sh scale           # one experiment
# Run it on an otherwise idle machine: the step times are the point. The sweep's per-run records go
# to a temporary dir; only the report, figures and tables are kept here.
set -euo pipefail
cd "$(dirname "$0")/../.."
sweeps=$(mktemp -d)
for experiment in "${@:-freeze_matrix scale transfer digits mnist1d modular digits_tuned modular_tuned profile}"; do
  for name in $experiment; do
    harness -m experiment="$name" tracker=disabled results_dir="$sweeps"
    rm -rf "results/reference/$name"
    harness report "$sweeps/$name"/* --out "results/reference/$name"
  done
done
