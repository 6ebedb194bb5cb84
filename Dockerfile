# One image for both halves of InferGraph on Kubernetes:
#   default: the router, with KServe's flags    docker run IMAGE --graph-json '{...}'
#   the controller                               docker run IMAGE infergraph controller
#                                                 (config/manager sets `command:` to that)
# Build:  docker build -t infergraph/router:0.1.0 .
# The build stage makes a venv; the final stage is the slim base plus that venv and a user:
# no compiler, no pip cache, no package-manager downloads.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY router ./router
COPY schemas ./schemas
COPY graph_controller ./graph_controller
# Every dependency ships manylinux wheels, so nothing compiles; bytecode is compiled here
# because the final stage runs with a read-only root filesystem.
RUN /opt/venv/bin/pip install . && /opt/venv/bin/python -m compileall -q /opt/venv

FROM python:3.11-slim
RUN groupadd --system --gid 10001 infergraph \
 && useradd --system --uid 10001 --gid infergraph --no-create-home --shell /usr/sbin/nologin infergraph
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "router"]
