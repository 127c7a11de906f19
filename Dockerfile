# wsmon's server: `wsmon serve` on 0.0.0.0:8080 as a non-root user. The build context is the top
# of the repository: `docker build -t wsmon:latest .`, or deploy/docker-compose.yml's `build:`.
# The 8080 here is deploy.ports.wsmon of alerting/config.libsonnet (a test holds them equal).

# The wheel is built in a stage of its own, so the image holds the installed package and none of
# the sources or the build's own setuptools. Python 3.11: the oldest the package supports and the
# one its test suite runs on.
FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
# What pyproject.toml builds from: its readme and license files, and the wsmon package with the
# top-level folders its relative symlinks (wsmon/exporter -> ../exporter, ...) point at. COPY
# keeps a symlink inside a copied folder as a symlink, so each folder goes where it is in the
# checkout for the links to resolve.
COPY pyproject.toml README.md LICENSE ./
COPY wsmon/ wsmon/
COPY exporter/ exporter/
COPY alerting/ alerting/
COPY loadgen/ loadgen/
COPY dashboards/ dashboards/
COPY deploy/ deploy/
# No extras: the server alone (its dependencies are resolved when the wheel is installed below).
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
# Logs reach `docker logs` as they are written, not when a buffer fills.
ENV PYTHONUNBUFFERED=1
# A copied wheel stays in its layer after the rm, but it is a few hundred kB; a bind mount from
# the wheel stage would need BuildKit, which the classic builder lacks. pip compiles the bytecode
# as root here, since the server's user cannot write site-packages.
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir --disable-pip-version-check /tmp/wheels/wsmon-*.whl \
    && rm -rf /tmp/wheels
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin wsmon
USER 10001:10001
EXPOSE 8080
# SIGTERM drains (clients get close code 1001) for drain_seconds; Docker's default stop timeout
# of 10 s is the default drain, so give `docker stop` a longer --time (Compose sets
# stop_grace_period).
STOPSIGNAL SIGTERM
# Liveness only (/healthz); /readyz turns 503 while draining or at capacity, which is not a
# reason to restart. The slim image has no curl: Python's urllib fetches it.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"]
ENTRYPOINT ["wsmon"]
# Flags, not WSMON_* variables: they are dropped with this CMD when a command (`serve --config
# FILE`, as in Compose) replaces it, and would otherwise override that file's settings. The
# server starts only with a way to check tokens: mount a JWT secret and set
# WSMON_AUTH_JWT_SECRET_FILE (Kubernetes does), or pass --no-auth for a trial (Compose does).
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
