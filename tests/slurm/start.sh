#!/usr/bin/env bash
# Starts a single-node Slurm cluster on this machine, for tests/test_slurm.py and .ci/run.
#
#   sudo bash tests/slurm/start.sh     # idempotent: a second call checks the daemons and returns
#   sudo bash tests/slurm/stop.sh      # stops, by PID, the daemons this script started
#
# With HARNESS_SLURM_STARTED=<file>, the names of the daemons this call started are appended to
# <file>, so a caller (.ci/run) can stop exactly those: `stop.sh $(cat <file>)`.
#
# Debian/Ubuntu, as root. Installs the distribution's packages if they are missing (munge,
# slurmctld, slurmd, slurm-client, slurmdbd, mariadb-server). The init system is not used
# (in containers policy-rc.d forbids it): each daemon is started here in the foreground of
# its own session, and its PID is written to $HARNESS_SLURM_STATE/pids/<name>.pid.
# All traffic stays on 127.0.0.1: slurmctld, slurmd and slurmdbd listen there, MariaDB has
# networking off (slurmdbd reaches it through its unix socket).
#
# Accounting (slurmdbd + MariaDB) is what lets submitit read a finished job's state
# (COMPLETED / FAILED / TIMEOUT / OUT_OF_MEMORY / CANCELLED); without it sacct says nothing.
# Memory limits are enforced only with the cgroup plugins, so they are used when the
# cgroup v1 memory controller is mounted (the cgroup/v2 plugin of Slurm 22.05 wants systemd);
# otherwise the cluster runs with proctrack/linuxproc and no memory enforcement, and says so.
set -euo pipefail

STATE=${HARNESS_SLURM_STATE:-/run/harness-slurm}
CLUSTER=harness
MARKER="# written by nnx-freeze-bench tests/slurm/start.sh"
PIDS=$STATE/pids
LOGS=$STATE/log

say() { echo "slurm-cluster: $*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages, writes /etc/slurm and starts daemons)"

packages=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get to install them"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

host=$(hostname -s)
mkdir -p "$PIDS" "$LOGS" "$STATE/ctld" "$STATE/d"
chmod 755 "$STATE"

alive() {  # alive NAME: the daemon this script started under NAME is still running
  local pid
  pid=$(cat "$PIDS/$1.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$2" ]
}

launch() {  # launch NAME COMM CMD...: start CMD in the foreground of its own session, record its PID
  local name=$1 comm=$2
  shift 2
  if alive "$name" "$comm"; then
    return 0
  fi
  rm -f "$PIDS/$name.pid"
  # Not a process-group leader (no job control in a script), so setsid execs in place: $! is the daemon.
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
  if [ -n "${HARNESS_SLURM_STARTED:-}" ]; then echo "$name" >>"$HARNESS_SLURM_STARTED"; fi
  say "started $name (pid $!)"
}

stop_one() {  # stop_one NAME COMM: SIGTERM the recorded PID, wait for it to exit
  local pid
  if alive "$1" "$2"; then
    pid=$(cat "$PIDS/$1.pid")
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$PIDS/$1.pid"
}

wait_for() {  # wait_for WHAT SECONDS CMD...: poll CMD until it succeeds
  local what=$1 seconds=$2
  shift 2
  for _ in $(seq $((seconds * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what did not come up in ${seconds}s; logs in $LOGS"
}

# --- configuration ----------------------------------------------------------------------------
if [ -e /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
  enforce_memory=yes
  proctrack=proctrack/cgroup task=task/cgroup select_params=CR_Core_Memory gather=jobacct_gather/cgroup
else
  enforce_memory=no
  proctrack=proctrack/linuxproc task=task/none select_params=CR_Core gather=jobacct_gather/linux
  say "no cgroup v1 memory controller: memory limits will not be enforced on this cluster"
fi
echo "$enforce_memory" >"$STATE/enforce_memory"
# A little under the machine's memory: slurmd drains a node that has less than RealMemory.
real_memory=$(free -m | awk '/^Mem:/ {print int($2 * 0.95)}')

write_if_changed() {  # write_if_changed PATH MODE < content; returns 0 when the file changed
  local new
  new=$(cat)
  if [ -e "$1" ] && ! grep -qF "$MARKER" "$1"; then
    die "$1 exists and was not written by this script (a real cluster's?): not touching it"
  fi
  if [ -e "$1" ] && [ "$(cat "$1")" = "$new" ]; then
    return 1
  fi
  printf '%s\n' "$new" >"$1"
  chmod "$2" "$1"
  return 0
}

mkdir -p /etc/slurm
slurm_conf_changed=no
write_if_changed /etc/slurm/slurm.conf 644 <<EOF && slurm_conf_changed=yes
$MARKER
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=$proctrack
TaskPlugin=$task
SelectType=select/cons_tres
SelectTypeParameters=$select_params
JobAcctGatherType=$gather
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobCompType=jobcomp/none
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.own.pid
SlurmdPidFile=$STATE/slurmd.own.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# Short kill grace and prompt time-limit checks: a killed job is seen within seconds.
KillWait=5
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$real_memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
write_if_changed /etc/slurm/cgroup.conf 644 <<EOF && slurm_conf_changed=yes || true
$MARKER
CgroupPlugin=cgroup/v1
ConstrainCores=no
ConstrainRAMSpace=yes
AllowedRAMSpace=100
ConstrainSwapSpace=no
EOF
write_if_changed /etc/slurm/slurmdbd.conf 600 <<EOF || true
$MARKER
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
PidFile=$STATE/slurmdbd.own.pid
LogFile=$LOGS/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF

# --- daemons, in dependency order -------------------------------------------------------------
mkdir -p /run/munge && chown munge:munge /run/munge
launch munged munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground
wait_for munged 10 bash -c 'munge -n | unmunge'

mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
launch mariadbd mariadbd /usr/sbin/mariadbd --user=mysql --skip-networking --socket=/run/mysqld/mysqld.sock \
  --pid-file=/run/mysqld/harness.pid
wait_for mariadbd 30 mariadb-admin --socket=/run/mysqld/mysqld.sock ping

launch slurmdbd slurmdbd /usr/sbin/slurmdbd -D
wait_for slurmdbd 30 sacctmgr -n show cluster
sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true  # "already exists" on a second call

if [ "$slurm_conf_changed" = yes ]; then
  # slurmd keeps the old node description until restarted, not only slurmctld.
  stop_one slurmd slurmd
  stop_one slurmctld slurmctld
fi
launch slurmctld slurmctld /usr/sbin/slurmctld -D -i
wait_for slurmctld 30 scontrol ping
launch slurmd slurmd /usr/sbin/slurmd -D
node_ready() { sinfo -h -n "$host" -o %T | grep -qE '^(idle|mixed|allocated)'; }
wait_for "slurmd (node $host idle)" 30 node_ready
say "up: partition debug, node $host ($(nproc) CPUs, ${real_memory} MB, memory enforced: $enforce_memory), state in $STATE"
