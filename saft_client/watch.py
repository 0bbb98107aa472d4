"""Watch folder: fine-tune every new stack that lands in a directory, once.

Each poll (every ``interval`` seconds):

1. New stacks matching the pattern are submitted once they are complete: size and mtime
   unchanged since the previous poll (acquisition software writes slowly) and a whole TIFF
   (every page and its pixel data present). ``NAME_edge.tif`` beside ``NAME.tif`` is sent
   as its edge map; ``*_edge`` and ``*_saft`` files are never inputs.
2. Every file in flight advances one step where it can: upload -> job -> (job finished)
   reconstruction of the recommended iteration -> download of ``NAME_saft.tif`` and
   ``NAME_saft.mp4`` next to the input (or into ``results``).

Progress is recorded after every step in ``DIR/.saft-watch.json`` (written atomically):
file name, size, mtime and sha256 -> dataset ids, job id and state, reconstruction, outputs.
A restarted watcher reads it and neither re-uploads nor resubmits; submission uses an
Idempotency-Key derived from the content, so even a crash between submitting and recording
cannot create a second job. A job that failed is recorded as failed and not submitted
again (unless the file changes, or ``retry_failed``); when the service cannot be reached a
step is tried ``max_attempts`` times, then the file waits for the next start of the watcher.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from saft_client.client import SaftClient
from saft_client.errors import SaftAPIError, SaftClientError, ServerError
from saft_client.tiffcheck import is_complete_tiff

log = logging.getLogger(__name__)

STATE_NAME = ".saft-watch.json"
LOCK_NAME = ".saft-watch.lock"
STATE_VERSION = 1
DERIVED_SUFFIXES = ("_edge", "_saft")  # edge maps and our own results: never inputs
# Steps still to do, in order; each names the method that performs it.
ACTIVE = ("new", "uploaded", "submitted", "reconstruct", "reconstructing", "downloading")
FINAL = ("done", "failed", "error")


@dataclass(frozen=True)
class WatchOptions:
    """What to submit for each stack and where results go."""

    pattern: str = "*.tif"
    results: Path | None = None
    mode: str = "saft"
    sr_model: str = "default"  # 'default' or a model id (upload checkpoints beforehand)
    den_model: str | None = "default"
    params: Mapping[str, Any] = field(default_factory=dict)
    video: bool = True
    max_attempts: int = 3
    unreadable_after_s: float = 120.0  # unchanged but never a whole TIFF: give up on it
    retry_failed: bool = False


def is_input(path: Path) -> bool:
    """Stacks to process: not hidden, not an edge map, not one of our results."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return not path.name.startswith(".") and not stem.lower().endswith(DERIVED_SUFFIXES)


def edge_for(path: Path) -> Path | None:
    """``NAME_edge.tif`` (any .tif/.tiff case) beside ``NAME.tif``, if it exists."""
    stem = path.name[: -len(path.suffix)]
    for suffix in dict.fromkeys((path.suffix, ".tif", ".tiff", ".TIF", ".TIFF")):
        candidate = path.with_name(f"{stem}_edge{suffix}")
        if candidate.is_file():
            return candidate
    return None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            h.update(block)
    return h.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_size, st.st_mtime_ns


class StateFile:
    """``.saft-watch.json``: replaced atomically, so a crash leaves the old or the new one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: dict[str, dict[str, Any]] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise SaftClientError(f"cannot read {path}: {exc}", field="state") from None
            self.files = dict(data.get("files") or {})

    def save(self) -> None:
        payload = json.dumps(
            {"version": STATE_VERSION, "files": self.files}, indent=1, sort_keys=True
        )
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class Watcher:
    """Submits each complete stack in ``folder`` once and collects its results."""

    def __init__(
        self,
        client: SaftClient,
        folder: str | Path,
        options: WatchOptions | None = None,
        *,
        echo: Callable[[str], Any] | None = None,
    ) -> None:
        self.client = client
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise SaftClientError(f"no such directory: {self.folder}", field="dir")
        self.options = options or WatchOptions()
        self.echo = echo or log.info
        self.state = StateFile(self.folder / STATE_NAME)
        self._observed: dict[str, tuple[Any, ...]] = {}
        self._unreadable_since: dict[str, float] = {}
        self._resume_interrupted()

    # ---- state ----------------------------------------------------------------------------

    def _resume_interrupted(self) -> None:
        """A new watcher retries what lost contact with the service (bounded per start)."""
        changed = False
        for name, entry in list(self.state.files.items()):
            if entry.get("status") == "error" and entry.get("error_at") in ACTIVE:
                entry.update(status=entry["error_at"], attempts=0)
                changed = True
            elif self.options.retry_failed and entry.get("status") in ("failed", "error"):
                del self.state.files[name]
                changed = True
        if changed:
            self.state.save()

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        return self.state.files

    def candidates(self) -> list[Path]:
        found = (p for p in self.folder.glob(self.options.pattern) if p.is_file())
        return sorted(p for p in found if is_input(p))

    def pending(self) -> bool:
        """Work left: a file not yet accepted (still being written) or one in flight."""
        if any(e.get("status") in ACTIVE for e in self.entries.values()):
            return True
        for path in self.candidates():
            entry = self.entries.get(path.name)
            sig = _signature(path)
            if sig is not None and (entry is None or (entry["size"], entry["mtime_ns"]) != sig):
                return True
        return False

    # ---- polling --------------------------------------------------------------------------

    def poll(self) -> None:
        """One pass: accept complete new stacks, then advance everything in flight."""
        for path in self.candidates():
            self._consider(path)
        for name, entry in list(self.entries.items()):
            if entry.get("status") in ACTIVE:
                self._advance(name, entry)

    def run(
        self, interval: float = 2.0, *, once: bool = False, stop: threading.Event | None = None
    ) -> None:
        """Poll every ``interval`` s until ``stop`` is set (or, with ``once``, no work is left)."""
        stop = stop or threading.Event()
        with self._lock():
            while not stop.is_set():
                self.poll()
                if once and not self.pending():
                    return
                stop.wait(interval)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One watcher per directory: two would race on the state file."""
        try:
            import fcntl
        except ImportError:  # not on POSIX: no lock, document one watcher per folder
            yield
            return
        with (self.folder / LOCK_NAME).open("a") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise SaftClientError(
                    f"another watcher is running on {self.folder}", field="dir"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _consider(self, path: Path) -> None:
        name = path.name
        sig = _signature(path)
        if sig is None:
            return
        entry = self.entries.get(name)
        if entry is not None and (entry["size"], entry["mtime_ns"]) == sig:
            return  # recorded and unchanged
        edge = edge_for(path)
        seen = (sig, edge.name if edge else None, _signature(edge) if edge else None)
        previous = self._observed.get(name)
        self._observed[name] = seen
        if previous != seen:
            self._unreadable_since.pop(name, None)  # it is being written: not stuck
            return  # first sight, or still being written: wait for one more poll
        if not is_complete_tiff(path) or (edge is not None and not is_complete_tiff(edge)):
            since = self._unreadable_since.setdefault(name, time.monotonic())
            if time.monotonic() - since >= self.options.unreadable_after_s:
                self._record_unreadable(name, sig, edge)
            return
        self._unreadable_since.pop(name, None)
        digest = sha256_file(path)
        if _signature(path) != sig:
            return  # written to while we hashed it
        if entry is not None and entry.get("sha256") == digest:
            entry.update(size=sig[0], mtime_ns=sig[1])  # touched or copied: same content
            self.state.save()
            return
        if entry is not None:
            self.echo(f"{name}: changed since job {entry.get('job_id')}; submitting it again")
        self.entries[name] = {
            "status": "new",
            "size": sig[0],
            "mtime_ns": sig[1],
            "sha256": digest,
            "edge": self._edge_record(edge),
            "attempts": 0,
            "seen_at": _now(),
        }
        self.state.save()

    def _edge_record(self, edge: Path | None) -> dict[str, Any] | None:
        if edge is None:
            return None
        sig = _signature(edge) or (0, 0)
        return {"name": edge.name, "size": sig[0], "mtime_ns": sig[1], "sha256": sha256_file(edge)}

    def _record_unreadable(self, name: str, sig: tuple[int, int], edge: Path | None) -> None:
        which = edge.name if edge is not None and is_complete_tiff(self.folder / name) else name
        self.entries[name] = {
            "status": "failed",
            "size": sig[0],
            "mtime_ns": sig[1],
            "sha256": None,
            "error": f"{which} is not a complete TIFF (unchanged for "
            f"{self.options.unreadable_after_s:g} s)",
            "attempts": 0,
            "seen_at": _now(),
        }
        self.state.save()
        self.echo(f"{name}: failed: {self.entries[name]['error']}")

    # ---- steps ----------------------------------------------------------------------------

    def _advance(self, name: str, entry: dict[str, Any]) -> None:
        """Run steps until one has to wait for the service; record each one."""
        while entry.get("status") in ACTIVE:
            status = entry["status"]
            try:
                getattr(self, f"_step_{status}")(name, entry)
            except SaftAPIError as exc:
                if isinstance(exc, ServerError) or exc.status in (408, 429):
                    self._transient(name, entry, exc)
                else:  # the service refused: retrying the same request cannot help
                    self._fail(name, entry, exc.message)
                self.state.save()
                return
            except (SaftClientError, OSError) as exc:
                self._transient(name, entry, exc)
                self.state.save()
                return
            if entry.get("status") == status:
                return  # waiting for the service
            entry["attempts"] = 0
            entry.pop("last_error", None)
            entry["updated_at"] = _now()
            self.state.save()

    def _transient(self, name: str, entry: dict[str, Any], exc: Exception) -> None:
        entry["attempts"] = int(entry.get("attempts", 0)) + 1
        entry["last_error"] = str(exc)
        if entry["attempts"] >= self.options.max_attempts:
            entry["error_at"] = entry["status"]
            entry["status"] = "error"
            entry["error"] = str(exc)
            self.echo(f"{name}: giving up for now after {entry['attempts']} attempts: {exc}")
        else:
            log.warning("%s: %s (attempt %d)", name, exc, entry["attempts"])

    def _fail(self, name: str, entry: dict[str, Any], error: str) -> None:
        entry["status"] = "failed"
        entry["error"] = error
        entry["updated_at"] = _now()
        self.echo(f"{name}: failed: {error}")

    def _step_new(self, name: str, entry: dict[str, Any]) -> None:
        path = self.folder / name
        ds = self.client.upload_dataset(path)
        if ds.sha256 and ds.sha256 != entry["sha256"]:
            # Rewritten after we hashed it: forget it and let it settle again.
            del self.entries[name]
            self._observed.pop(name, None)
            entry["status"] = "changed"  # ends this entry's steps
            self.echo(f"{name}: changed while uploading; waiting for it to settle")
            return
        entry["lr_dataset"] = ds.id
        edge = entry.get("edge")
        if edge is not None:
            entry["edge_dataset"] = self.client.upload_dataset(self.folder / edge["name"]).id
        entry["status"] = "uploaded"

    def _idempotency_key(self, entry: dict[str, Any]) -> str:
        """Same content and request -> same key -> the service returns the same job."""
        request = {
            "mode": self.options.mode,
            "sr_model": self.options.sr_model,
            "den_model": self.options.den_model,
            "params": dict(self.options.params),
            "edge": (entry.get("edge") or {}).get("sha256"),
            "lr_dataset": entry.get("lr_dataset"),
        }
        digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        return f"saft-watch-{entry['sha256'][:32]}-{digest[:16]}"

    def _step_uploaded(self, name: str, entry: dict[str, Any]) -> None:
        job = self.client.submit_job(
            entry["lr_dataset"],
            edge=entry.get("edge_dataset"),
            mode=self.options.mode,
            sr_model=self.options.sr_model,
            den_model=self.options.den_model,
            idempotency_key=self._idempotency_key(entry),
            params=self.options.params,
        )
        entry.update(job_id=job.id, job_state=job.state, status="submitted")
        edge = f" with edge map {entry['edge']['name']}" if entry.get("edge") else ""
        self.echo(f"{name}: submitted job {job.id}{edge}")

    def _step_submitted(self, name: str, entry: dict[str, Any]) -> None:
        job = self.client.get_job(entry["job_id"])
        entry["job_state"] = job.state
        if not job.finished:
            return
        if not job.succeeded:
            self._fail(name, entry, job.error or f"job {job.id} {job.state}")
            return
        k = job.recommended_iteration
        if k is None:  # no iteration met the rule: the last one is the best guess
            k = job.iterations_done
        entry.update(iteration=k, recommended_iteration=job.recommended_iteration)
        entry["status"] = "reconstruct"
        self.echo(f"{name}: job {job.id} succeeded; reconstructing iteration {k}")

    def _step_reconstruct(self, name: str, entry: dict[str, Any]) -> None:
        k = int(entry["iteration"])
        # Reuse one we asked for before a crash, rather than reconstructing twice.
        for rec in self.client.list_reconstructions(entry["job_id"]):
            if rec.iteration == k and rec.state not in ("failed", "cancelled"):
                break
        else:
            rec = self.client.reconstruct(entry["job_id"], k, video=self.options.video)
        entry.update(reconstruction_id=rec.id, status="reconstructing")

    def _step_reconstructing(self, name: str, entry: dict[str, Any]) -> None:
        rec = self.client.get_reconstruction(entry["reconstruction_id"])
        if not rec.finished:
            return
        if not rec.succeeded:
            self._fail(name, entry, rec.error or f"reconstruction {rec.id} {rec.state}")
            return
        entry.update(tiff_url=rec.tiff_url, mp4_url=rec.mp4_url, status="downloading")

    def output_paths(self, name: str) -> tuple[Path, Path]:
        """``NAME_saft.tif`` and ``NAME_saft.mp4`` beside the input or in ``results``."""
        stem = Path(name).stem
        out_dir = self.options.results or self.folder
        return out_dir / f"{stem}_saft.tif", out_dir / f"{stem}_saft.mp4"

    def _step_downloading(self, name: str, entry: dict[str, Any]) -> None:
        tif, mp4 = self.output_paths(name)
        tif.parent.mkdir(parents=True, exist_ok=True)
        outputs = [str(self.client.download(entry["tiff_url"], tif))]
        if entry.get("mp4_url"):
            outputs.append(str(self.client.download(entry["mp4_url"], mp4)))
        entry.update(outputs=outputs, status="done")
        self.echo(f"{name}: wrote {', '.join(Path(p).name for p in outputs)}")
