# Tickler as one container: `docker compose up -d` (see docker-compose.yml and
# docs/deployment.md), or `docker build -t tickler .` then `docker run ... tickler`.
#
# The base image is an argument so that a builder without Docker Hub can point it at a
# mirror of the same image (docs/deployment.md, "Building without Docker Hub").
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: the locked dependencies, then the project, into /opt/venv ---------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
RUN python -m venv /opt/venv
# The lock on its own first: this (slow) layer is reused until the lock changes.
# Every package is pinned and hash-checked, so two builds install the same bytes.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY scheduler ./scheduler
COPY adapters ./adapters
COPY storage ./storage
COPY prompts ./prompts
# --no-deps: everything came from the lock; `pip check` fails the build if the lock
# is missing a dependency that pyproject.toml asks for (regenerate it: .ci/lock).
RUN /opt/venv/bin/pip install --no-deps . && /opt/venv/bin/pip check

# --- runtime: the venv on a clean base, a non-root user, the database on /data -------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATABASE_PATH=/data/tickler.db \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080 \
    MPLCONFIGDIR=/tmp/matplotlib
# MPLCONFIGDIR: matplotlib (the /stats chart) keeps its font cache there, built on the
# first chart after a start; off the /data volume, which holds only the database.
# A fixed uid/gid, so a host folder mounted on /data can be chown'ed to match.
RUN groupadd --system --gid 10001 tickler \
    && useradd --system --uid 10001 --gid tickler --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin tickler \
    && mkdir /data \
    && chown tickler:tickler /data
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
# The working folder is the volume: `tickler backup FILE` with a relative FILE lands
# next to the database, on persistent storage.
WORKDIR /data
VOLUME ["/data"]
# /healthz, /metrics, /api/v1 and (webhook mode) the webhook, all on one port.
EXPOSE 8080
# What `docker stop` sends: Tickler stops claiming work, lets in-flight runs finish
# for SHUTDOWN_GRACE_SECONDS (default 20) and puts the rest back as pending.
STOPSIGNAL SIGTERM
# The slim image has no curl; the standard library does the same job.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HTTP_PORT', '8080') + '/healthz', timeout=4)"]
ENTRYPOINT ["tickler"]
CMD ["run"]
