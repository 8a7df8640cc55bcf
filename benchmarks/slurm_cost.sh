#!/usr/bin/env bash
# What a Slurm job costs: the same 8 runs (4 learning rates x 2 seeds, the seed study, W&B offline)
# as 8 jobs and as 1 vectorized job, under the basic launcher and under hydra/launcher=slurm.
#
#   bash benchmarks/slurm_cost.sh [rounds]      # needs a Slurm partition "debug" (tests/slurm/start.sh)
#
# Prints, per way and round, the wall time of the whole command and, for Slurm, each job's Elapsed
# from Slurm's accounting (start to end of the job on the node, queueing excluded).
set -euo pipefail
rounds=${1:-2}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
python=${PYTHON:-python}
slurm=(hydra/launcher=slurm hydra.launcher.partition=debug hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=2)
jobs=(-m 'optimizer.lr=1e-3,3e-3,1e-2,3e-2' 'task.seed=1,2')
vectorized=(-m 'vectorize.lr=[1e-3,3e-3,1e-2,3e-2]' 'vectorize.seed=[1,2]')

run() {  # run LABEL ARGS...: one command, its wall time, and its Slurm jobs' Elapsed
  local label=$1 start end sweep
  shift
  start=$(date +%s.%N)
  "$python" -m harness "$@" results_dir="$out" name="$label" tracker=offline report=false >/dev/null 2>&1 || true
  end=$(date +%s.%N)
  sweep=$(ls -d "$out/$label"/* | tail -1)
  local elapsed=""
  if [ -d "$sweep/.submitit" ]; then
    ids=$(ls "$sweep/.submitit" | grep -E '^[0-9]+_[0-9]+$|^[0-9]+$' | sed 's/_.*//' | sort -u | sed 's/^/-j/')
    # shellcheck disable=SC2086
    elapsed=$(sacct -X -n -P -o Elapsed $ids | tr '\n' ' ')
  fi
  printf '%-22s wall %6.1f s   runs %2d   slurm job elapsed: %s\n' "$label" "$(echo "$end - $start" | bc)" \
    "$(find "$sweep" -name result.json | wc -l)" "${elapsed:--}"
}

echo "$(date -u +%Y-%m-%dT%H:%MZ) $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
for round in $(seq "$rounds"); do
  run basic_8_jobs "${jobs[@]}"
  run slurm_8_jobs "${jobs[@]}" "${slurm[@]}"
  run basic_1_job_8_points "${vectorized[@]}"
  run slurm_1_job_8_points "${vectorized[@]}" "${slurm[@]}"
done
