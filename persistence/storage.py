"""Artifact storage layout under the data dir (shared storage in multi-machine setups).

Database rows hold paths relative to the data dir, so a data dir can be moved or mounted
elsewhere. A job directory has the CLI run directory layout (see docs/architecture.md).
"""

from __future__ import annotations

import uuid
from pathlib import Path

from saft_core.record import RECORD_CSV

RUN_JSON = "run.json"


class Storage:
    """Paths of every artifact; creates parent directories, never files."""

    def __init__(self, data_dir: str | Path) -> None:
        self.root = Path(data_dir).resolve()

    # uploads
    def dataset_path(self, dataset_id: str) -> Path:
        return self._dir("datasets") / f"{dataset_id}.tif"

    def model_path(self, model_id: str) -> Path:
        return self._dir("models") / f"{model_id}.pth"

    # fine-tuning jobs (= CLI run directories)
    def job_dir(self, job_id: str) -> Path:
        return self._dir("jobs", job_id)

    def checkpoint_path(self, job_id: str, k: int) -> Path:
        return self.job_dir(job_id) / f"iteration_{k:02d}.pth"

    def preview_png_path(self, job_id: str, k: int) -> Path:
        return self._dir("jobs", job_id, "previews") / f"iteration_{k:02d}.png"

    def preview_tif_path(self, job_id: str, k: int) -> Path:
        return self._dir("jobs", job_id, "previews") / f"iteration_{k:02d}.tif"

    def record_csv(self, job_id: str) -> Path:
        return self.job_dir(job_id) / RECORD_CSV

    def run_json(self, job_id: str) -> Path:
        return self.job_dir(job_id) / RUN_JSON

    # reconstructions
    def reconstruction_dir(self, recon_id: str) -> Path:
        return self._dir("reconstructions", recon_id)

    def reconstruction_tiff(self, recon_id: str) -> Path:
        return self.reconstruction_dir(recon_id) / "reconstruction.tif"

    def reconstruction_mp4(self, recon_id: str) -> Path:
        return self.reconstruction_dir(recon_id) / "reconstruction.mp4"

    def tmp_path(self, suffix: str = "") -> Path:
        """A fresh temp path inside the data dir: same filesystem, so os.replace is atomic."""
        return self._dir("tmp") / f"{uuid.uuid4().hex}{suffix}"

    def relative(self, path: str | Path) -> str:
        """The path as stored in the database (relative to the data dir)."""
        try:
            return Path(path).resolve().relative_to(self.root).as_posix()
        except ValueError:
            raise ValueError(f"path {path!s} is outside the data directory") from None

    def resolve(self, rel: str | Path) -> Path:
        """Absolute path of a stored relative path; refuses anything outside the data dir."""
        path = (self.root / rel).resolve()
        if path != self.root and self.root not in path.parents:
            raise ValueError(f"path {rel!s} is outside the data directory")
        return path

    def _dir(self, *parts: str) -> Path:
        d = self.root.joinpath(*parts)
        d.mkdir(parents=True, exist_ok=True)
        return d
