#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for the sweep tests that submit job arrays
# (tests/sweep_slurm.rs): Debian's slurm-wlm and munge, installed if missing, configured for this
# host's cores and memory, and started. As root, or as a user with sudo. Running it again while
# the cluster is up changes nothing; `stop` ends the daemons it started.
#
#   scripts/slurm-cluster.sh          # install, configure, start; prints sinfo
#   scripts/slurm-cluster.sh stop
set -euo pipefail
S=$(command -v sudo || true)
[ "$(id -u)" = 0 ] && S=
STATE=/tmp/toylens-slurm
mkdir -p "$STATE"

if [ "${1:-}" = stop ]; then
    for daemon in slurmd slurmctld munged; do
        [ -f "$STATE/$daemon.pid" ] || continue
        pid=$(cat "$STATE/$daemon.pid")
        $S kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        $S rm -f "$STATE/$daemon.pid"
    done
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    $S apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $S apt-get install -y -qq --no-install-recommends \
        slurm-wlm munge >/dev/null
fi

# Already up (started by this script or by anything else): nothing to do.
if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    sinfo
    exit 0
fi

host=$(hostname -s)
cpus=$(nproc)
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
$S mkdir -p /etc/slurm /var/spool/toylens-slurm/ctld /var/spool/toylens-slurm/d /run/munge /etc/munge
# No accounting daemon: `toylens sweep status` reads squeue, and sacct where a cluster has it.
$S tee /etc/slurm/slurm.conf >/dev/null <<CONF
ClusterName=toylens
SlurmctldHost=$host
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmdSpoolDir=/var/spool/toylens-slurm/d
StateSaveLocation=/var/spool/toylens-slurm/ctld
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmUser=root
AuthType=auth/munge
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
[ -s /etc/munge/munge.key ] || $S dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
$S chown -R munge:munge /etc/munge /run/munge
$S chmod 400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    $S runuser -u munge -- munged --pid-file "$STATE/munged.pid" 2>/dev/null \
        || $S runuser -u munge -- munged
    sleep 1
fi
pgrep -x slurmctld >/dev/null || $S slurmctld || { tail -5 "$STATE/slurmctld.log"; exit 1; }
pgrep -x slurmd >/dev/null || $S slurmd || { tail -5 "$STATE/slurmd.log"; exit 1; }
for _ in $(seq 30); do
    sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && break
    sleep 1
done
sinfo
