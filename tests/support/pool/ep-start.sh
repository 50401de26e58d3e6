#!/bin/bash
# Entrypoint of a bare (no supervisor) test pilot, run as uid 1000 in a
# container of the ospool-ep image with CONDOR_CONFIG=<ep-minimal.conf>.
# Copies the mounted token into the token directory the way the daemons
# accept it (dir 0700, file 0600, owned by this uid: a 0644 file or a missing
# dir makes HTCondor silently skip the token), then runs condor_master -f as a
# child (condor_master is not meant to be PID 1).
set -euo pipefail

token_src="${TOKEN_SRC:-/etc/condor/tokens-orig.d/pool.token}"
tokens=/pilot/tokens.d

mkdir -p /pilot/local/log /pilot/local/spool /pilot/local/execute /pilot/local/lock /pilot/local/run
install -d -m 0700 "$tokens"
install -m 0600 "$token_src" "$tokens/pool.token"

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
