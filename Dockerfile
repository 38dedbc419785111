# covshift demo image: `docker run --rm -p 127.0.0.1:8000:8000 covshift` serves the live dashboard.
# Build: docker build -t covshift .   (see README.md, "Docker demo")
# Offline build (no index reachable): put wheels of torch and the dependencies in
# docker/wheels (scripts/docker-smoke does this)
# and pass --build-arg OFFLINE=1.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# CPU-only torch keeps the image small; override for another build or a local wheel.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG OFFLINE=0
# The server starts a worker process per run: an init as PID 1 forwards signals to the
# whole process group and reaps any process left behind (docker run --init does the
# same with tini; this keeps the image right without the flag).
ARG DUMB_INIT_VERSION=1.2.5.post1
ARG VERSION=0.1.0

LABEL org.opencontainers.image.title="covshift" \
      org.opencontainers.image.description="See what normalization does inside a neural network, live: a dashboard of internal covariate shift" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.documentation="README.md"

# Bound to 0.0.0.0 so that the published port reaches the server; it still answers only
# the loopback host names (DNS rebinding) unless COVSHIFT_ALLOWED_HOSTS names others.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    COVSHIFT_HOST=0.0.0.0 \
    COVSHIFT_PORT=8000 \
    COVSHIFT_LOGDIR=/data \
    COVSHIFT_OPEN_BROWSER=false

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin covshift \
    && mkdir /data && chown covshift:covshift /data
WORKDIR /app

# 1. torch: the largest layer, first, so code changes never reinstall it. The local
#    wheels are bind-mounted, not copied, so they never become a layer of the image.
RUN --mount=type=bind,source=docker/wheels,target=/tmp/wheels \
    if [ "$OFFLINE" = "1" ]; then \
        pip install --no-index --find-links /tmp/wheels "torch==${TORCH_VERSION}"; \
    else \
        pip install --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"; \
    fi

# 2. the other dependencies and the build backend, read from pyproject.toml
#    (this layer is reused until pyproject.toml changes).
COPY pyproject.toml README.md ./
RUN --mount=type=bind,source=docker/wheels,target=/tmp/wheels \
    python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); \
print(*p['project']['dependencies'], *p['build-system']['requires'], sep='\n')" > /tmp/requirements.txt \
    && echo "dumb-init==${DUMB_INIT_VERSION}" >> /tmp/requirements.txt \
    && if [ "$OFFLINE" = "1" ]; then \
        pip install --no-index --find-links /tmp/wheels -r /tmp/requirements.txt; \
    else \
        pip install -r /tmp/requirements.txt; \
    fi

# 3. the project itself.
COPY server/ server/
COPY frontend/ frontend/
RUN pip install --no-deps --no-build-isolation . \
    && rm -rf /tmp/requirements.txt build

USER 10001
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["dumb-init", "--"]
CMD ["covshift", "serve", "--no-browser"]
