#!/usr/bin/env bash
# slurm-down.sh - stop the local cluster that scripts/slurm-up.sh started.
#
# Cancels jobs still in the queue, then stops exactly the daemons whose PIDs
# slurm-up.sh recorded in $SLURM_PREFIX/run/started/ (never by process name),
# newest first. Safe to run repeatedly; a no-op when nothing is recorded.
set -uo pipefail

PREFIX=${SLURM_PREFIX:-/tmp/resnet-slurm}
STARTED=$PREFIX/run/started

say() { echo "[slurm-down] $*"; }

if [ ! -d "$STARTED" ]; then
    say "nothing recorded in $STARTED"
    exit 0
fi

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { [ -s "$STARTED/$1.pid" ] && cat "$STARTED/$1.pid"; }

# Cancel leftover jobs while the controller still runs, so that their job steps
# are stopped by slurmd rather than left behind.
if alive "$(pid_of slurmctld)"; then
    jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
        say "cancelling jobs: $jobs"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null
        for _ in $(seq 50); do
            [ -z "$(squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
fi

for name in slurmd slurmctld slurmdbd mysqld munged; do
    pid=$(pid_of "$name") || continue
    if alive "$pid"; then
        kill -TERM "$pid"
        for _ in $(seq 100); do alive "$pid" || break; sleep 0.2; done
        if alive "$pid"; then
            say "$name (pid $pid) still running 20 s after SIGTERM: SIGKILL"
            kill -KILL "$pid"
        fi
        say "stopped $name (pid $pid)"
    fi
    rm -f "$STARTED/$name.pid"
done
rm -f "$STARTED/settings"
exit 0
