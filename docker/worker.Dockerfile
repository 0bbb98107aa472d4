# The GPU worker image: one Celery worker, one job at a time, on the one GPU the container is
# given. Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t saft-worker .
# (docker-compose.yml does this.) Needs the NVIDIA driver and container toolkit on the host to
# run, not to build. See docs/deployment.md.
#
# The base brings CUDA, cuDNN and a matching torch; pick another pytorch/pytorch tag (same
# Python >= 3.10) with --build-arg BASE_IMAGE=... to match the facility's driver.
ARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Keep the base's CUDA torch: pin the installed version so that resolving the project's
# dependencies can never replace it (a CPU or differently built torch from PyPI would make
# the worker silently lose the GPU or break against the base's CUDA libraries).
RUN python -c "import importlib.metadata as m; print('torch==' + m.version('torch'))" \
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
# than from a copy in site-packages. The build fails here if that ever stops being true, or
# if the torch of the base image was replaced after all.
COPY . .
RUN pip install --no-deps -e . \
 && chmod 0755 docker/entrypoint.sh \
 && test -f "$(python -c 'import persistence.migrate as m; print(m.REPO_ROOT)')/alembic.ini" \
 && python -c "import importlib.metadata as m; pin = open('/etc/pip-constraints.txt').read().strip(); assert pin == 'torch==' + m.version('torch'), pin" \
 && saft --help > /dev/null \
 && python -m compileall -q api persistence saft_cli saft_core worker alembic

# Non-root, with the same uid as the api image: both write the shared data volume. A named
# volume mounted on /data starts with this directory's owner; for NFS, build both images with
# --build-arg APP_UID=<owner of the export>. numba (SRRF edge maps via nanopyx) caches compiled
# kernels next to the sources, which this user cannot write, so give it a cache of its own.
ARG APP_UID=10001
RUN groupadd --gid "${APP_UID}" saft \
 && useradd --uid "${APP_UID}" --gid saft --create-home --home-dir /home/saft \
      --shell /usr/sbin/nologin saft \
 && mkdir -p /data \
 && chown saft:saft /data
USER saft
ENV SAFT_DATA_DIR=/data \
    SAFT_DEVICE=cuda \
    NUMBA_CACHE_DIR=/home/saft/.cache/numba
VOLUME ["/data"]

# Celery's solo pool cannot answer a ping while a job runs, so the check also accepts a fresh
# job heartbeat in the database (see entrypoint.sh). start-period covers importing torch,
# the GPU check and the migrations.
HEALTHCHECK --interval=60s --timeout=30s --start-period=120s --retries=3 \
  CMD ["/app/docker/entrypoint.sh", "healthcheck-worker"]
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["worker"]
