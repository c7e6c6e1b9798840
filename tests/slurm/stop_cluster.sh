#!/usr/bin/env bash
# Stop the test SLURM that tests/slurm/start_cluster.sh started: cancel its jobs, then stop each daemon it
# recorded in $CTRLSPARSE_SLURM_DIR/pids/started by PID (TERM, then KILL after 15 s), and remove the
# /etc/slurm files it wrote. Daemons it did not start (a munge or MariaDB that was already running) are left alone.
set -uo pipefail

D=${CTRLSPARSE_SLURM_DIR:-/tmp/ctrlsparse-slurm}
MARKER="# ctrlsparse test cluster: written by tests/slurm/start_cluster.sh"
STARTED="$D/pids/started"

if [ ! -s "$STARTED" ]; then
    echo "stop_cluster.sh: nothing to stop ($STARTED is empty or missing)"
    exit 0
fi

# Jobs first, so that no slurmstepd outlives slurmd (the cluster is private: every job in it is a test's).
if grep -q '^slurmctld ' "$STARTED" && scontrol ping >/dev/null 2>&1; then
    scancel --full --quiet --user root 2>/dev/null
    for _ in $(seq 50); do
        [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
        sleep 0.2
    done
fi

# SIGTERM to all at once (one after the other takes ~10 s), newest first; SIGKILL what is left after 15 s.
declare -A pids=()
while read -r name pidfile; do
    pid=$(cat "$pidfile" 2>/dev/null) || { echo "stop_cluster.sh: $name: no pid file $pidfile" >&2; continue; }
    if kill -TERM "$pid" 2>/dev/null; then
        pids[$name]=$pid
    else
        echo "stop_cluster.sh: $name ($pid) was not running" >&2
    fi
    rm -f "$pidfile"
done < <(tac "$STARTED")
status=0
for _ in $(seq 75); do
    for name in "${!pids[@]}"; do
        kill -0 "${pids[$name]}" 2>/dev/null || unset "pids[$name]"
    done
    [ ${#pids[@]} -eq 0 ] && break
    sleep 0.2
done
for name in "${!pids[@]}"; do
    echo "stop_cluster.sh: $name (${pids[$name]}) ignored SIGTERM for 15 s; sending SIGKILL" >&2
    kill -KILL "${pids[$name]}" 2>/dev/null
    status=1
done
rm -f "$STARTED"

for conf in /etc/slurm/slurm.conf /etc/slurm/gres.conf /etc/slurm/slurmdbd.conf; do
    if [ -e "$conf" ] && grep -qF "$MARKER" "$conf"; then
        rm -f "$conf"
    fi
done
echo "stop_cluster.sh: stopped"
exit $status
