"""End-to-end demo on the embedded default: start `saft serve`, run a SAFT job through the API.

Uploads the real SFSRM microtubule frame (widefield + NanoJ-SRRF edge map), fine-tunes the
shipped default model, prints each iteration's losses and metrics, reconstructs the
recommended iteration and downloads the TIFF and MP4 into the output directory.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "sfsrm-microtubule"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "demo-output")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, default=None, help="default: a temporary dir")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="saft-demo-"))
    port = _free_port()
    env = {**os.environ, "SAFT_DATA_DIR": str(data_dir)}
    log_path = args.out / "server.log"
    print(f"starting embedded service on 127.0.0.1:{port} (data dir {data_dir})")
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "saft_cli.main",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, server, log_path)
        key = (data_dir / "admin-api-key").read_text().strip()
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as api:
            return _run_job(api, args)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def _run_job(api: httpx.Client, args: argparse.Namespace) -> int:
    ids = {}
    for name, fname in (("lr", "widefield.tif"), ("edge", "edgemap_nanoj_srrf.tif")):
        with (EXAMPLE / fname).open("rb") as fh:
            r = api.post("/v1/datasets", files={"file": (fname, fh, "image/tiff")})
        _check(r)
        ids[name] = r.json()["id"]
        print(f"uploaded {fname}: {r.json()['shape']} {r.json()['dtype']}")
    body = {
        "lr_dataset": ids["lr"],
        "edge_dataset": ids["edge"],
        "mode": "saft",
        "sr_model": "default",
        "den_model": "default",
        "params": {"iterations": args.iterations},
    }
    r = api.post("/v1/jobs", json=body)
    _check(r)
    job_id = r.json()["id"]
    print(f"job {job_id} queued")
    job = _wait(api, f"/v1/jobs/{job_id}", "job")
    if job["state"] != "succeeded":
        print(f"job ended {job['state']}: {job.get('error')}", file=sys.stderr)
        return 1
    its = api.get(f"/v1/jobs/{job_id}/iterations")
    _check(its)
    rows = its.json()
    for it in rows["items"] if isinstance(rows, dict) else rows:
        print(
            json.dumps(
                {
                    k: it.get(k)
                    for k in ("iteration", "losses", "rse", "rsp", "resolution", "seconds")
                }
            )
        )
    rec = job.get("recommended_iteration")
    chosen = rec if rec is not None else args.iterations  # 0 (the pretrained network) counts
    print(f"recommended iteration: {job.get('recommended_iteration')}; reconstructing {chosen}")
    r = api.post(f"/v1/jobs/{job_id}/reconstructions", json={"iteration": chosen})
    _check(r)
    rec = _wait(api, f"/v1/reconstructions/{r.json()['id']}", "reconstruction")
    if rec["state"] != "succeeded":
        print(f"reconstruction ended {rec['state']}: {rec.get('error')}", file=sys.stderr)
        return 1
    for key, name in (("tiff_url", "sr.tif"), ("mp4_url", "sr.mp4")):
        with api.stream("GET", rec[key]) as resp:
            _check(resp)
            with (args.out / name).open("wb") as fh:
                for chunk in resp.iter_bytes():
                    fh.write(chunk)
        print(f"downloaded {args.out / name} ({(args.out / name).stat().st_size} bytes)")
    return 0


def _wait(api: httpx.Client, url: str, what: str, timeout: float = 1800) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        r = api.get(url)
        _check(r)
        doc = r.json()
        status = (doc["state"], round(doc.get("progress") or 0, 2))
        if status != last:
            print(f"{what}: {doc['state']} {100 * (doc.get('progress') or 0):.0f}%")
            last = status
        if doc["state"] in ("succeeded", "failed", "cancelled"):
            return doc
        time.sleep(1)
    raise SystemExit(f"{what} did not finish within {timeout} s")


def _wait_ready(base: str, server: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited early; see {log_path}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server not ready after 120 s; see {log_path}")


def _check(r: httpx.Response) -> None:
    if r.status_code >= 400:
        r.read()
        raise SystemExit(f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
