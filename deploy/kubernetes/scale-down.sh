#!/bin/bash
# Scale the pilots down idle ones first (README "Kubernetes").
#
#   deploy/kubernetes/scale-down.sh NAMESPACE REPLICAS [DEPLOYMENT]
#
# A ReplicaSet that scales down removes the pods with the lowest
# controller.kubernetes.io/pod-deletion-cost first. This marks every pilot
# with the number of jobs running in it (one execute/dir_* per job), so idle
# pilots go first and busy ones last, then scales. A removed pilot still
# drains: its jobs finish within the grace period or go back to their queue.
set -euo pipefail

if (($# < 2)); then
    echo "usage: $0 NAMESPACE REPLICAS [DEPLOYMENT]" >&2
    exit 2
fi
namespace=$1
replicas=$2
deployment=${3:-ospool-ep}

# The Deployment's own pod selector, as "key=value,key=value".
# shellcheck disable=SC2016 # a go-template, not shell
template='{{range $k, $v := .spec.selector.matchLabels}}{{$k}}={{$v}},{{end}}'
selector="$(kubectl -n "$namespace" get deployment "$deployment" -o go-template --template="$template")"
for pod in $(kubectl -n "$namespace" get pods -l "${selector%,}" -o name); do
    jobs="$(kubectl -n "$namespace" exec "$pod" -c pilot -- \
        sh -c 'ls -d /pilot/ospool-ep-*/execute/dir_* 2>/dev/null | wc -l' 2>/dev/null || echo 0)"
    jobs="${jobs//[^0-9]/}"
    kubectl -n "$namespace" annotate --overwrite "$pod" \
        "controller.kubernetes.io/pod-deletion-cost=${jobs:-0}" >/dev/null
    echo "$pod: $jobs running jobs"
done
kubectl -n "$namespace" scale deployment "$deployment" --replicas="$replicas"
