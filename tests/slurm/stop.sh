#!/usr/bin/env bash
# Stops the daemons tests/slurm/start.sh started, by the PIDs it recorded, newest first,
# and removes their pid files (also stale ones, whose process is gone). Nothing else is
# signalled: a daemon this script did not start is left alone. Safe to call twice.
#
#   bash tests/slurm/stop.sh                    # every daemon start.sh recorded
#   bash tests/slurm/stop.sh slurmd slurmctld   # only these (names as start.sh records them)
set -uo pipefail

STATE=${HARNESS_SLURM_STATE:-/run/harness-slurm}
PIDS=$STATE/pids

[ -d "$PIDS" ] || { echo "slurm-cluster: nothing to stop ($PIDS does not exist)" >&2; exit 0; }

status=0
for name in slurmd slurmctld slurmdbd mariadbd munged; do
  if [ "$#" -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then continue; fi
  file=$PIDS/$name.pid
  [ -e "$file" ] || continue
  pid=$(cat "$file")
  # The recorded PID is signalled only if it is still the daemon we started (PIDs are reused).
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$name" ]; then
    kill -TERM "$pid"
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "slurm-cluster: $name (pid $pid) ignored SIGTERM for 15 s: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null
      sleep 0.5
    fi
    if kill -0 "$pid" 2>/dev/null; then
      echo "slurm-cluster: could not stop $name (pid $pid)" >&2
      status=1
      continue
    fi
    echo "slurm-cluster: stopped $name (pid $pid)" >&2
  else
    echo "slurm-cluster: $name was not running (stale pid file removed)" >&2
  fi
  rm -f "$file"
done
# The daemons' own pid files go with them.
for name in slurmd slurmctld slurmdbd; do [ -e "$PIDS/$name.pid" ] || rm -f "$STATE/$name.own.pid"; done
[ -e "$PIDS/mariadbd.pid" ] || rm -f /run/mysqld/harness.pid
exit "$status"
