#!/usr/bin/env bash
# Run a make target (default: unit) the way a new contributor would: in a fresh
# copy of this working tree (tracked and untracked files, nothing git ignores,
# so no .venv, no build output), with a fresh .venv and Debian's default PATH
# (the system's directories, /usr/local's included: the machine's docker client
# lives there): no venv, no pyenv shims, nothing the project installed by hand.
# A test that finds a tool only through the caller's PATH fails here (issue 9).
#
# Usage: scripts/fresh-clone-check.sh [make target...]
# Environment: PYTHON  the interpreter to build the venv with (default: python3
#                      as the caller finds it; only the venv is made from it)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
targets=("${@:-unit}")
python="$(command -v "${PYTHON:-python3}")"
# pyenv's shim needs pyenv on PATH: use the interpreter it stands for.
python="$("$python" -c 'import sys; print(sys.executable)')"

copy="$(mktemp -d /tmp/ospool-ep-fresh.XXXXXX)"
trap 'rm -rf "$copy"' EXIT
git -C "$repo" ls-files -z --cached --others --exclude-standard \
    | (cd "$repo" && xargs -0 tar -c --no-recursion -f - 2>/dev/null) \
    | tar -x -C "$copy"
printf 'fresh-clone-check: %s in %s, PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n' "${targets[*]}" "$copy" >&2

start=$EPOCHREALTIME
# The rest of the environment stays: the machine's package-proxy settings
# (PIP_*, SSL_CERT_FILE, ...) are the machine's, not the project's.
env -u VIRTUAL_ENV -u PYTHONPATH -u PYTHONHOME -u PYENV_VERSION CI="${CI:-true}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    make -C "$copy" PYTHON="$python" "${targets[@]}" </dev/null
awk -v a="$start" -v b="$EPOCHREALTIME" \
    'BEGIN { printf "fresh-clone-check: passed in %.0f s (venv included)\n", b - a }' >&2
