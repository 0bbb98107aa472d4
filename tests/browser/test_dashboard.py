"""The browser dashboard against a real ``saft serve``, in Debian's chromium (Playwright).

The end-to-end test is what a user does: sign in, submit a job through the form (uploading
the stack), watch it finish live, reconstruct an iteration and play the MP4.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import ARTIFACTS, VIEWPORT, Service, wait_js

pytestmark = pytest.mark.slow


def sign_in(page: Any, service: Service) -> None:
    page.goto(service.url + "/")
    page.get_by_label("API key").fill(service.key)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#workspace").wait_for(state="visible")


def screenshot(page: Any, name: str) -> None:
    """Into test-artifacts/, once every image is decoded (else it may be painted blank)."""
    page.evaluate(
        "() => Promise.all([...document.images].filter(i => i.src)"
        ".map(i => i.decode().catch(() => null)))"
    )
    page.screenshot(path=str(ARTIFACTS / name))


def job_count(service: Service) -> int:
    resp = service.client.get("/v1/jobs", params={"limit": 1})
    assert resp.status_code == 200, resp.text
    return int(resp.json()["total"])


def test_submit_follow_and_reconstruct(
    page: Any,
    service: Service,
    params_spec: dict[str, Any],
    tiny_sr_model: dict[str, Any],
    lr_tiff: Path,
) -> None:
    from playwright.sync_api import expect

    t0 = time.monotonic()
    sign_in(page, service)
    expect(page.locator("#whoami")).to_contain_text(service.key[:8])

    # -- submit through the form: LR upload, the tiny model, 2 iterations
    page.get_by_label("Low-resolution stack").set_input_files(lr_tiff)
    sr_select = page.get_by_label("SR model")
    # The first model listing loads the default networks in a subprocess (torch): slow.
    expect(sr_select.locator(f'option[value="{tiny_sr_model["id"]}"]')).to_have_count(
        1, timeout=90_000
    )
    sr_select.select_option(tiny_sr_model["id"])
    page.get_by_label("Iterations").fill("2")
    page.get_by_label("SR learning rate (SRlr)").fill("1e-4")
    page.get_by_role("button", name="Upload and submit").click()
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[1]

    job = service.client.get(f"/v1/jobs/{job_id}").json()
    assert job["sr_model"] == tiny_sr_model["id"]
    assert job["params"]["iterations"] == 2 and job["params"]["lr"] == 1e-4
    ds = service.client.get(f"/v1/datasets/{job['lr_dataset']}").json()
    assert ds["filename"] == lr_tiff.name and ds["shape"] == [4, 32, 32]

    # -- the job list shows it; the job page follows it live (SSE) to the end
    expect(page.locator(f'.job-item[data-job="{job_id}"]')).to_be_visible()
    expect(page.locator(".job-status .badge")).to_have_text("succeeded", timeout=240_000)
    t_job = time.monotonic() - t0
    expect(page.locator(".live")).to_have_attribute("data-status", "ended")
    log = page.locator(".event-log")
    expect(log).to_contain_text("iteration 2 done")
    expect(log).to_contain_text("state → succeeded")
    expect(page.locator(f'.job-item[data-job="{job_id}"] .badge')).to_have_text(
        "succeeded", timeout=15_000
    )

    # -- previews: fetched with the key as blobs; every iteration's image decoded
    for k in (0, 1, 2):
        expect(page.locator(f'.iter-card[data-iteration="{k}"] img')).to_be_visible()
    wait_js(
        page,
        """() => [0, 1, 2].every(k => {
            const img = document.querySelector(`.iter-card[data-iteration="${k}"] img`);
            return img && img.complete && img.naturalWidth > 0 && img.src.startsWith("blob:");
        })""",
        30,
        "the three iteration previews",
    )
    widths = page.evaluate(
        "() => [...document.querySelectorAll('#gallery img')].map(i => i.naturalWidth)"
    )
    assert widths == [128, 128, 128]  # 4x the 32 px LR frame

    # -- charts: one line per loss component, metrics drawn, recommended iteration marked
    job = service.client.get(f"/v1/jobs/{job_id}").json()
    its = service.client.get(f"/v1/jobs/{job_id}/iterations").json()["items"]
    components = sorted(its[-1]["losses"])
    drawn = page.evaluate(
        """() => [...document.querySelectorAll('#loss-chart g.series')]
                   .filter(g => /L/.test(g.querySelector('path.line').getAttribute('d')))
                   .map(g => g.dataset.series).sort()"""
    )
    assert drawn == components, (drawn, components)
    assert {"total", "degradation", "hessian", "sparse", "rotation", "den"} <= set(drawn)
    # one line per quality metric of the record that the service reported a value for
    from saft_core.record import METRIC_NAMES

    shown = [m for m in METRIC_NAMES if m != "seconds" and any(it[m] is not None for it in its)]
    assert {"rse", "rsp", "resolution"} <= set(shown)
    assert page.locator("#metric-chart path.line").count() == len(shown), shown
    rec = job["recommended_iteration"]
    if rec is not None:
        expect(page.locator(f'.iter-card[data-iteration="{rec}"]')).to_have_class(
            re.compile(r"\brecommended\b")
        )
        expect(page.locator(".iter-card.recommended")).to_have_count(1)
        expect(page.locator("#loss-chart line.highlight")).to_have_count(1)

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot(page, "dashboard.png")

    # -- reconstruct iteration 1 and play the MP4 (fetched with the key, blob URL)
    page.get_by_role("button", name="Reconstruct the stack with iteration 1").click()
    recon = page.locator('.rec[data-iteration="1"]')
    expect(recon).to_be_visible()
    expect(recon.locator(".badge")).to_have_text("succeeded", timeout=180_000)
    video = recon.locator("video")
    expect(video).to_have_attribute("src", re.compile(r"^blob:"), timeout=30_000)
    assert video.get_attribute("data-blob-type") == "video/mp4"
    assert int(video.get_attribute("data-blob-size") or 0) > 0
    h264 = page.evaluate(
        """() => document.createElement('video').canPlayType('video/mp4; codecs="avc1.64001E"')"""
    )
    if h264:
        wait_js(
            page,
            "() => document.querySelector('.rec[data-iteration=\"1\"] video').readyState >= 1",
            30,
            "the MP4 metadata",
        )
        size = page.evaluate(
            "() => { const v = document.querySelector('.rec[data-iteration=\"1\"] video');"
            " return [v.videoWidth, v.videoHeight, v.duration]; }"
        )
        assert size[0] == 128 and size[1] == 128 and size[2] > 0, size
    else:  # a chromium without proprietary codecs: the bytes arrived, the note says so
        expect(recon.locator(".codec-note")).to_be_visible()
    tiff = recon.get_by_role("link", name=re.compile(r"^Download TIFF"))
    expect(tiff).to_have_attribute("href", re.compile(r"/v1/reconstructions/[0-9a-f]+/tiff$"))
    with page.expect_download() as dl:
        tiff.click()
    saved = ARTIFACTS / "reconstruction.tif"
    dl.value.save_as(saved)
    import tifffile

    assert tifffile.imread(saved).shape == (4, 128, 128)
    saved.unlink()

    recon.scroll_into_view_if_needed()
    screenshot(page, "dashboard-reconstruction.png")
    # The whole job page in one picture: a viewport tall enough for everything.
    page.set_viewport_size({"width": VIEWPORT["width"], "height": 2000})
    page.locator("#content").evaluate("el => { el.scrollTop = 0; }")
    screenshot(page, "dashboard-full.png")
    assert page.problems == []
    print(
        f"\njob {job_id}: succeeded after {t_job:.1f} s; "
        f"reconstructed and played after {time.monotonic() - t0:.1f} s; H.264: {h264 or 'no'}"
    )


def test_wrong_key_shows_an_error(page: Any, service: Service, params_spec: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    page.goto(service.url + "/")
    page.get_by_label("API key").fill("not-a-valid-key")
    page.get_by_role("button", name="Sign in").click()
    error = page.locator("#signin-error")
    expect(error).to_contain_text("invalid API key")
    expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
    assert page.locator("#workspace").is_hidden()
    assert page.evaluate("() => sessionStorage.length") == 0
    # The right key then works, and survives a reload (sessionStorage).
    page.get_by_label("API key").fill(service.key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#workspace")).to_be_visible()
    page.reload()
    expect(page.locator("#workspace")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#signin")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0
    assert page.problems == []


def test_invalid_parameter_is_shown_next_to_its_field(
    page: Any, service: Service, params_spec: dict[str, Any], lr_tiff: Path
) -> None:
    from playwright.sync_api import expect

    sign_in(page, service)
    before = job_count(service)
    page.get_by_label("Low-resolution stack").set_input_files(lr_tiff)
    page.locator("details.advanced summary").click()
    page.get_by_label("RSF kernel size (ksize)").fill("4")
    page.get_by_role("button", name="Upload and submit").click()
    # The API's own message, under the ksize input, which is marked invalid and focused.
    ksize_error = page.locator('[data-field="params.ksize"] .field-error')
    expect(ksize_error).to_have_text("ksize must be an odd integer from 3 to 31 LR px, got 4")
    ksize = page.get_by_label("RSF kernel size (ksize)")
    expect(ksize).to_have_attribute("aria-invalid", "true")
    expect(ksize).to_be_focused()
    expect(page.locator("#form-error")).to_contain_text("correct the marked field")
    assert page.locator(".field.invalid").count() == 1
    assert "#/jobs/" not in page.url
    assert job_count(service) == before
    # Editing the field clears its error; a missing LR file is caught before any upload.
    ksize.fill("5")
    expect(ksize_error).to_be_hidden()
    page.get_by_label("Low-resolution stack").set_input_files([])
    page.get_by_role("button", name="Upload and submit").click()
    expect(page.locator('[data-field="lr_dataset"] .field-error')).to_contain_text(
        "Choose the low-resolution TIFF stack"
    )
    assert job_count(service) == before
    assert page.problems == []


def test_form_is_built_from_the_parameter_spec(
    page: Any, service: Service, params_spec: dict[str, Any]
) -> None:
    """One input per field of GET /v1/params, advanced ones folded away, ranges as hints."""
    from playwright.sync_api import expect

    sign_in(page, service)
    for field in params_spec["fields"]:
        name = field["name"]
        box = page.locator(f'#params-fields [data-field="params.{name}"]')
        expect(box).to_have_count(1)
        expect(box.locator(f"#f-{name}")).to_have_count(1)
        inside_advanced = box.locator("xpath=ancestor::details").count() == 1
        assert inside_advanced == field["advanced"], name
    presets = page.get_by_label("Preset").locator("option")
    expect(presets).to_have_count(len(params_spec["presets"]))
    expect(page.locator('[data-field="params.lr"] .hint')).to_have_text("(0, 1e-3]")
    expect(page.locator('[data-field="params.iterations"] .hint')).to_have_text("1–50")
    background = page.locator("#f-background option")
    (bg_field,) = [f for f in params_spec["fields"] if f["name"] == "background"]
    expect(background).to_have_count(len(bg_field["choices"]))
    page.locator("details.advanced summary").click()
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": VIEWPORT["width"], "height": 1400})
    screenshot(page, "dashboard-form.png")
    assert page.problems == []


def test_preset_fills_the_form_and_the_job_stores_its_values(
    page: Any,
    service: Service,
    params_spec: dict[str, Any],
    tiny_sr_model: dict[str, Any],
    lr_tiff: Path,
) -> None:
    """The form opens on the default preset; choosing "reference" fills it from GET
    /v1/params; the request carries the preset and only the fields the user changed, and the
    stored job is the service's own resolution of the preset."""
    from playwright.sync_api import expect

    from saft_core.params import DEFAULT_PRESET, SaftParams

    sign_in(page, service)
    preset = page.get_by_label("Preset")
    expect(preset).to_have_value(DEFAULT_PRESET)
    expect(page.get_by_label("SR learning rate (SRlr)")).to_have_value("1e-3")
    page.locator("details.advanced summary").click()
    expect(page.get_by_label("Weight averaging (EMA)")).to_have_value("0.95")
    page.get_by_label("Haze level").fill("0.7")  # changed, then replaced by the preset's
    preset.select_option("reference")
    expect(page.get_by_label("SR learning rate (SRlr)")).to_have_value("1e-5")
    for label, value in [
        ("Consistency level", "1"),
        ("Weight averaging (EMA)", "0"),
        ("Warm-up steps", "0"),
        ("Haze level", "0"),
        ("Training tile", "64"),
        ("Windows per tile", "1"),
        ("Background", "mean"),
    ]:
        expect(page.get_by_label(label)).to_have_value(value)
    # iterations: null in the preset (the service picks it per mode), shown as what it means
    iterations = page.get_by_label("Iterations")
    expect(iterations).to_have_value("")
    expect(iterations).to_have_attribute("placeholder", re.compile("5 for mode saft"))

    page.get_by_label("Low-resolution stack").set_input_files(lr_tiff)
    sr_select = page.get_by_label("SR model")
    expect(sr_select.locator(f'option[value="{tiny_sr_model["id"]}"]')).to_have_count(
        1, timeout=90_000
    )
    sr_select.select_option(tiny_sr_model["id"])
    iterations.fill("1")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/jobs")) as req:
        page.get_by_role("button", name="Upload and submit").click()
    assert req.value.post_data_json["params"] == {"preset": "reference", "iterations": 1}
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-f]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    service.client.post(f"/v1/jobs/{job_id}/cancel")  # its parameters are what is tested
    job = service.client.get(f"/v1/jobs/{job_id}").json()
    assert job["params"] == SaftParams.preset("reference", iterations=1).to_dict()

    # The job page lists the new values.
    params = page.locator("dl.params")
    for name, value in [
        ("weight averaging (EMA)", "0"),
        ("warm-up steps", "0"),
        ("haze level", "0"),
        ("background", "mean"),
        ("windows per tile", "1"),
    ]:
        expect(params.locator(f'dt:text-is("{name}") + dd')).to_have_text(value)

    # A typed advanced value wins over the preset; a bad one is shown next to its field,
    # the folded advanced section opened to show it.
    page.goto(service.url + "/#/new")
    page.get_by_label("Preset").select_option("adaptive")
    page.locator("details.advanced").evaluate("d => { d.open = true; }")
    page.get_by_label("Low-resolution stack").set_input_files(lr_tiff)
    page.get_by_label("Weight averaging (EMA)").fill("1.5")
    page.locator("details.advanced").evaluate("d => { d.open = false; }")
    before = job_count(service)
    page.get_by_role("button", name="Upload and submit").click()
    ema_error = page.locator('[data-field="params.ema"] .field-error')
    expect(ema_error).to_contain_text("ema must be in [0, 1), got 1.5")
    expect(ema_error).to_be_visible()
    assert job_count(service) == before
    assert page.problems == []


def test_sse_parser_handles_any_chunking(page: Any, service: Service) -> None:
    """The fetch()-based SSE parser, fed the stream split at every possible position."""
    page.goto(service.url + "/")
    result = page.evaluate(
        """async () => {
        const { SSEParser } = await import("./dashboard/sse.js");
        const text = "retry: 100\\n\\n: keep-alive\\n\\nid: 5\\nevent: state\\n" +
            'data: {"state":"running"}\\n\\nid: 6\\r\\nevent: progress\\r\\n' +
            "data: a\\r\\ndata:b\\r\\n\\r\\ndata: no id\\n\\n";
        const runs = [];
        for (let cut = 0; cut <= text.length; cut += 1) {
            const p = new SSEParser();
            const evs = [...p.feed(text.slice(0, cut)), ...p.feed(text.slice(cut))];
            runs.push(JSON.stringify({ evs, retry: p.retry, last: p.lastEventId }));
        }
        return [...new Set(runs)];
    }"""
    )
    assert len(result) == 1, result
    import json

    parsed = json.loads(result[0])
    assert parsed["retry"] == 100 and parsed["last"] == "6"
    assert parsed["evs"] == [
        {"id": "5", "event": "state", "data": '{"state":"running"}'},
        {"id": "6", "event": "progress", "data": "a\nb"},
        {"id": "6", "event": "message", "data": "no id"},
    ]


def test_dashboard_files_are_served_with_types_and_revalidation(service: Service) -> None:
    import httpx

    page = httpx.get(service.url + "/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="dashboard/app.js">' in page.text
    for name, ctype in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
        ("sse.js", "text/javascript; charset=utf-8"),
        ("chart.js", "text/javascript; charset=utf-8"),
        ("job-view.js", "text/javascript; charset=utf-8"),
        ("params-form.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ]:
        resp = httpx.get(f"{service.url}/dashboard/{name}")
        assert resp.status_code == 200, name
        assert resp.headers["content-type"] == ctype
        assert resp.headers["cache-control"] == "no-cache"
        assert resp.headers["x-content-type-options"] == "nosniff"
        again = httpx.get(
            f"{service.url}/dashboard/{name}", headers={"If-None-Match": resp.headers["etag"]}
        )
        assert again.status_code == 304 and again.content == b""
    for bad in ["nope.js", "..%2Fmain.py", ".hidden.js", "index.py"]:
        resp = httpx.get(f"{service.url}/dashboard/{bad}")
        assert resp.status_code == 404, bad
        assert resp.headers["content-type"].startswith("application/problem+json")
    # Not part of the API contract.
    paths = httpx.get(service.url + "/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/dashboard") for p in paths)
