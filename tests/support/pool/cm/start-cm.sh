#!/bin/bash
# Entrypoint of the test pool's central manager (runs as root in a container
# of the ospool-ep image; see tests/support/pool.py). Makes the directories and the
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

# Reverse DNS for the pilots' addresses from /etc/hosts, not podman's
# aardvark-dns: a PTR query there sometimes takes 20 s (its reload on every
# container start drops queries), and the collector is single-threaded, so
# every pilot waits (tests/support/pool/NOTES.md). PILOT_SUBNET comes from tests/support/pool.py.
if [[ -n "${PILOT_SUBNET:-}" ]]; then
    python3 - "$PILOT_SUBNET" >>/etc/hosts <<'PY'
import ipaddress, sys
net = ipaddress.ip_network(sys.argv[1], strict=False)
if net.num_addresses <= 4096:
    with open("/etc/hosts") as f:
        known = {line.split()[0] for line in f if line.strip() and not line.startswith("#")}
    for ip in net.hosts():
        if str(ip) not in known:
            print(f"{ip}\tpilot-{str(ip).replace('.', '-')}")
PY
fi

# condor_master is not PID 1 (FACTS.md): bash stays PID 1, reaps, forwards TERM.
condor_master -f &
master=$!
trap 'kill -TERM "$master" 2>/dev/null' TERM INT
trap 'kill -QUIT "$master" 2>/dev/null' QUIT
# `wait` returns early (128+signal) when a trapped signal arrives: wait again
# until the master is gone, and exit with its status.
while kill -0 "$master" 2>/dev/null; do
    status=0
    wait "$master" || status=$?
done
exit "$status"
