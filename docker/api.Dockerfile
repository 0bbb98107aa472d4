# The API image: FastAPI over PostgreSQL + Redis, no GPU. Build from the repository root:
#   docker build -f docker/api.Dockerfile -t saft-api .
# (docker-compose.yml does this.) See docs/deployment.md.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The API never imports torch, but the package depends on it: install the CPU build first
# (~200 MB instead of the multi-GB CUDA wheels a plain `pip install torch` pulls), then pin
# whatever got installed so no later step can replace it.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}" \
 && python -c "import importlib.metadata as m; print('torch==' + m.version('torch'))" \
      > /etc/pip-constraints.txt
ENV PIP_CONSTRAINT=/etc/pip-constraints.txt

WORKDIR /app

# Dependencies in their own layer (from pyproject.toml alone), so editing the code does not
# reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep=chr(10))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# Editable install on purpose: persistence/migrate.py finds alembic.ini and alembic/ next to
# the package directories (REPO_ROOT), which only holds when the code runs from /app rather
# than from a copy in site-packages. The build fails here if that ever stops being true.
COPY . .
RUN pip install --no-deps -e . \
 && chmod 0755 docker/entrypoint.sh \
 && test -f "$(python -c 'import persistence.migrate as m; print(m.REPO_ROOT)')/alembic.ini" \
 && saft --help > /dev/null \
 && python -m compileall -q api persistence saft_cli saft_core worker alembic

# Non-root. The uid is the same in the worker image: both write the shared data volume.
# A named volume mounted on /data starts with this directory's owner; for NFS, build both
# images with --build-arg APP_UID=<owner of the export>.
ARG APP_UID=10001
RUN groupadd --gid "${APP_UID}" saft \
 && useradd --uid "${APP_UID}" --gid saft --create-home --home-dir /home/saft \
      --shell /usr/sbin/nologin saft \
 && mkdir -p /data \
 && chown saft:saft /data
USER saft
ENV SAFT_DATA_DIR=/data
VOLUME ["/data"]

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["/app/docker/entrypoint.sh", "healthcheck-api"]
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["api"]
