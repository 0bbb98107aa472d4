"""Fixtures of the browser tests: a real ``saft serve`` and Debian's chromium via Playwright.

- ``browser``: session; chromium (``/usr/bin/chromium``) driven by the Playwright Python
  package. Browsers are never downloaded (no ``playwright install``). If either is missing the
  tests fail with the command that installs them: CI has them, so a skip would hide a break.
- ``service``: session; ``saft serve`` (API + one Celery worker + embedded Redis over SQLite)
  on a free port with a temporary data dir, the way a user starts it. ``.url``, ``.key``
  (the admin key it wrote), ``.client`` (httpx with that key), ``.log()``.
- ``tiny_sr_model``: session; a tiny SR network uploaded through POST /v1/models, so a job
  through the dashboard takes seconds on a CPU.
- ``page``: a fresh 1280x800 page (own context: empty sessionStorage); ``page.problems``
  collects page errors and console errors (CSP violations included) for the tests to assert.
- ``params_spec``: the service's GET /v1/params document the dashboard builds its form from.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.client.service_fixtures import free_port, start_serve, stop_serve
from tests.service.api_fixtures import wait_for

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root in a container
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
ARTIFACTS = REPO / "test-artifacts"
INSTALL_HINT = "install it with: bash scripts/install-browser.sh"


def wait_js(page: Any, expression: str, timeout: float, what: str) -> Any:
    """Poll a JS function in the page. (``page.wait_for_function`` evaluates its predicate
    with eval(), which the dashboard's Content-Security-Policy rightly refuses.)"""
    return wait_for(lambda: page.evaluate(expression), timeout, what, poll=0.25)


# ---- browser ----------------------------------------------------------------------------


# Module scope, not session: Playwright's sync API keeps an asyncio loop running until it
# stops, and later test modules (the async client's) need asyncio.run to work.
@pytest.fixture(scope="module")
def playwright_api() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"the Playwright Python package is not installed; {INSTALL_HINT}")
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found (Debian package 'chromium'); {INSTALL_HINT}")
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright_api: Any) -> Iterator[Any]:
    b = playwright_api.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    yield b
    b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT)
    p = context.new_page()
    p.set_default_timeout(20_000)
    problems: list[str] = []
    p.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def on_console(msg: Any) -> None:
        # Expected answers (the wrong key's 401, the invalid job's 422) are logged by the
        # browser as failed resource loads; anything else that is an error counts.
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            problems.append(f"console error: {msg.text}")

    p.on("console", on_console)
    p.problems = problems
    yield p
    context.close()


# ---- service ----------------------------------------------------------------------------


@dataclass
class Service:
    url: str
    key: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    client: Any

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def service() -> Iterator[Service]:
    import httpx

    # Short path: the embedded Redis listens on a unix socket in the data dir (~100 chars max).
    root = Path(tempfile.mkdtemp(prefix="saft-ui-", dir="/tmp"))
    data_dir = root / "d"
    log_path = root / "serve.log"
    port = free_port()
    proc = start_serve(data_dir, port, log_path)
    url = f"http://127.0.0.1:{port}"
    client = None
    try:

        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"saft serve exited:\n{log_path.read_text()}")
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 120, "saft serve to answer /healthz")
        key_file = data_dir / "admin-api-key"
        key = wait_for(lambda: key_file.is_file() and key_file.read_text().strip(), 30, "key")
        wait_for(lambda: " ready." in log_path.read_text(), 120, "the Celery worker")
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        yield Service(url, key, data_dir, log_path, proc, client)
    finally:
        if client is not None:
            client.close()
        stop_serve(proc)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_sr_model(service: Service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import torch

    from saft_core.networks import SRConfig, build_sr, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny_sr.pth"
    save_checkpoint(path, build_sr(SRConfig(nf=8, nb=1, gc=8)), "sr")
    with path.open("rb") as fh:
        resp = service.client.post(
            "/v1/models",
            data={"kind": "sr", "name": "tiny SR"},
            files={"file": ("tiny_sr.pth", fh, "application/octet-stream")},
        )
    assert resp.status_code == 201, resp.text
    return resp.json()


@pytest.fixture
def lr_tiff(tmp_path: Path) -> Path:
    """A tiny 4x32x32 uint16 LR stack (bright blobs on a background, camera-like)."""
    import numpy as np
    import tifffile

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    frames = []
    for t in range(4):
        img = np.full((32, 32), 100.0)
        for cy, cx in [(8, 10), (20, 22), (14 + t, 6), (26, 12 + t)]:
            img += 900 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0)
        frames.append(rng.poisson(img))
    path = tmp_path / "tiny-lr.tif"
    tifffile.imwrite(path, np.asarray(frames, dtype=np.uint16), photometric="minisblack")
    return path


# ---- parameter spec ---------------------------------------------------------------------


@pytest.fixture
def params_spec(service: Service) -> dict[str, Any]:
    resp = service.client.get("/v1/params")
    assert resp.status_code == 200, resp.text
    return resp.json()
