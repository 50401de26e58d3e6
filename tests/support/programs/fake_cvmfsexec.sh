#!/bin/bash
# Stands in for cvmfsexec (SPEC 7.1): `fake_cvmfsexec.sh [-N] REPO... -- COMMAND...` runs
# COMMAND in a new PID namespace under a shell that is that namespace's PID 1 and
# ignores SIGTERM, as cvmfsexec's inner shell does; the outer process passes nothing on.
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done
shift
exec unshare --pid --fork --mount-proc /bin/bash -c 'trap "" HUP INT QUIT TERM; "$@"; exit $?' inner "$@"
