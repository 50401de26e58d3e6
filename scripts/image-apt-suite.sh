#!/bin/sh
# Inside the image build (Dockerfile, runtime stage): let apt install Apptainer
# from another Debian suite than the base's, and nothing else from it.
#
#   image-apt-suite add BASE_SUITE EXTRA_SUITE "EXPIRED_SUITE..."
#       EXTRA_SUITE empty or equal to BASE_SUITE: no extra source. Otherwise a
#       source for EXTRA_SUITE on the base's own mirror, and an apt pin: every
#       package of EXTRA_SUITE at priority -1 (never installed) except apptainer
#       (500; the base suite has none), so its dependencies come from the base.
#       EXPIRED_SUITE...: the suites whose Release file apt may accept past its
#       Valid-Until (a stale mirror): only their sources are marked.
#   image-apt-suite remove
#       drops what `add` added and restores the base's sources, so later apt
#       runs (and images built FROM this one) see only the base suite.
set -eu

extra_list=/etc/apt/sources.list.d/ospool-ep-extra-suite.list
extra_pin=/etc/apt/preferences.d/ospool-ep-extra-suite
saved=/var/tmp/ospool-ep-apt-sources
pinned_package=apptainer

log() { printf 'image-apt-suite: %s\n' "$*" >&2; }

# The base's sources: debootstrap's one-line sources.list or the deb822 file of
# Debian's official images.
source_files() {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources; do
        [ -s "$f" ] && printf '%s\n' "$f"
    done
    return 0
}

mirror() {
    # shellcheck disable=SC2046 # one word per file name, none has spaces
    awk '
        /^[[:space:]]*#/ { next }
        $1 == "URIs:" { print $2; exit }
        $1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; exit } }
    ' $(source_files) | head -n1
}

# Mark the base's own sources when the base suite is the expired one (a sid base).
allow_expired_base() {
    mkdir -p "$saved"
    for f in $(source_files); do
        cp -p "$f" "$saved/$(printf '%s' "$f" | tr / %)"
        case "$f" in
            *.sources) sed -i '/^URIs:/a Check-Valid-Until: no' "$f" ;;
            *) sed -i 's/^deb \([^[]\)/deb [check-valid-until=no] \1/' "$f" ;;
        esac
    done
}

listed() {
    case " $2 " in *" $1 "*) return 0 ;; esac
    return 1
}

add() {
    base="$1" extra="$2" expired="$3"
    if listed "$base" "$expired"; then
        log "accepting $base's Release past its Valid-Until for this build (APT_EXPIRED_SUITES)"
        allow_expired_base
    fi
    if [ -z "$extra" ] || [ "$extra" = "$base" ]; then
        return 0
    fi
    url="$(mirror)"
    [ -n "$url" ] || { log "no Debian mirror found in the base's apt sources"; exit 1; }
    options=""
    if listed "$extra" "$expired"; then
        log "accepting $extra's Release past its Valid-Until for this build (APT_EXPIRED_SUITES)"
        options=" [check-valid-until=no]"
    fi
    printf 'deb%s %s %s main\n' "$options" "$url" "$extra" >"$extra_list"
    cat >"$extra_pin" <<EOF
Package: $pinned_package
Pin: release n=$extra
Pin-Priority: 500

Package: *
Pin: release n=$extra
Pin-Priority: -1
EOF
    log "$pinned_package from $extra ($url), everything else from $base"
}

remove() {
    rm -f "$extra_list" "$extra_pin"
    if [ -d "$saved" ]; then
        for copy in "$saved"/*; do
            cp -p "$copy" "$(basename "$copy" | tr % /)"
        done
        rm -rf "$saved"
    fi
}

case "${1:-}" in
    add) shift; add "${1:-}" "${2:-}" "${3:-}" ;;
    remove) remove ;;
    *) log "usage: image-apt-suite add BASE EXTRA EXPIRED | remove"; exit 2 ;;
esac
