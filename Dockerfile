# ospool-ep: an OSPool backfill Execution Point (SPEC §10).
#
# Normal host:   docker build -t ospool-ep .
# No registry:   scripts/build-image.sh  (debootstrap base, then
#                podman build --format docker --build-arg BASE_IMAGE=localhost/debian-trixie-base:latest)
#
# Build with `--format docker` under podman/buildah: the OCI image format has
# no HEALTHCHECK, and buildah drops it with only a warning.

ARG BASE_IMAGE=debian:trixie-slim

# ---------------------------------------------------------------------------
# runtime: HTCondor and the Python dependencies, all from Debian packages.
#   condor (23.9 in trixie) ships the daemons, the tools and the Python
#   bindings htcondor2/classad2, which satisfy the `htcondor` dependency.
FROM ${BASE_IMAGE} AS runtime

ENV LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        condor \
        python3 \
        python3-jinja2 \
        python3-requests \
        python3-prometheus-client \
        ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* /var/log/dpkg.log \
 && python3 -c 'import htcondor2, classad2, jinja2, requests, prometheus_client'

# ---------------------------------------------------------------------------
# build: install the project from the build context, without PyPI, into a
# staging root so pip and setuptools stay out of the final image.
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
FROM runtime

# scripts/build-image.sh passes the package version and the git remote.
ARG VERSION=0.0.0+unknown
ARG SOURCE_URL=
LABEL org.opencontainers.image.title="ospool-ep" \
      org.opencontainers.image.description="OSPool backfill Execution Point: a supervised HTCondor startd pilot" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

COPY --from=build /staging/ /
COPY --from=cvmfsexec /staging/ /

# cvmfsexec's cvmfs2 (EL9 build) needs the FUSE 3 library; /cvmfs-cache and
# /cvmfs-logs are its optional cache and log mounts (SPEC 4.2).
ARG CVMFSEXEC_VERSION=
RUN if [ -n "$CVMFSEXEC_VERSION" ]; then \
        apt-get update \
     && apt-get install -y --no-install-recommends fuse3 \
     && apt-get clean && rm -rf /var/lib/apt/lists/* \
     && mkdir -p /cvmfs-cache /cvmfs-logs /cvmfs && chmod 1777 /cvmfs-cache /cvmfs-logs; \
    fi

# uid 1000 `osg`, as upstream's backfill container; /pilot holds every
# HTCondor directory (LOCAL_DIR, logs, execute) and must be writable by it.
RUN useradd --uid 1000 --user-group --create-home --home-dir /home/osg --shell /bin/bash osg \
 && mkdir -p /pilot /etc/condor/tokens-orig.d /etc/osg \
 && chown osg:osg /pilot \
 && chmod 0755 /pilot \
 && python3 -c 'import ospool_ep' \
 && command -v ospool-ep

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
