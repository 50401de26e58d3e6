# ospool-ep: an OSPool backfill Execution Point (SPEC §10).
#
# Normal host:   docker build -t ospool-ep .
#   stable build: docker build --build-arg DEBIAN_SUITE=trixie --build-arg APPTAINER_SUITE= .
# No registry:   scripts/build-image.sh  (debootstrap base, then
#                podman build --format docker --build-arg BASE_IMAGE=localhost/debian-<suite>-base:latest)
#
# pelicanfs (the osdf:// transfer plugin's client) and the few modules it needs
# that Debian has no package of are pinned, hashed pure-Python wheels
# (scripts/image-wheels.txt). scripts/build-image.sh downloads them on the host
# into .whl/ in the build context, since pip inside a build here cannot reach
# PyPI; a build with no .whl/ (a plain `docker build` on a normal host) has pip
# fetch the same pinned files from PyPI, and stops saying what to do if it cannot.
#
# Build with `--format docker` under podman/buildah: the OCI image format has
# no HEALTHCHECK, and buildah drops it with only a warning.
#
# Variants (build arguments; scripts/build-image.sh sets both from DEBIAN_SUITE):
#   DEBIAN_SUITE=forky APPTAINER_SUITE=sid   the default: HTCondor 25 from forky (testing),
#                                            Apptainer from sid, the only sid package
#                                            (forky has none); Python 3.14
#   DEBIAN_SUITE=trixie APPTAINER_SUITE=     Debian stable: HTCondor 23.9, no Apptainer
#                                            (trixie packages none); Python 3.13
#   DEBIAN_SUITE=sid APPTAINER_SUITE=sid     everything from unstable (not tested)
# Why forky and not sid as the base: testing gets sid's packages after they have
# gone days without release-critical bugs, so a rebuild is far less likely to meet
# a half-done transition; only apptainer (a Go program needing libc6, libseccomp2,
# libsqlite3-0, all satisfied by forky) comes from sid. Why not trixie with sid's
# condor: condor 25 needs sid's libc6, libssl, perl and Python 3.14 (99 packages).

ARG DEBIAN_SUITE=forky
ARG BASE_IMAGE=debian:${DEBIAN_SUITE}-slim

# ---------------------------------------------------------------------------
# runtime: HTCondor, Apptainer and the Python dependencies, all from Debian packages.
#   condor ships the daemons, the tools and the Python bindings htcondor2/classad2,
#   which satisfy the `htcondor` dependency. The second python3-* group is what
#   pelicanfs imports (its wheels come in the build stage): aiohttp, cachetools,
#   fsspec; jwt and cryptography for scitokens; aiowebdav2 where the suite packages
#   it (forky), else the packages aiowebdav2's wheel imports (trixie).
FROM ${BASE_IMAGE} AS runtime
ARG DEBIAN_SUITE
ARG APPTAINER_SUITE=sid
# Suites whose Release file this build may accept past its Valid-Until (this
# project's package mirror serves forky and sid expired): only their sources get
# [check-valid-until=no], and only during this build. scripts/build-image.sh sets
# it after finding the mirror's file expired, and says so; nothing sets it by default.
ARG APT_EXPIRED_SUITES=

ENV LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive

# Apptainer from another suite: a source and an apt pin that let exactly one
# package (apptainer) come from it, its dependencies from the base suite. The
# build stages below keep them; the final stage removes them (and any Valid-Until
# allowance), so images built on this one see only the base suite.
#
# Not installed (dpkg path-exclude, on top of the base's docs/man/locale excludes):
# - /usr/lib/cni: Apptainer's network plugins (66 MB). The pilot's Apptainer runs
#   unprivileged, and that allows only --network=none, which needs no plugin
#   ("network requires root or a suid installation"; tried with Apptainer 1.4.5).
# - /usr/share/bootstrap-html: the HTML manual of Bootstrap, which condor depends on.
# - the recorded HTTP sessions of fsspec's tests (7.5 MB of python3-fsspec's 11 MB;
#   its test modules stay: py3compile fails on a .py it cannot find).
# systemd-standalone-tmpfiles is one of the alternatives condor's cryptsetup-bin
# depends on; without it apt picks systemd itself (20 MB, no use in a container).
COPY scripts/image-apt-suite.sh /usr/local/sbin/image-apt-suite
RUN printf 'path-exclude %s\n' '/usr/lib/cni/*' '/usr/share/bootstrap-html/*' \
        '/usr/lib/python3/dist-packages/fsspec/implementations/tests/cassettes/*' \
        >/etc/dpkg/dpkg.cfg.d/ospool-ep-unused \
 && image-apt-suite add "$DEBIAN_SUITE" "$APPTAINER_SUITE" "$APT_EXPIRED_SUITES" \
 && apt-get update \
 && if apt-cache show python3-aiowebdav2 >/dev/null 2>&1; then webdav=python3-aiowebdav2; \
    else webdav='python3-aiofiles python3-dateutil python3-lxml python3-yarl'; fi \
 && apt-get install -y --no-install-recommends \
        condor \
        python3 \
        python3-jinja2 \
        python3-requests \
        python3-prometheus-client \
        python3-aiohttp \
        python3-cachetools \
        python3-cryptography \
        python3-fsspec \
        python3-jwt \
        $webdav \
        ca-certificates \
        systemd-standalone-tmpfiles \
        ${APPTAINER_SUITE:+apptainer squashfuse fuse3} \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log \
 && python3 -c 'import htcondor2, classad2, jinja2, requests, prometheus_client' \
 && python3 -c 'import aiohttp, cachetools, cryptography, fsspec, jwt' \
 && { [ -z "$APPTAINER_SUITE" ] || apptainer version; }

# ---------------------------------------------------------------------------
# build: install the project from the build context, without PyPI, into a
# staging root so pip and setuptools stay out of the final image; then the
# wheels of scripts/image-wheels.txt (see the header), the same way.
FROM runtime AS build
LABEL org.ospool-ep.stage=build

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip python3-setuptools \
 && rm -rf /var/lib/apt/lists/*

COPY . /src
RUN pip install --no-index --no-build-isolation --no-deps --break-system-packages \
        --root /staging --root-user-action=ignore --no-warn-script-location \
        /src \
 && rm -rf /staging/root

# The wheels go where the project went (/usr/local/lib/python3.X/dist-packages),
# without their dependencies (Debian's, above). aiowebdav2's line is dropped
# where Debian's package is there. scitokens' admin tools are of no use here, nor
# the empty top-level __init__.py that pelicanfs' wheel puts in dist-packages.
RUN cp /src/scripts/image-wheels.txt /tmp/wheels.txt \
 && if python3 -c 'import aiowebdav2' 2>/dev/null; then sed -i '/^aiowebdav2==/d' /tmp/wheels.txt; fi \
 && if [ -d /src/.whl ]; then from='--no-index --find-links /src/.whl'; \
    else from='--retries 1 --timeout 30'; fi \
 && { pip install $from --no-deps --only-binary=:all: --require-hashes -r /tmp/wheels.txt \
        --break-system-packages --root /staging --root-user-action=ignore \
        --no-warn-script-location \
   || { echo >&2 "image wheels (scripts/image-wheels.txt): not in .whl/ of the build context" \
            "and not fetched from PyPI; build with scripts/build-image.sh, or run on the host:" \
            "python3 -m pip download --no-deps --only-binary=:all: --require-hashes" \
            "--python-version 3.13 -d .whl -r scripts/image-wheels.txt"; exit 1; }; } \
 && rm -rf /staging/root /staging/usr/local/bin/scitokens-* /tmp/wheels.txt \
        /staging/usr/local/lib/python3*/dist-packages/__init__.py \
        /staging/usr/local/lib/python3*/dist-packages/__pycache__

# ---------------------------------------------------------------------------
# cvmfsexec (SPEC 9.4): only with --build-arg CVMFSEXEC_VERSION=<tag>|latest.
# Its makedist downloads the CVMFS client from CERN and OSG, which needs a
# network beyond the Debian mirror: the default build leaves it out, and a
# pilot asked for cvmfsexec then exits 69 saying the image has none.
FROM runtime AS cvmfsexec
LABEL org.ospool-ep.stage=build
ARG CVMFSEXEC_VERSION=
COPY cvmfsexec/build-dist.sh /usr/local/sbin/build-cvmfsexec-dist
RUN mkdir -p /staging \
 && if [ -n "$CVMFSEXEC_VERSION" ]; then \
        apt-get update \
     && apt-get install -y --no-install-recommends git curl rpm2cpio cpio \
     && build-cvmfsexec-dist "$CVMFSEXEC_VERSION" /staging/usr/lib/ospool-ep/cvmfsexec; \
    fi

# ---------------------------------------------------------------------------
# The built-in job image (SPEC 7.6): where no CVMFS image is there, jobs run in
# this Apptainer sandbox. It is a skeleton: /usr is empty (the pilot binds its
# own /usr read-only at job time, so it costs ~0 MB and never drifts from the
# image), bin/lib/lib64/sbin link into it, and /etc holds only what programs
# from /usr read (CA certificates, the alternatives links, the loader cache,
# os-release). None of the pilot's config, tokens or state is in it. Built by
# Apptainer itself from a plain directory (it adds /.singularity.d), owned by
# root: uid 1000 cannot change it. Only where the image has Apptainer.
FROM runtime AS jobimage
LABEL org.ospool-ep.stage=build
ARG APPTAINER_SUITE=sid
RUN mkdir -p /staging \
 && if [ -n "$APPTAINER_SUITE" ]; then \
        skel=/tmp/job-skeleton \
     && mkdir -p "$skel/usr" "$skel/etc" "$skel/var/tmp" \
     && for d in srv cvmfs tmp proc sys dev home; do mkdir -p "$skel/$d"; done \
     && for d in bin lib lib64 sbin; do ln -s "usr/$d" "$skel/$d"; done \
     && chmod 1777 "$skel/tmp" "$skel/var/tmp" \
     && cp -a /etc/ssl /etc/alternatives /etc/ca-certificates.conf /etc/ld.so.cache \
              /etc/ld.so.conf /etc/ld.so.conf.d /etc/nsswitch.conf /etc/os-release \
              "$skel/etc/" \
     && rm -rf "$skel/etc/ssl/private" \
     && mkdir -p /staging/usr/lib/ospool-ep \
     && APPTAINER_CACHEDIR=/tmp/apptainer-cache \
        apptainer -q build --sandbox /staging/usr/lib/ospool-ep/job-image "$skel" \
     && test -d /staging/usr/lib/ospool-ep/job-image/.singularity.d \
     && rm -rf "$skel" /tmp/apptainer-cache; \
    fi

# ---------------------------------------------------------------------------
FROM runtime

# scripts/build-image.sh passes the package version and the git remote.
ARG VERSION=0.0.0+unknown
ARG SOURCE_URL=
ARG DEBIAN_SUITE
ARG APPTAINER_SUITE=sid
ARG APT_EXPIRED_SUITES=
# org.ospool-ep.*: which variant this is (tests/e2e/test_image.py checks each
# against what the image really has; empty apptainer-suite: no Apptainer), and
# the suites whose expired Release files the build accepted (images built FROM
# this one on the same mirror need the same allowance: tests/support/slurm).
LABEL org.ospool-ep.debian-suite="${DEBIAN_SUITE}" \
      org.ospool-ep.apptainer-suite="${APPTAINER_SUITE}" \
      org.ospool-ep.apt-expired-suites="${APT_EXPIRED_SUITES}"
LABEL org.opencontainers.image.title="ospool-ep" \
      org.opencontainers.image.description="OSPool backfill Execution Point: a supervised HTCondor startd pilot" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

COPY --from=build /staging/ /
COPY --from=cvmfsexec /staging/ /
COPY --from=jobimage /staging/ /

# cvmfsexec's cvmfs2 (EL9 build) needs the FUSE 3 library; /cvmfs-cache and
# /cvmfs-logs are its optional cache and log mounts (SPEC 4.2).
ARG CVMFSEXEC_VERSION=
RUN if [ -n "$CVMFSEXEC_VERSION" ]; then \
        apt-get update \
     && apt-get install -y --no-install-recommends fuse3 \
     && apt-get clean && rm -rf /var/lib/apt/lists/* \
     && mkdir -p /cvmfs-cache /cvmfs-logs /cvmfs && chmod 1777 /cvmfs-cache /cvmfs-logs; \
    fi

# A uid a site forces (--user 12345) has no passwd entry under docker, and
# Apptainer refuses to run for it ("Couldn't determine user account
# information: user: unknown userid"). libnss-unknown (its postinst adds
# `unknown` to nsswitch.conf's passwd line) answers uid-N for such a uid;
# /etc/passwd stays root's and read-only. osg is made first: useradd asks NSS
# whether uid 1000 is taken, and libnss-unknown would say it is. It answers
# every uid: an image built FROM this one that creates system users (a
# package's adduser --system) drops ` unknown` from nsswitch.conf's passwd line
# for that step and puts it back (tests/support/slurm/Dockerfile does).
RUN useradd --uid 1000 --user-group --create-home --home-dir /home/osg --shell /bin/bash osg \
 && apt-get update \
 && apt-get install -y --no-install-recommends libnss-unknown \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/log/apt/* /var/log/dpkg.log \
 && grep -q '^passwd:.*unknown$' /etc/nsswitch.conf

# HTCondor's Python transfer plugins answer the startd's `-classad` question from
# the answer they gave here: 0.3 CPU-seconds each at every start and reconfig
# otherwise (see the script).
COPY scripts/image-plugin-answers.sh /usr/local/sbin/image-plugin-answers
RUN image-plugin-answers && rm /usr/local/sbin/image-plugin-answers

# uid 1000 `osg`, as upstream's backfill container; /pilot holds every
# HTCondor directory (LOCAL_DIR, logs, execute). It is 1777 as upstream's, so a
# uid a site forces (--user 12345) works without a mount too; each pilot's own
# directory in it is 0700.
RUN image-apt-suite remove \
 && rm /usr/local/sbin/image-apt-suite \
 && mkdir -p /pilot /etc/condor/tokens-orig.d /etc/osg \
 && chown osg:osg /pilot \
 && chmod 1777 /pilot \
 && python3 -c 'import ospool_ep, pelicanfs; from pelicanfs.core import PelicanFileSystem' \
 && command -v ospool-ep

# HTCondor's tools in `docker exec` sessions (condor_who, condor_config_val,
# condor_status -direct) read the running pilot's configuration with no setup:
# the pilot names it in /tmp/ospool-ep/condor_config (the container's own /tmp,
# beside its state file; prepare.publish_live_config), which sets
# OSPOOL_EP_LIVE_CONFIG. With no pilot running, Debian's configuration as before.
RUN mv /etc/condor/condor_config /etc/condor/condor_config.debian \
 && printf '%s\n' \
        '# ospool-ep image: the configuration of the running pilot, else Debian.' \
        'include ifexist : /tmp/ospool-ep/condor_config' \
        'if ! defined OSPOOL_EP_LIVE_CONFIG' \
        '  include : /etc/condor/condor_config.debian' \
        'endif' >/etc/condor/condor_config \
 && condor_config_val LOCAL_DIR

ENV PYTHONUNBUFFERED=1

VOLUME /pilot
WORKDIR /pilot
USER 1000

# `ospool-ep run` is PID 1 itself (it reaps and signals condor_master): no tini.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=60s --timeout=15s --start-period=300s --retries=3 \
    CMD ["ospool-ep", "health"]
ENTRYPOINT ["ospool-ep"]
CMD ["run"]
