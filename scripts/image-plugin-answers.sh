#!/bin/sh
# Inside the image build (Dockerfile, final stage): each Python file-transfer
# plugin of HTCondor's FILETRANSFER_PLUGINS answers `-classad` from the answer it
# gave at build time, and runs as before for everything else.
#
# Why: the startd asks every plugin for its ad (`condor_starter -classad`) at
# start and at each reconfig. box_plugin.py, gdrive_plugin.py and
# onedrive_plugin.py each import requests and classad2 to print four constant
# lines: 0.3 CPU-seconds apiece, half of the startd's start-up CPU. On a busy host
# that delays its first advertisement (20 pilots under a CPU hog: SPEC 14). Left
# out, their methods would be gone from HasFileTransferPluginMethods, which
# OSG's pilots publish.
#
# The packaged plugin is moved aside the Debian way (dpkg-divert: upgrades of
# condor install to the diverted name) and a small sh script takes its name.
# The answer is checked against the original's before the script is kept.
set -eu

log() { printf 'image-plugin-answers: %s\n' "$*" >&2; }

plugins=$(condor_config_val FILETRANSFER_PLUGINS | tr ',' '\n' | sed 's/^ *//; s/ *$//' \
    | grep '\.py$' || true)
[ -n "$plugins" ] || { log "no Python plugin in FILETRANSFER_PLUGINS: nothing to do"; exit 0; }

for plugin in $plugins; do
    [ -x "$plugin" ] || { log "$plugin is not installed: left out"; continue; }
    original="$plugin.distrib"
    # One that cannot answer here would not at run time either: HTCondor leaves it out.
    answer=$("$plugin" -classad) || { log "$plugin -classad failed: left as packaged"; continue; }
    case "$answer" in
        *OSPOOL_EP_ANSWER*) log "$plugin's answer holds the here-document's end word"; exit 1 ;;
    esac
    dpkg-divert --quiet --local --rename --divert "$original" --add "$plugin"
    # shellcheck disable=SC2016 # the script's own "$#" and "$1", not ours
    {
        printf '#!/bin/sh\n'
        printf '# ospool-ep: %s -classad, as it answered when this image was built\n' "$plugin"
        printf '# (scripts/image-plugin-answers.sh); anything else runs the plugin itself.\n'
        printf 'if [ "$#" -eq 1 ] && [ "$1" = -classad ]; then\n'
        printf "    cat <<'OSPOOL_EP_ANSWER'\n%s\nOSPOOL_EP_ANSWER\n    exit 0\nfi\n" "$answer"
        printf 'exec %s "$@"\n' "$original"
    } >"$plugin"
    chmod 0755 "$plugin"
    [ "$("$plugin" -classad)" = "$("$original" -classad)" ] \
        || { log "$plugin: the kept answer differs from the plugin's"; exit 1; }
    log "$plugin answers -classad from the image ($(printf '%s\n' "$answer" | grep SupportedMethods))"
done
