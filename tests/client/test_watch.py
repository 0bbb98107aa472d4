"""The watch folder against a real ``saft serve``: stability before submission, exactly one
job per file across restarts, edge maps, results, failures recorded and not retried."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from saft_client import Job, SaftClient
from saft_client.tiffcheck import is_complete_tiff
from saft_client.watch import STATE_NAME, Watcher, WatchOptions, edge_for, is_input
from tests.client.service_fixtures import Service, unique, write_stack

TIMEOUT_S = 240.0


# ---- without a service --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"bigtiff": True}, {"compression": "zlib"}, {"tile": (16, 16)}, {"byteorder": ">"}],
)
def test_a_cut_tiff_is_incomplete(tmp_path: Path, kwargs: dict[str, object]) -> None:
    path = tmp_path / "s.tif"
    data = (np.random.default_rng(0).random((5, 32, 32)) * 1000).astype(np.uint16)
    tifffile.imwrite(path, data, photometric="minisblack", **kwargs)
    raw = path.read_bytes()
    assert is_complete_tiff(path)
    with tifffile.TiffFile(path) as tif:
        data_end = max(
            o + c
            for page in tif.pages
            for o, c in zip(page.dataoffsets, page.databytecounts, strict=True)
        )
    cut = tmp_path / "cut.tif"
    for n in range(0, data_end, 97):  # short of the last pixel byte
        cut.write_bytes(raw[:n])
        assert not is_complete_tiff(cut), n
    (tmp_path / "text.tif").write_text("not a tiff")
    assert not is_complete_tiff(tmp_path / "text.tif")
    assert not is_complete_tiff(tmp_path / "missing.tif")


def test_inputs_and_edge_maps_by_name(tmp_path: Path) -> None:
    for name in ("a.tif", "a_edge.tif", "a_saft.tif", "B_EDGE.TIF", ".hidden.tif", "c.tiff"):
        (tmp_path / name).write_bytes(b"")
    assert [is_input(tmp_path / n) for n in ("a.tif", "a_edge.tif", "a_saft.tif")] == [
        True,
        False,
        False,
    ]
    assert not is_input(tmp_path / "B_EDGE.TIF") and not is_input(tmp_path / ".hidden.tif")
    assert edge_for(tmp_path / "a.tif") == tmp_path / "a_edge.tif"
    assert edge_for(tmp_path / "c.tiff") is None


# ---- with the service ---------------------------------------------------------------------


def _jobs_of(client: SaftClient, *names: str) -> list[Job]:
    """Jobs whose LR dataset was uploaded under one of ``names`` (the service is shared)."""
    filenames = {d.id: d.filename for d in client.list_datasets()}
    return [j for j in client.list_jobs() if filenames.get(j.lr_dataset) in names]


def _options(model: str, **kw: object) -> WatchOptions:
    return WatchOptions(sr_model=model, params={"iterations": 1}, **kw)  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_file_being_written_is_submitted_only_once_complete(
    client: SaftClient, tiny_model: str, tmp_path: Path
) -> None:
    name = f"{unique('grow')}.tif"
    whole = write_stack(tmp_path / "whole.tif", t=6)
    raw = whole.read_bytes()
    whole.unlink()
    target = tmp_path / name
    watcher = Watcher(client, tmp_path, _options(tiny_model))

    target.write_bytes(raw[: len(raw) // 3])  # the acquisition has started
    watcher.poll()  # first sight
    assert watcher.pending() and name not in watcher.entries
    watcher.poll()  # unchanged, but not a whole TIFF yet (the acquisition paused)
    assert name not in watcher.entries
    with target.open("ab") as fh:
        fh.write(raw[len(raw) // 3 : 2 * len(raw) // 3])
    watcher.poll()  # grew: wait for it to settle
    assert name not in watcher.entries
    with target.open("ab") as fh:
        fh.write(raw[2 * len(raw) // 3 :])
    watcher.poll()  # changed again
    assert name not in watcher.entries and not _jobs_of(client, name)
    watcher.poll()  # stable and complete: submitted
    entry = watcher.entries[name]
    assert entry["status"] == "submitted" and entry["size"] == len(raw)
    [job] = _jobs_of(client, name)
    assert entry["job_id"] == job.id and job.iterations_total == 1


@pytest.mark.slow
def test_restarts_submit_each_file_once_use_edge_maps_and_write_results(
    client: SaftClient, tiny_model: str, tmp_path: Path
) -> None:
    a, b = unique("a"), unique("b")
    write_stack(tmp_path / f"{a}.tif", seed=1)
    write_stack(tmp_path / f"{a}_edge.tif", seed=1, edge=True)
    write_stack(tmp_path / f"{b}.tif", seed=2)
    first = Watcher(client, tmp_path, _options(tiny_model))
    first.poll()
    first.poll()
    assert {n: e["status"] for n, e in first.entries.items()} == {
        f"{a}.tif": "submitted",
        f"{b}.tif": "submitted",
    }
    jobs = {j.id: j for j in _jobs_of(client, f"{a}.tif", f"{b}.tif")}
    assert set(jobs) == {e["job_id"] for e in first.entries.values()}
    job_a = client.get_job(first.entries[f"{a}.tif"]["job_id"])
    assert client.get_dataset(job_a.edge_dataset or "").filename == f"{a}_edge.tif"
    assert client.get_job(first.entries[f"{b}.tif"]["job_id"]).edge_dataset is None
    del first

    # A crash after submitting b but before recording it: the state still says uploaded.
    state_path = tmp_path / STATE_NAME
    state = json.loads(state_path.read_text())
    job_b = state["files"][f"{b}.tif"].pop("job_id")
    state["files"][f"{b}.tif"]["status"] = "uploaded"
    state_path.write_text(json.dumps(state))
    uploads = len(client.list_datasets())

    second = Watcher(client, tmp_path, _options(tiny_model))  # the restart
    second.run(interval=0.2, once=True)
    assert second.entries[f"{b}.tif"]["job_id"] == job_b  # same Idempotency-Key, same job
    assert len(_jobs_of(client, f"{a}.tif", f"{b}.tif")) == 2
    assert len(client.list_datasets()) == uploads  # nothing uploaded again
    for stem in (a, b):
        entry = second.entries[f"{stem}.tif"]
        assert entry["status"] == "done", entry
        tif, mp4 = tmp_path / f"{stem}_saft.tif", tmp_path / f"{stem}_saft.mp4"
        assert entry["outputs"] == [str(tif), str(mp4)]
        assert tifffile.imread(tif).shape == (4, 128, 128)
        assert mp4.read_bytes()[4:8] == b"ftyp"

    third = Watcher(client, tmp_path, _options(tiny_model))
    third.poll()
    third.poll()  # the results and the edge map beside the inputs are not inputs
    assert set(third.entries) == {f"{a}.tif", f"{b}.tif"} and not third.pending()
    assert len(client.list_datasets()) == uploads


@pytest.mark.slow
def test_refused_and_unreadable_files_are_recorded_and_not_retried(
    client: SaftClient, tiny_model: str, tmp_path: Path
) -> None:
    bad, junk = unique("bad"), unique("junk")
    write_stack(tmp_path / f"{bad}.tif")
    (tmp_path / f"{junk}.tif").write_bytes(b"II*\0" + b"\0" * 100)
    options = WatchOptions(
        sr_model=tiny_model, params={"iterations": 1, "sigma": -1.0}, unreadable_after_s=0.0
    )
    watcher = Watcher(client, tmp_path, options)
    watcher.run(interval=0.05, once=True)
    entry = watcher.entries[f"{bad}.tif"]
    assert entry["status"] == "failed" and "sigma" in entry["error"]
    assert "job_id" not in entry  # refused at submission: no job
    assert watcher.entries[f"{junk}.tif"]["status"] == "failed"
    assert "not a complete TIFF" in watcher.entries[f"{junk}.tif"]["error"]
    uploads = len(client.list_datasets())

    again = Watcher(client, tmp_path, options)  # restarted with the same settings
    again.poll()
    again.poll()
    assert len(client.list_datasets()) == uploads and not again.pending()

    fixed = Watcher(client, tmp_path, _options(tiny_model, retry_failed=True))
    fixed.poll()
    fixed.poll()
    assert fixed.entries[f"{bad}.tif"]["status"] == "submitted"  # asked for explicitly


@pytest.mark.slow
def test_saft_watch_once_writes_results_to_another_directory(
    service: Service, tiny_model: str, tmp_path: Path
) -> None:
    from saft_cli.main import _register_service_commands, cli

    _register_service_commands()
    inbox, results = tmp_path / "inbox", tmp_path / "results"
    inbox.mkdir()
    name = unique("w")
    write_stack(inbox / f"{name}.tif")
    env = {"SAFT_URL": service.url, "SAFT_API_KEY": service.key}
    args = ["watch", str(inbox), "--once", "--interval", "0.2", "--results", str(results)]
    args += ["--model", tiny_model, "--iterations", "1", "--no-video"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    assert f"{name}.tif: submitted job" in result.stdout
    assert f"{name}.tif: wrote {name}_saft.tif" in result.stdout
    assert tifffile.imread(results / f"{name}_saft.tif").shape == (4, 128, 128)
    assert not (results / f"{name}_saft.mp4").exists()
    assert sorted(p.name for p in inbox.iterdir()) == [".saft-watch.json", ".saft-watch.lock",
                                                        f"{name}.tif"]  # fmt: skip
