#!/bin/bash
# Entrypoint of the Slurm test node: munge, then slurmctld and slurmd, each in
# the foreground as children of this shell (PID 1 stays bash, as in the test
# pool's CM). SLURM_MEMORY_MB sets the node's RealMemory (default 1500).
set -euo pipefail

host="$(hostname -s)"
cpus="$(nproc)"
memory="${SLURM_MEMORY_MB:-1500}"

install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey -c -f -k /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi
runuser -u munge -- /usr/sbin/munged

install -d -m 0755 /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
sed -e "s/@HOST@/$host/g" -e "s/@CPUS@/$cpus/g" -e "s/@MEMORY@/$memory/g" \
    /etc/slurm/slurm.conf.in >/etc/slurm/slurm.conf

slurmctld -D &
ctld=$!
slurmd -D &
d=$!
trap 'kill -TERM "$ctld" "$d" 2>/dev/null' TERM INT
status=0
while kill -0 "$ctld" 2>/dev/null || kill -0 "$d" 2>/dev/null; do
    wait -n || status=$?
done
exit "$status"
