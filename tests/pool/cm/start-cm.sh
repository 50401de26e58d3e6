#!/bin/bash
# Entrypoint of the test pool's central manager (runs as root in a container
# of the ospool-ep image; see tests/pool.py). Makes the directories and the
# POOL signing key, then runs condor_master in the foreground as its child.
set -euo pipefail

for d in /var/run/condor /var/lock/condor /var/log/condor /var/spool/condor /var/lib/condor/execute; do
    mkdir -p "$d"
    chown condor:condor "$d"
done
install -d -m 0700 -o root -g root /etc/condor/passwords.d /etc/condor/tokens.d

# A fresh random signing key per CM: tokens from an earlier pool are useless.
if [[ ! -s /etc/condor/passwords.d/POOL ]]; then
    pw="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    condor_store_cred add -c -p "$pw" -f /etc/condor/passwords.d/POOL >/dev/null
    unset pw
fi

# condor_master is not PID 1 (FACTS.md): bash stays PID 1, reaps, forwards TERM.
condor_master -f &
master=$!
trap 'kill -TERM "$master" 2>/dev/null' TERM INT
trap 'kill -QUIT "$master" 2>/dev/null' QUIT
status=0
while kill -0 "$master" 2>/dev/null; do
    wait "$master" || status=$?
done
exit "$status"
