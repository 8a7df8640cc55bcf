#!/usr/bin/env bash
# Regenerates results/reference/: the freeze_matrix experiment on this machine, then its report.
#   bash results/reference/regenerate.sh
# The sweep's per-run records go to a temporary dir; only the report, figures and tables are kept here.
set -euo pipefail
cd "$(dirname "$0")/../.."
sweeps=$(mktemp -d)
harness -m experiment=freeze_matrix tracker=disabled results_dir="$sweeps"
harness report "$sweeps"/freeze_matrix/* --out results/reference
