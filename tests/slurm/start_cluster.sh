#!/usr/bin/env bash
# A real single-node SLURM on this machine for tests/test_slurm.py (and CI): controller + one compute node with
# two fake GPUs + accounting, from Debian's packages, without systemd. Run as root:
#
#   tests/slurm/start_cluster.sh    # installs what is missing, starts the daemons, waits for the node to be idle
#   tests/slurm/stop_cluster.sh     # stops exactly the daemons this script started (by PID), removes its config
#
# Accounting: slurmdbd + MariaDB, as on a real cluster. The profile names an account, and the plugin checks it with
# sacctmgr before submitting (without slurmdbd that check fails and the profile could not run unchanged); the
# tests read every job back from sacct (state, comment = rule + wildcards, requested memory and GPUs). Job status:
# `slurm-status-command: squeue` (set in the profile for every cluster): plugin 2.8.0 takes sacct's "CANCELLED by
# <uid>" (any scancel) for a running job and waits forever, while squeue reports CANCELLED. The accounting's cost:
# ~20 s more apt on a fresh machine and ~2 s more start-up.
#
# Names: partition `gpu` and account `ctrlsparse`, the placeholders of profiles/slurm/config.v8+.yaml, so the
# profile runs unchanged. The GPUs are fake (gres.conf File=/dev/null, /dev/zero): SLURM schedules and counts
# them and sets CUDA_VISIBLE_DEVICES; train jobs on them use `device: auto` (config resources) and run on the CPU.
# Everything lives in $CTRLSPARSE_SLURM_DIR (default /tmp/ctrlsparse-slurm) except /etc/slurm/*.conf (srun inside
# jobs only finds the default path). A slurm.conf this script did not write is never touched.
set -euo pipefail

D=${CTRLSPARSE_SLURM_DIR:-/tmp/ctrlsparse-slurm}
PARTITION=gpu
ACCOUNT=ctrlsparse
CLUSTER=ctrlsparse-test
MARKER="# ctrlsparse test cluster: written by tests/slurm/start_cluster.sh"
H=$(hostname -s)

die() { echo "start_cluster.sh: $*" >&2; exit 1; }
cannot() { echo "start_cluster.sh: $*" >&2; exit 3; }  # exit 3: this machine cannot host the test cluster

[ "$(id -u)" = 0 ] || cannot "must run as root (it installs packages and writes /etc/slurm); run it with sudo"
for conf in /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf /etc/slurm/gres.conf; do
    if [ -e "$conf" ] && ! grep -qF "$MARKER" "$conf"; then
        cannot "$conf exists and was not written by this script: this machine has its own SLURM; use it instead"
    fi
done
if [ -s "$D/pids/slurmctld.pid" ] && kill -0 "$(cat "$D/pids/slurmctld.pid")" 2>/dev/null && scontrol ping >/dev/null 2>&1; then
    echo "start_cluster.sh: already running (pids in $D/pids)"
    exit 0
fi

# 1. Packages (13-35 s on a fresh machine; nothing when present).
missing=()
for pair in slurmctld:slurmctld slurmd:slurmd munged:munge sbatch:slurm-client slurmdbd:slurmdbd mariadbd:mariadb-server; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || cannot "needs ${missing[*]} (Debian packages) and there is no apt-get to install them"
    echo "start_cluster.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [ ! -e /usr/sbin/policy-rc.d ]; then  # keep apt from starting munge/MariaDB as services we would not stop
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"${TMPDIR:-/tmp}/ctrlsparse-slurm-apt.log" 2>&1 || {
        apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" \
            >"${TMPDIR:-/tmp}/ctrlsparse-slurm-apt.log" 2>&1
    } || die "apt-get install ${missing[*]} failed; see ${TMPDIR:-/tmp}/ctrlsparse-slurm-apt.log"
fi

# 2. Fresh state (job ids, queues and, below, the accounting database of an earlier run are dropped), config files.
rm -rf "$D/state" "$D/spool"
mkdir -p "$D/state" "$D/spool" "$D/log" "$D/pids" /etc/slurm
: >"$D/pids/started"  # the daemons this run started, in start order; stop_cluster.sh stops only these
read -r -a node <<<"$(slurmd -C | head -1)"  # NodeName=... CPUs=... Boards=... RealMemory=...
memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
cat >/etc/slurm/slurm.conf <<EOF
$MARKER
ClusterName=$CLUSTER
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# no cgroups or systemd needed:
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
AccountingStoreFlags=job_comment
AccountingStorageTRES=gres/gpu
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
ReturnToService=2
KillWait=10
GresTypes=gpu
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/pids/slurmctld.pid
SlurmdPidFile=$D/pids/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
${node[*]:0:6} RealMemory=$memory NodeAddr=127.0.0.1 Gres=gpu:fake:2 State=UNKNOWN
PartitionName=$PARTITION Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOF
cat >/etc/slurm/gres.conf <<EOF
$MARKER
AutoDetect=off
NodeName=$H Name=gpu Type=fake File=/dev/null
NodeName=$H Name=gpu Type=fake File=/dev/zero
EOF
install -m 600 /dev/null /etc/slurm/slurmdbd.conf
cat >/etc/slurm/slurmdbd.conf <<EOF
$MARKER
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$D/log/slurmdbd.log
PidFile=$D/pids/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=ctrlsparse_slurm_acct
StorageUser=ctrlsparse_slurm
StoragePass=ctrlsparse_slurm
EOF

wait_for() {  # wait_for SECONDS WHAT COMMAND...: poll every 0.2 s
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "$what did not come up; logs: $D/log"
        sleep 0.2
    done
}
started() { echo "$1 $2" >>"$D/pids/started"; }  # started NAME PIDFILE

# 3. Daemons, in dependency order. munge and MariaDB are reused when already up (then not stopped later).
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    [ -s /etc/munge/munge.key ] || { mungekey --create --keyfile /etc/munge/munge.key && chown munge:munge /etc/munge/munge.key; }
    mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/ctrlsparse-munged.pid </dev/null >"$D/log/munged.out" 2>&1 ||
        die "munged did not start: $(cat "$D/log/munged.out")"
    started munged /run/munge/ctrlsparse-munged.pid
    wait_for 10 munged sh -c 'munge -n | unmunge'
fi
if ! mysqladmin ping >/dev/null 2>&1; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$D/log/mariadb-install.log" 2>&1
    setsid runuser -u mysql -- /usr/sbin/mariadbd --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock \
        --pid-file=/run/mysqld/ctrlsparse-mariadb.pid --bind-address=127.0.0.1 --log-error="$D/log/mariadb.log" \
        </dev/null >/dev/null 2>&1 &
    started mariadbd /run/mysqld/ctrlsparse-mariadb.pid
    wait_for 30 MariaDB mysqladmin ping
fi
mysql <<EOF
DROP DATABASE IF EXISTS ctrlsparse_slurm_acct;
CREATE DATABASE ctrlsparse_slurm_acct;
CREATE USER IF NOT EXISTS 'ctrlsparse_slurm'@'localhost' IDENTIFIED BY 'ctrlsparse_slurm';
GRANT ALL ON ctrlsparse_slurm_acct.* TO 'ctrlsparse_slurm'@'localhost';
EOF
slurmdbd </dev/null >"$D/log/slurmdbd.out" 2>&1 || die "slurmdbd did not start: $(cat "$D/log/slurmdbd.out")"
started slurmdbd "$D/pids/slurmdbd.pid"
wait_for 30 slurmdbd sacctmgr -n list cluster
# The cluster, the profile's account and root's association in it (AccountingStorageEnforce=associations).
sacctmgr -n list cluster format=cluster%40 | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -n list account format=account%40 | grep -qw "$ACCOUNT" || sacctmgr -i add account "$ACCOUNT" \
    cluster="$CLUSTER" description="ctrlsparse tests" organization=ctrlsparse >/dev/null
sacctmgr -n list user root withassoc format=account%40 | grep -qw "$ACCOUNT" ||
    sacctmgr -i add user root account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
slurmctld </dev/null >"$D/log/slurmctld.out" 2>&1 || die "slurmctld did not start: $(cat "$D/log/slurmctld.out")"
started slurmctld "$D/pids/slurmctld.pid"
wait_for 30 slurmctld scontrol ping
slurmd </dev/null >"$D/log/slurmd.out" 2>&1 || die "slurmd did not start: $(cat "$D/log/slurmd.out")"
started slurmd "$D/pids/slurmd.pid"

# 4. The node must be idle with its two GPUs before the tests submit anything.
deadline=$((SECONDS + 60))
until [ "$(sinfo -h -n "$H" -o %t 2>/dev/null)" = idle ]; do
    if [ $SECONDS -ge $deadline ]; then
        sinfo -N -l >&2 || true
        tail -5 "$D/log/slurmd.log" "$D/log/slurmctld.log" >&2 || true
        die "node $H is not idle after 60 s; logs: $D/log"
    fi
    sleep 0.2
done
echo "start_cluster.sh: node $H idle (partition $PARTITION, account $ACCOUNT, $(sinfo -h -n "$H" -o %G)) in ${SECONDS} s"
