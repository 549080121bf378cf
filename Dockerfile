# meshd's image: `docker build -t meshd:0.1.0 .` from the repository root.
# Two stages: the first builds meshd's wheel, the second installs it (and its dependencies'
# wheels from the package index) into a clean python:3.11-slim, without build tools and
# without the source tree. manifests/base/deployment.yaml runs it as the user below, with a
# read-only root filesystem; ports 5353 (DNS, UDP and TCP), 7946 (ring), 9090 (admin).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package is built from (see .dockerignore): the metadata, then the code.
COPY pyproject.toml README.md ./
# mesh/ carries the demo's manifests (mesh/daemon/examples/, package data): `meshd demo`
# runs in the image too.
COPY mesh ./mesh
COPY dnsserver ./dnsserver
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl \
    && rm -rf /wheels \
    && groupadd --system --gid 65532 meshd \
    && useradd --system --uid 65532 --gid 65532 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin meshd
# Numeric, so that Kubernetes' runAsNonRoot can check it without a passwd lookup.
USER 65532:65532
EXPOSE 5353/udp 5353/tcp 7946/tcp 9090/tcp
ENTRYPOINT ["meshd", "run"]
