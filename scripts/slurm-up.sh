#!/usr/bin/env bash
# slurm-up.sh - a single-node SLURM cluster on loopback for trying the project's
# SLURM profile (slurm/ at the repository root) locally and for CI.
#
# Installs Debian's slurmctld, slurmd, slurm-client and munge (plus slurmdbd and
# mariadb-server for accounting), writes /etc/slurm/slurm.conf, starts the daemons
# itself (no systemd needed) and waits until the node is idle. Idempotent: a
# second run with the same settings while the cluster is up does nothing.
#
#   sudo -E scripts/slurm-up.sh               # with accounting (sacct works)
#   sudo -E WITH_DBD=0 scripts/slurm-up.sh    # no accounting: the profile then
#                                             # needs `slurm-status-command: squeue`
#   sudo -E scripts/slurm-down.sh             # stop what slurm-up.sh started
#
# Settings (environment):
#   SLURM_PREFIX  state, logs and PID files       (default /tmp/resnet-slurm)
#   WITH_DBD      1 = slurmdbd + MariaDB           (default 1)
#   NODE_CPUS     CPUs the node advertises         (default: nproc; more than
#                 nproc is allowed so that rules with many threads still schedule)
#   FAKE_GPUS     fake GPUs offered as gres/gpu    (default 2; 0 = none)
#   ACCT_USER     non-root user to add to the accounting DB (default $SUDO_USER)
#
# Every daemon this script starts has its PID recorded in
# $SLURM_PREFIX/run/started/<name>.pid; slurm-down.sh stops exactly those.
#
# Jobs run on this machine as the submitting user with its environment, so a
# job can run the project's .venv/bin/python directly.
set -euo pipefail

PREFIX=${SLURM_PREFIX:-/tmp/resnet-slurm}
WITH_DBD=${WITH_DBD:-1}
FAKE_GPUS=${FAKE_GPUS:-2}
ACCT_USER=${ACCT_USER:-${SUDO_USER:-}}
ETC=/etc/slurm
STARTED=$PREFIX/run/started
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T0=$(date +%s.%N)

elapsed() { awk -v t0="$T0" -v t1="$(date +%s.%N)" 'BEGIN { printf "%.1f", t1 - t0 }'; }
say() { echo "[slurm-up $(elapsed)s] $*"; }
fail() { echo "slurm-up: ERROR: $*" >&2; exit 1; }

# ------------------------------------------------------------------ preconditions
[ "$(uname -s)" = Linux ] || fail "needs Linux (this is $(uname -s))"
[ "$(id -u)" = 0 ] || fail "must run as root (try: sudo -E $0)"
command -v dpkg-query >/dev/null && command -v apt-get >/dev/null \
    || fail "needs a Debian/Ubuntu system with apt-get"
case $WITH_DBD in 0|1) ;; *) fail "WITH_DBD must be 0 or 1, not '$WITH_DBD'" ;; esac
case $FAKE_GPUS in ''|*[!0-9]*) fail "FAKE_GPUS must be a number, not '$FAKE_GPUS'" ;; esac
HW_CPUS=$(nproc)
NODE_CPUS=${NODE_CPUS:-$HW_CPUS}
case $NODE_CPUS in ''|*[!0-9]*|0) fail "NODE_CPUS must be a positive number, not '$NODE_CPUS'" ;; esac
NODE=$(hostname -s)
MEM_MB=$(awk '/^MemTotal:/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
SETTINGS="WITH_DBD=$WITH_DBD NODE_CPUS=$NODE_CPUS FAKE_GPUS=$FAKE_GPUS NODE=$NODE"

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
# wait_until SECONDS WHAT COMMAND...: poll COMMAND every 0.2 s
wait_until() {
    local tries=$(( $1 * 5 )) what=$2; shift 2
    while [ "$tries" -gt 0 ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2; tries=$(( tries - 1 ))
    done
    return 1
}
node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null || true; }
show_log() { [ -f "$1" ] && { echo "--- last lines of $1:" >&2; tail -n 20 "$1" >&2; }; return 0; }

# ------------------------------------------------------------------ already up?
daemons="munged slurmctld slurmd"
[ "$WITH_DBD" = 1 ] && daemons="slurmdbd mysqld $daemons"
if [ -f "$STARTED/settings" ] && [ "$(cat "$STARTED/settings")" = "$SETTINGS" ]; then
    all_up=1
    for d in slurmctld slurmd $( [ "$WITH_DBD" = 1 ] && echo slurmdbd mysqld ); do
        running "$STARTED/$d.pid" || all_up=0
    done
    if [ "$all_up" = 1 ] && [ "$(node_state)" = idle ]; then
        say "already running ($SETTINGS), node $NODE idle: nothing to do"
        exit 0
    fi
fi
# anything left from an earlier start (other settings, half up): stop it first
if [ -d "$STARTED" ] && ls "$STARTED"/*.pid >/dev/null 2>&1; then
    say "stopping an earlier cluster first"
    SLURM_PREFIX=$PREFIX "$HERE/slurm-down.sh"
fi

# ------------------------------------------------------------------ packages
pkgs="munge slurmctld slurmd slurm-client"
[ "$WITH_DBD" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
mkdir -p "$PREFIX/log"
if [ -n "$missing" ]; then
    say "installing:$missing (log: $PREFIX/log/apt.log)"
    # Debian's maintainer scripts would start the services; this script starts
    # its own daemons, so block service starts while installing.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q --no-install-recommends $missing; } \
        > "$PREFIX/log/apt.log" 2>&1 \
        || fail "apt-get install of$missing failed (see $PREFIX/log/apt.log: $(tail -n 1 "$PREFIX/log/apt.log"))"
fi
say "slurm $(dpkg-query -W -f='${Version}' slurmctld), munge $(dpkg-query -W -f='${Version}' munge)"

# ------------------------------------------------------------------ state + config
# Fresh controller state at every start: no drain reasons survive from an earlier
# run, and job ids start again at 1.
rm -rf "$PREFIX/state/ctld" "$PREFIX/state/d" "$PREFIX/run"
mkdir -p "$PREFIX/state/ctld" "$PREFIX/state/d" "$PREFIX/run" "$STARTED" "$ETC"

gres_types=""; node_gres=""
if [ "$FAKE_GPUS" -gt 0 ]; then
    # gres/gpu needs File= entries, and slurmd accepts only character or block
    # devices there (a gpu without a file is dropped and the node drains for a
    # low gres count). /dev/null's numbers (1,3) make harmless fake GPUs.
    for i in $(seq 0 $(( FAKE_GPUS - 1 ))); do
        dev=$PREFIX/state/fakegpu$i
        [ -c "$dev" ] || { rm -f "$dev"; mknod "$dev" c 1 3; }
    done
    gres_types="GresTypes=gpu"
    node_gres="Gres=gpu:$FAKE_GPUS"
    cat > "$ETC/gres.conf" <<EOF
# written by the resnet-repro scripts/slurm-up.sh: fake GPUs, no autodetection
AutoDetect=off
NodeName=$NODE Name=gpu File=$PREFIX/state/fakegpu[0-$(( FAKE_GPUS - 1 ))]
EOF
else
    rm -f "$ETC/gres.conf"
fi

overrides=""
# advertising more CPUs than the hardware has is refused unless slurmd takes the
# node description from slurm.conf as given
[ "$NODE_CPUS" -gt "$HW_CPUS" ] && overrides="SlurmdParameters=config_overrides"

if [ "$WITH_DBD" = 1 ]; then
    accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
# sacct's AllocTRES then lists the GPUs a job held (gres/gpu=N), not only CPUs, memory and nodes
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
    accounting="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

if [ -f "$ETC/slurm.conf" ] && ! grep -q 'resnet-repro scripts/slurm-up.sh' "$ETC/slurm.conf"; then
    cp "$ETC/slurm.conf" "$ETC/slurm.conf.before-resnet-repro"
    say "kept the existing $ETC/slurm.conf as slurm.conf.before-resnet-repro"
fi
def_mem=$(( MEM_MB / NODE_CPUS ))
cat > "$ETC/slurm.conf" <<EOF
# written by the resnet-repro scripts/slurm-up.sh ($SETTINGS); rewritten at each start
ClusterName=resnet
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$PREFIX/state/ctld
SlurmdSpoolDir=$PREFIX/state/d
SlurmctldPidFile=$PREFIX/run/slurmctld.pid
SlurmdPidFile=$PREFIX/run/slurmd.pid
SlurmctldLogFile=$PREFIX/log/slurmctld.log
SlurmdLogFile=$PREFIX/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Finished jobs stay visible to squeue this long (seconds); squeue-based status
# checks need at least 3 x slurm-init-seconds-before-status-checks.
MinJobAge=600
# A job that can never run (too many CPUs, too much memory) is refused at
# submission instead of pending forever.
EnforcePartLimits=ALL
# Time limits are hard (no grace minutes); after SIGTERM a job has KillWait
# seconds to save a checkpoint before SIGKILL. --signal=B:USR1@N warnings work.
OverTimeLimit=0
KillWait=30
# batch jobs may be requeued (scontrol requeue, node failure)
JobRequeue=1
# jobs that ask for no memory get a per-CPU share instead of the whole node
DefMemPerCPU=$def_mem
JobCompType=jobcomp/none
$accounting
$overrides
$gres_types
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$NODE_CPUS Sockets=1 CoresPerSocket=$NODE_CPUS ThreadsPerCore=1 RealMemory=$MEM_MB $node_gres State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
chmod 644 "$ETC/slurm.conf"

# ------------------------------------------------------------------ munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged is already running (started elsewhere; left alone)"
else
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
            || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge "$PREFIX/run/munge"
    chown munge:munge /run/munge "$PREFIX/run/munge"
    chmod 755 /run/munge
    runuser -u munge -- /usr/sbin/munged --pid-file="$PREFIX/run/munge/munged.pid" \
        || fail "munged did not start"
    wait_until 10 munged sh -c 'munge -n | unmunge' || fail "munged does not answer"
    cp "$PREFIX/run/munge/munged.pid" "$STARTED/munged.pid"
    say "munged up (pid $(cat "$STARTED/munged.pid"))"
fi

# ------------------------------------------------------------------ accounting
if [ "$WITH_DBD" = 1 ]; then
    db=$PREFIX/state/mysql
    sock=$PREFIX/run/mysql/mysqld.sock
    mkdir -p "$PREFIX/run/mysql"
    chown mysql:mysql "$PREFIX/run/mysql"
    # fresh database at each start: job ids restart at 1 with the fresh controller
    # state, and old rows with the same ids would mix into sacct's answers
    rm -rf "$db"; mkdir -p "$db"; chown mysql:mysql "$db"
    mariadb-install-db --user=mysql --datadir="$db" --auth-root-authentication-method=socket \
        --skip-test-db > "$PREFIX/log/mariadb-install.log" 2>&1 \
        || { show_log "$PREFIX/log/mariadb-install.log"; fail "mariadb-install-db failed"; }
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$db" --socket="$sock" \
        --pid-file="$PREFIX/run/mysql/mysqld.pid" --bind-address=127.0.0.1 --port=3306 \
        --log-error="$PREFIX/log/mariadb.err" --innodb-buffer-pool-size=256M \
        --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 &
    wait_until 60 mariadb mariadb-admin --socket="$sock" ping \
        || { show_log "$PREFIX/log/mariadb.err"; fail "MariaDB did not come up"; }
    wait_until 10 "mariadb pid file" test -s "$PREFIX/run/mysql/mysqld.pid"
    cp "$PREFIX/run/mysql/mysqld.pid" "$STARTED/mysqld.pid"
    mariadb --socket="$sock" -u root -e "
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'resnet-slurm';
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'resnet-slurm';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
        FLUSH PRIVILEGES;" || fail "could not create the slurm database user"
    say "mariadb up (pid $(cat "$STARTED/mysqld.pid"))"

    cat > "$ETC/slurmdbd.conf" <<EOF
# written by the resnet-repro scripts/slurm-up.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
DebugLevel=info
LogFile=$PREFIX/log/slurmdbd.log
PidFile=$PREFIX/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=resnet-slurm
StorageLoc=slurm_acct_db
EOF
    # slurmdbd refuses a config file with a password that others can read
    chmod 600 "$ETC/slurmdbd.conf"
    slurmdbd || { show_log "$PREFIX/log/slurmdbd.log"; fail "slurmdbd did not start"; }
    wait_until 60 slurmdbd sacctmgr -n list cluster \
        || { show_log "$PREFIX/log/slurmdbd.log"; fail "slurmdbd does not answer"; }
    cp "$PREFIX/run/slurmdbd.pid" "$STARTED/slurmdbd.pid"
    say "slurmdbd up (pid $(cat "$STARTED/slurmdbd.pid"))"
else
    rm -f "$ETC/slurmdbd.conf"
fi

# ------------------------------------------------------------------ controller + node
slurmctld || { show_log "$PREFIX/log/slurmctld.log"; fail "slurmctld did not start"; }
wait_until 30 slurmctld scontrol ping \
    || { show_log "$PREFIX/log/slurmctld.log"; fail "slurmctld does not answer"; }
cp "$PREFIX/run/slurmctld.pid" "$STARTED/slurmctld.pid"
say "slurmctld up (pid $(cat "$STARTED/slurmctld.pid"))"

slurmd || { show_log "$PREFIX/log/slurmd.log"; fail "slurmd did not start"; }
wait_until 10 "slurmd pid file" test -s "$PREFIX/run/slurmd.pid" \
    || { show_log "$PREFIX/log/slurmd.log"; fail "slurmd wrote no pid file"; }
cp "$PREFIX/run/slurmd.pid" "$STARTED/slurmd.pid"
say "slurmd up (pid $(cat "$STARTED/slurmd.pid"))"

if ! wait_until 30 "node idle" sh -c "[ \"\$(sinfo -h -n $NODE -o %t)\" = idle ]"; then
    scontrol show node "$NODE" >&2 || true
    show_log "$PREFIX/log/slurmctld.log"; show_log "$PREFIX/log/slurmd.log"
    fail "node $NODE is not idle: $(sinfo -h -n "$NODE" -o '%t %E' 2>&1)"
fi
echo "$SETTINGS" > "$STARTED/settings"

# ------------------------------------------------------------------ accounting users
# root is known to slurmdbd already; another submitting user needs an association
if [ "$WITH_DBD" = 1 ] && [ -n "$ACCT_USER" ] && [ "$ACCT_USER" != root ]; then
    sacctmgr -i add account resnet Cluster=resnet >/dev/null 2>&1 || true
    sacctmgr -i add user "$ACCT_USER" Account=resnet >/dev/null 2>&1 || true
fi

sinfo -N -o '%N %t %c %m %G %P'
say "cluster ready ($SETTINGS)"
