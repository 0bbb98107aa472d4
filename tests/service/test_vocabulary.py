"""Each service concept is declared once: job states (``saft_core.states``) and the
per-iteration record (``saft_core.record``); every other spelling must agree with them."""

from __future__ import annotations

import ast
import csv
import dataclasses
import re
from pathlib import Path
from typing import Any, get_args

import pytest

from saft_core import record
from saft_core.states import ACTIVE_STATES, EVENT_KINDS, FINAL_STATES, JOB_STATES
from tests.service.api_fixtures import Api

ROOT = Path(__file__).resolve().parents[2]


def _check_values(table: Any, name: str) -> tuple[str, ...]:
    """The values a table's named CHECK constraint allows, in their order."""
    from sqlalchemy import CheckConstraint

    for c in table.constraints:
        if isinstance(c, CheckConstraint) and c.name.endswith(f"_{name}"):
            return tuple(re.findall(r"'([^']*)'", str(c.sqltext)))
    raise AssertionError(f"{table.name} has no CHECK constraint {name}")


# ---- states ----------------------------------------------------------------------------


def test_states_partition() -> None:
    assert set(JOB_STATES) == ACTIVE_STATES | FINAL_STATES
    assert not ACTIVE_STATES & FINAL_STATES
    assert JOB_STATES[0] == "queued"  # the default state of new rows


def test_table_constraints_allow_exactly_the_declared_states() -> None:
    from persistence.tables import Job, JobEvent, Reconstruction

    assert _check_values(Job.__table__, "state") == JOB_STATES
    assert _check_values(Reconstruction.__table__, "state") == JOB_STATES
    assert _check_values(JobEvent.__table__, "kind") == EVENT_KINDS


def test_migrations_spell_the_declared_states() -> None:
    """The CHECK constraints the migrations create (a new state needs a migration)."""
    text = "".join(p.read_text() for p in sorted((ROOT / "alembic/versions").glob("*.py")))
    found = re.findall(r"\"state IN \(([^)]*)\)\"", text)
    assert found, "no state constraint in the migrations"
    assert {tuple(re.findall(r"'([^']*)'", f)) for f in found} == {JOB_STATES}


def test_api_schemas_use_the_declared_states() -> None:
    from api.schemas import IterationList, JobOut, ReconstructionOut, Vocabulary

    for schema in (JobOut, ReconstructionOut, IterationList):
        assert tuple(schema.model_json_schema()["properties"]["state"]["enum"]) == JOB_STATES
    kinds = Vocabulary.model_json_schema()["properties"]["event_kinds"]["items"]["enum"]
    assert tuple(kinds) == EVENT_KINDS


def test_openapi_state_filters_use_the_declared_states(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    enums = [
        tuple(p["schema"].get("enum") or p["schema"].get("anyOf", [{}])[0].get("enum") or ())
        for path in ("/v1/jobs", "/v1/reconstructions")
        for p in spec["paths"][path]["get"]["parameters"]
        if p["name"] == "state"
    ]
    assert enums == [JOB_STATES, JOB_STATES]


def test_client_and_cli_use_the_declared_states() -> None:
    import click

    import saft_client
    from saft_cli.client_commands import jobs
    from saft_client.models import Job, Reconstruction

    assert saft_client.FINAL_STATES == FINAL_STATES
    for state in JOB_STATES:
        job = Job.from_json({"id": "j", "state": state})
        rec = Reconstruction.from_json({"id": "r", "state": state})
        assert job.finished == rec.finished == (state in FINAL_STATES)
    (option,) = [p for p in jobs.params if p.name == "state"]
    assert isinstance(option.type, click.Choice)
    assert tuple(option.type.choices) == JOB_STATES


def test_finish_rejects_a_state_that_is_not_final() -> None:
    from persistence.jobs import finish_job

    for state in ACTIVE_STATES:
        with pytest.raises(ValueError, match="not a final state"):
            finish_job(None, "job", state)  # type: ignore[arg-type]


def _string_sets(path: Path) -> list[set[str]]:
    """The sets of string constants in each tuple/list/set literal (and subscript) of a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        elts = getattr(node, "elts", None)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and elts:
            out.append({e.value for e in elts if isinstance(e, ast.Constant)})
    return out


def test_no_python_module_spells_the_state_lists_again() -> None:
    """Only saft_core/states.py lists the states; everyone else imports them."""
    offenders = []
    for package in ("api", "persistence", "worker", "saft_client", "saft_cli", "saft_core"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "saft_core/states.py":
                continue
            for strings in _string_sets(path):
                if len(strings & set(JOB_STATES)) >= 3:
                    offenders.append(f"{path.relative_to(ROOT)}: {sorted(strings)}")
    assert offenders == []


# ---- the per-iteration record -----------------------------------------------------------


def test_record_declaration() -> None:
    assert record.csv_columns("saft")[:2] == ["iteration", "total"]
    assert record.csv_columns("wsf") == ["iteration", "total", "wsf", *record.METRIC_NAMES]
    assert record.METRIC_NAMES == (
        "rse",
        "rsp",
        "resolution",
        "frc_resolution",
        "haze_ratio",
        "seconds",
    )
    assert len(record.BY_NAME) == len(record.FIELDS)  # names are unique
    assert record.BY_NAME["resolution"].unit == "SR pixels"


def test_iteration_result_record_and_csv_header_follow_the_declaration(tmp_path: Path) -> None:
    """``IterationResult.record()`` keys and the run directory CSV header, both modes."""
    np = pytest.importorskip("numpy")
    from saft_core.finetune import IterationResult
    from saft_core.rundir import RunDir

    for mode in record.MODES:
        losses = {name: 0.5 for name in record.loss_names(mode)}
        result = IterationResult(
            iteration=1,
            losses=losses,
            seconds=1.23456,
            rse=1.0,
            rsp=0.9,
            resolution=3.0,
            frc_resolution=2.5,
            haze_ratio=0.01,
            sigma=None,
            preview=np.zeros((4, 4), np.float32),
            checkpoint={},
        )
        row = result.record()
        metrics = {
            "rse": 1.0,
            "rsp": 0.9,
            "resolution": 3.0,
            "frc_resolution": 2.5,
            "haze_ratio": 0.01,
        }
        assert row == record.make_record(1, losses, metrics, seconds=1.23456)
        assert list(row) == record.csv_columns(mode)
        run = RunDir(tmp_path / mode, mode)
        run.root.mkdir()
        run.write_records([row])
        with run.record_csv.open(newline="") as fh:
            assert next(csv.reader(fh)) == record.csv_columns(mode)


def test_iteration_out_table_and_client_carry_the_record_metrics() -> None:
    from api.schemas import IterationOut
    from persistence.tables import Iteration
    from saft_client.models import Iteration as ClientIteration

    wanted = {"iteration", "losses", *record.METRIC_NAMES}
    assert wanted <= set(IterationOut.model_fields)
    assert wanted <= {f.name for f in dataclasses.fields(ClientIteration)}
    assert wanted <= set(Iteration.__table__.columns.keys())
    for name in ("iteration", *record.METRIC_NAMES):
        field = IterationOut.model_fields[name]
        assert field.description == record.BY_NAME[name].description
        optional = type(None) in get_args(field.annotation)
        assert optional == record.BY_NAME[name].optional, name
    schema = IterationOut.model_json_schema()["properties"]["losses"]["description"]
    assert all(name in schema for mode in record.MODES for name in record.loss_names(mode))


def test_iteration_events_follow_the_declaration() -> None:
    """The SSE ``iteration`` event the service stores and the one the client synthesises."""
    from saft_client._events import EventTracker
    from saft_client.models import Iteration, Job

    data = record.event_data(2, {"total": 1.0}, {"rse": 1.0, "seconds": 2.0}, sigma=1.1)
    assert list(data) == ["iteration", "losses", *record.METRIC_NAMES, "sigma"]
    it = Iteration.from_json({"iteration": 1, "losses": {"total": 1.0}, "rse": 2.0})
    job = Job.from_json({"id": "j", "state": "running", "iterations_done": 1})
    (ev,) = [e for e in EventTracker().synthesise(job, [it]) if e.kind == "iteration"]
    assert list(ev.data) == ["iteration", "losses", *record.METRIC_NAMES]
    assert ev.data["rse"] == 2.0


def test_vocabulary_endpoint(api: Api) -> None:
    """Public (the dashboard reads it before a key is entered) and equal to the declarations."""
    resp = api.client.get("/v1/vocabulary")
    assert resp.status_code == 200
    body = resp.json()
    assert tuple(body["job_states"]) == JOB_STATES
    assert set(body["final_states"]) == FINAL_STATES
    assert set(body["active_states"]) == ACTIVE_STATES
    assert tuple(body["event_kinds"]) == EVENT_KINDS
    assert [f["name"] for f in body["iteration_record"]] == [f.name for f in record.FIELDS]
    assert body["csv_columns"] == record.CSV_COLUMNS


def test_the_record_file_name_is_shared() -> None:
    """The service's job directory is a CLI run directory: same CSV name."""
    from persistence import storage
    from saft_core import rundir

    assert storage.RECORD_CSV == rundir.RECORD_CSV == record.RECORD_CSV
