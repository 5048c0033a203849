# syntax=docker/dockerfile:1
#
# triaged container image.
#
#   docker build -t triaged .
#   docker run --rm -p 127.0.0.1:8080:8080 --stop-timeout 60 \
#       -e TRIAGED_DATABASE_URL=postgresql://triaged:secret@db:5432/triaged triaged
#
# Other subcommands replace CMD:  docker run ... triaged api | worker | migrate --status |
# config check. Without TRIAGED_DATABASE_URL the daemon runs an embedded PostgreSQL 16 in the
# /var/lib/triaged volume (fine for a single container; deploy/docker-compose.yml uses a
# PostgreSQL service instead).
#
# Stop timeout: `docker stop` waits 10 s by default before SIGKILL, less than the daemon's
# worst-case drain (pre-stop 0 s + HTTP grace 10 s + job grace 15 s). A Dockerfile cannot
# change that: use `docker run --stop-timeout 60`, compose `stop_grace_period: 60s`, or
# Kubernetes `terminationGracePeriodSeconds: 60`.

# Both stages must use the same Python: the venv's bin/python is a symlink to the base
# image's interpreter. Pin a digest here for reproducible builds.
ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/triaged/venv
ENV PATH=/opt/triaged/venv/bin:$PATH

WORKDIR /src

# 1. Dependencies only, in their own layer: rebuilt when the lock changes, not on every
#    source edit. requirements.lock (`make lock`) pins every package, direct or not, to
#    one version and its hashes: every build installs the same bytes, and a file that
#    does not match its hash stops the build.
COPY requirements.lock ./
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --require-hashes --only-binary=:all: -r requirements.lock

# 2. The real package, built as a wheel (so the image holds exactly what a release ships:
#    code, migrations/*.sql) and installed without touching the dependencies. pip and
#    setuptools are not needed at run time and leave the venv; `triaged --help` proves the
#    console script and its imports work.
COPY pyproject.toml README.md ./
COPY daemon daemon
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /wheels . \
 && pip install --no-deps --force-reinstall /wheels/triaged-*.whl \
 && pip uninstall --yes pip setuptools \
 && triaged --help >/dev/null

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="triaged" \
      org.opencontainers.image.description="On-premise document triage service: ingestion pipeline, LLM analysis, cases, retention, CSV export." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# A fixed, unprivileged UID/GID (numeric USER below, so Kubernetes runAsNonRoot can verify
# it). PostgreSQL, embedded or not, refuses to run as root anyway.
RUN groupadd --system --gid 10001 triaged \
 && useradd --system --uid 10001 --gid triaged --home-dir /var/lib/triaged \
            --no-create-home --shell /usr/sbin/nologin triaged \
 && install -d -m 0700 -o triaged -g triaged /var/lib/triaged

COPY --from=builder /opt/triaged/venv /opt/triaged/venv

# TRIAGED_HTTP_HOST: a container must listen on its own interface, not on loopback;
# publish the port on the host side (-p 127.0.0.1:8080:8080) to restrict access.
ENV PATH=/opt/triaged/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1 \
    TRIAGED_HTTP_HOST=0.0.0.0 \
    TRIAGED_HTTP_PORT=8080 \
    TRIAGED_DATA_DIR=/var/lib/triaged

WORKDIR /var/lib/triaged
# Declared after the directory exists with its owner, so a new named volume starts out
# owned by triaged (Docker copies ownership and mode into an empty volume).
VOLUME ["/var/lib/triaged"]

USER 10001:10001

EXPOSE 8080

# Liveness: the process and its event loop answer, whatever the database does (readiness,
# /readyz, is for load balancers and compose's depends_on; a container restart would not
# fix a database outage). python:3.11-slim has no curl: use the interpreter. urlopen raises
# on a non-2xx status or a timeout, which exits 1.
# Note: `triaged worker` serves no HTTP: disable this check for worker containers
# (compose: `healthcheck: {disable: true}`, docker run: `--no-healthcheck`).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('TRIAGED_HTTP_PORT', '8080'), timeout=4)"]

# The daemon drains on SIGTERM (SIGTERM is also Docker's default; stated for clarity).
STOPSIGNAL SIGTERM

# Exec form, no shell: the daemon is PID 1 and receives SIGTERM itself (a shell-form
# `sh -c` would swallow it and `docker stop` would end in SIGKILL). No tini/--init needed:
# the daemon installs its own SIGTERM/SIGINT handlers (PID 1 ignores signals it has no
# handler for), and it waits for every child it starts; the one process it can inherit is
# the embedded PostgreSQL's postmaster (pg_ctl daemonizes it), which it stops itself just
# before exiting. If you add tools that leave orphans, run with `docker run --init`.
ENTRYPOINT ["triaged"]
CMD ["serve"]
