"""Static checks of the container deployment: docker-compose.yml, docker/*, .dockerignore.

No Docker engine is needed (nor used): the files are parsed and cross-checked against the
code they start, so renaming a setting, a CLI command or an option, or the API module, fails
here instead of at a facility's first `docker compose up`. When a compose CLI is installed it
also validates the file (`config` only parses; it needs no daemon).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILES = {
    "api": REPO / "docker" / "api.Dockerfile",
    "worker": REPO / "docker" / "worker.Dockerfile",
}
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
DOCKERIGNORE = REPO / ".dockerignore"
DEPLOYMENT_DOC = REPO / "docs" / "deployment.md"
# Where the Dockerfiles put the repository (WORKDIR /app + COPY . .).
IMAGE_ROOT = "/app"

SERVICES = ("api", "worker", "redis", "postgres")
SAFT_NAME = re.compile(r"\bSAFT_[A-Z0-9_]+\b")
INTERPOLATION = re.compile(r"\$\{[^}]*\}")


# ---- helpers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def worker_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services built from (or running the image of) the worker Dockerfile."""
    worker_image = compose["services"]["worker"].get("image")
    return {
        name: svc
        for name, svc in compose["services"].items()
        if _dockerfile_of(svc) == DOCKERFILES["worker"]
        or (worker_image and svc.get("image") == worker_image)
    }


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services running our code: the API and every worker."""
    return {"api": compose["services"]["api"], **worker_services(compose)}


def _dockerfile_of(svc: dict[str, Any]) -> Path | None:
    build = svc.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        return (REPO / build / "Dockerfile").resolve()
    return (REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).resolve()


def _env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...] form
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored by Docker
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        instr, _, args = buf.partition(" ")
        out.append((instr.upper(), args.strip()))
        buf = ""
    assert not buf, f"{path.name}: unterminated continuation line"
    return out


def exec_form(args: str, where: str) -> list[str]:
    """A JSON exec-form argument list (shell form would break signal delivery to PID 1)."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        pytest.fail(f"{where} is not in exec form (JSON array): {args}")
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), where
    return value


def entrypoint_commands() -> set[str]:
    """The labels of the top-level `case "${1:-}" in` of docker/entrypoint.sh."""
    text = ENTRYPOINT.read_text()
    block = text.split('case "${1:-}" in', 1)[1]
    labels = re.findall(r"^  ([a-z][a-z-]*)\)$", block, re.MULTILINE)
    assert {"api", "worker"} <= set(labels), labels
    return set(labels)


def image_path_to_repo(path: str) -> Path:
    assert path.startswith(IMAGE_ROOT + "/"), f"{path} is not under {IMAGE_ROOT}"
    return REPO / path[len(IMAGE_ROOT) + 1 :]


def saft_cli() -> click.Group:
    from saft_cli.main import _register_service_commands, cli

    _register_service_commands()
    return cli


def saft_invocations(text: str) -> list[list[str]]:
    """Argument lists of every `saft ...` command in shell text (or Dockerfile RUN lines).

    `saft` counts where a program stands: first in a simple command (after `exec` or `RUN`),
    or after `docker compose exec|run [options] SERVICE`.
    """
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError:  # e.g. an unbalanced quote in a heredoc's Python
            continue
        command: list[str] = []
        for token in [*tokens, ";"]:
            if token and set(token) <= set(";&|()<>"):
                found.extend(_saft_args(command))
                command = []
                if token.startswith(("<", ">")):
                    command = ["<redirect>"]  # the target word is no command
            else:
                command.append(token)
    return found


def _saft_args(words: list[str]) -> list[list[str]]:
    while words and words[0] in {"exec", "RUN", "CMD", "time"}:
        words = words[1:]
    if words[:2] == ["docker", "compose"] and words[2:3] in (["exec"], ["run"]):
        words = words[3:]
        while words and words[0].startswith("-"):
            words = words[1:]
        words = words[1:]  # the service
    if words[:1] == ["saft"]:
        return [words[1:]]
    return []


def resolve_saft(args: list[str]) -> tuple[click.Command, list[str]]:
    """The click command an argument list reaches, and the arguments left for it."""
    cmd: click.Command = saft_cli()
    rest = list(args)
    while isinstance(cmd, click.Group) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        sub = cmd.commands.get(name)
        assert sub is not None, f"`saft {' '.join(args)}`: no command {name!r} in {cmd.name}"
        cmd = sub
    return cmd, rest


def option_names(cmd: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for param in cmd.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def bash_blocks(markdown: str) -> str:
    return "\n".join(re.findall(r"```(?:bash|sh|console)\n(.*?)```", markdown, re.DOTALL))


# ---- services, volumes, dependencies ----------------------------------------------------


def test_required_services_and_builds(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in SERVICES:
        assert name in services, f"service {name} missing"
    assert _dockerfile_of(services["api"]) == DOCKERFILES["api"]
    assert _dockerfile_of(services["worker"]) == DOCKERFILES["worker"]
    for name, svc in services.items():
        dockerfile = _dockerfile_of(svc)
        if dockerfile is not None:
            assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
            assert Path(REPO / svc["build"].get("context", ".")).resolve() == REPO, (
                f"{name}: the build context must be the repository root (COPY . .)"
            )
    assert services["redis"]["image"].split(":")[0] == "redis"
    assert services["redis"]["image"].split(":")[1].startswith("7")
    assert services["postgres"]["image"] == "postgres:16"


def test_depends_on_healthy_and_restart(compose: dict[str, Any]) -> None:
    for name, svc in app_services(compose).items():
        deps = svc.get("depends_on")
        assert isinstance(deps, dict), f"{name}: depends_on needs the long form with conditions"
        for dep in ("postgres", "redis"):
            assert deps.get(dep, {}).get("condition") == "service_healthy", (name, dep)
    for name, svc in compose["services"].items():
        assert svc.get("restart") in {"always", "unless-stopped", "on-failure"}, (
            f"{name}: no restart policy"
        )


def test_volumes_declared_and_data_dir_shared(compose: dict[str, Any]) -> None:
    declared = set((compose.get("volumes") or {}).keys())
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            source = vol["source"] if isinstance(vol, dict) else vol.split(":")[0]
            if not source.startswith((".", "/", "~", "$")):
                assert source in declared, f"{name}: volume {source} is not declared"
    # Rows store paths relative to the data dir: every app container must see the same volume
    # at the same path, and that path must be SAFT_DATA_DIR.
    mounts = set()
    for name, svc in app_services(compose).items():
        data_dir = _env(svc).get("SAFT_DATA_DIR")
        assert data_dir, f"{name}: SAFT_DATA_DIR not set"
        targets = {
            v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes", []) if isinstance(v, str)
        }
        assert data_dir in targets, f"{name}: nothing mounted at SAFT_DATA_DIR={data_dir}"
        mounts.add((targets[data_dir], data_dir))
    assert len(mounts) == 1, f"api and workers must share one data volume and path: {mounts}"
    assert compose["services"]["redis"].get("volumes"), "redis needs a volume for its AOF"
    assert compose["services"]["postgres"].get("volumes"), "postgres needs a volume"


def test_redis_durable_and_noeviction(compose: dict[str, Any]) -> None:
    cmd = _as_list(compose["services"]["redis"].get("command"))
    assert cmd[0] == "redis-server", cmd
    pairs = dict(zip(cmd[1::2], cmd[2::2], strict=False))
    assert pairs.get("--appendonly") == "yes", cmd
    assert pairs.get("--maxmemory-policy") == "noeviction", cmd


def test_gpu_reservation_one_distinct_gpu_per_worker(compose: dict[str, Any]) -> None:
    workers = worker_services(compose)
    assert "worker" in workers
    gpus_taken: dict[str, str] = {}
    for name, svc in workers.items():
        devices = svc.get("deploy", {}).get("resources", {}).get("reservations", {})
        devices = devices.get("devices")
        assert devices and len(devices) == 1, f"{name}: needs exactly one device reservation"
        dev = devices[0]
        assert dev.get("driver") == "nvidia", name
        assert "gpu" in dev.get("capabilities", []), name
        assert ("count" in dev) != ("device_ids" in dev), f"{name}: count or device_ids"
        if "count" in dev:
            # Docker turns `count: N` into GPUs 0..N-1, whichever container asks.
            assert dev["count"] == 1, f"{name}: one GPU per worker"
            ids = ["0"]
        else:
            ids = [str(i) for i in dev["device_ids"]]
            assert len(ids) == 1, f"{name}: one GPU per worker"
        assert ids[0] not in gpus_taken, f"{name} and {gpus_taken[ids[0]]} share GPU {ids[0]}"
        gpus_taken[ids[0]] = name
        assert "replicas" not in svc.get("deploy", {}), f"{name}: replicas would share the GPU"
    assert "deploy" not in compose["services"]["api"], "the API needs no GPU"


# ---- healthchecks -----------------------------------------------------------------------


def test_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    tests = {}
    for name in SERVICES:
        hc = services[name].get("healthcheck")
        assert hc and hc.get("test") and not hc.get("disable"), f"{name}: no healthcheck"
        tests[name] = " ".join(_as_list(hc["test"]))
    assert "redis-cli" in tests["redis"] and "ping" in tests["redis"]
    assert "pg_isready" in tests["postgres"]
    commands = entrypoint_commands()
    for name, svc in app_services(compose).items():
        test = _as_list(svc["healthcheck"]["test"])
        assert test[0] == "CMD", f"{name}: exec form"
        assert image_path_to_repo(test[1]) == ENTRYPOINT, test
        assert test[2] in commands, f"{name}: entrypoint has no command {test[2]}"
    assert _as_list(services["api"]["healthcheck"]["test"])[2] == "healthcheck-api"
    for name, svc in worker_services(compose).items():
        assert _as_list(svc["healthcheck"]["test"])[2] == "healthcheck-worker", name


def test_api_healthcheck_route_exists() -> None:
    """healthcheck-api GETs /healthz: the API must serve it."""
    assert "/healthz" in ENTRYPOINT.read_text()
    sources = "\n".join(p.read_text() for p in (REPO / "api").rglob("*.py"))
    assert re.search(r"""\.get\(\s*["']/healthz["']""", sources), "no /healthz route in api/"


def worker_healthcheck_script() -> str:
    """The Python that ``entrypoint.sh healthcheck-worker`` runs (its heredoc)."""
    return ENTRYPOINT.read_text().split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]


def test_worker_healthcheck_matches_the_worker() -> None:
    """The worker check pings its own node and recognises its own claims in the database."""
    text = ENTRYPOINT.read_text()
    node = re.search(r'^NODE_NAME="([^"]+)@%h"', text, re.MULTILINE)
    assert node, "entrypoint.sh defines NODE_NAME=<name>@%h"
    assert 'exec saft worker --name "$NODE_NAME"' in text
    script = worker_healthcheck_script()
    compile(script, "healthcheck-worker", "exec")  # run for real in tests/service
    assert f'destination=[f"{node.group(1)}@{{host}}"]' in script
    # The busy branch relies on these names and on the claim format host:pid:token.
    from persistence import tables
    from persistence.jobs import worker_name
    from persistence.settings import Settings

    for cls in (tables.Job, tables.Reconstruction):
        for column in ("state", "worker", "heartbeat_at", "id"):
            assert hasattr(cls, column), (cls.__name__, column)
    assert callable(tables.utcnow)
    assert "stale_after_s" in Settings.model_fields
    assert worker_name().startswith(socket.gethostname() + ":")


# ---- commands and entry points ----------------------------------------------------------


def test_compose_commands_are_entrypoint_commands(compose: dict[str, Any]) -> None:
    commands = entrypoint_commands()
    for name, svc in app_services(compose).items():
        assert "entrypoint" not in svc, f"{name}: keep the image's entrypoint (start-up checks)"
        cmd = _as_list(svc.get("command"))
        assert cmd and cmd[0] in commands, f"{name}: command {cmd} is not in entrypoint.sh"
    assert _as_list(compose["services"]["api"]["command"])[0] == "api"
    for name, svc in worker_services(compose).items():
        assert _as_list(svc["command"])[0] == "worker", name


def test_dockerfiles_entrypoint_cmd_healthcheck_user() -> None:
    commands = entrypoint_commands()
    assert os.access(ENTRYPOINT, os.X_OK), "docker/entrypoint.sh must be executable"
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
    uids = set()
    for kind, path in DOCKERFILES.items():
        instrs = dockerfile_instructions(path)
        by = {}
        for instr, args in instrs:
            by.setdefault(instr, []).append(args)
        assert by.get("WORKDIR") == [IMAGE_ROOT], f"{path.name}: WORKDIR {IMAGE_ROOT}"
        assert ". ." in by.get("COPY", []), f"{path.name}: COPY . . (the repo at {IMAGE_ROOT})"
        entry = exec_form(by["ENTRYPOINT"][-1], f"{path.name} ENTRYPOINT")
        assert image_path_to_repo(entry[0]) == ENTRYPOINT
        cmd = exec_form(by["CMD"][-1], f"{path.name} CMD")
        assert cmd == [kind], f"{path.name}: CMD {cmd}"
        assert cmd[0] in commands
        hc = by["HEALTHCHECK"][-1]
        hc_cmd = exec_form(hc.split(" CMD ", 1)[1], f"{path.name} HEALTHCHECK")
        assert image_path_to_repo(hc_cmd[0]) == ENTRYPOINT and hc_cmd[1] in commands
        assert hc_cmd[1] == f"healthcheck-{kind}"
        user = by["USER"][-1]
        assert user not in {"root", "0"}, f"{path.name}: runs as root"
        assert instrs.index(("USER", user)) > max(
            i for i, (instr, _) in enumerate(instrs) if instr == "RUN"
        ), f"{path.name}: USER must come after the last RUN"
        uid = re.search(r"ARG APP_UID=(\d+)", path.read_text())
        assert uid, f"{path.name}: ARG APP_UID"
        uids.add(uid.group(1))
        assert "PIP_CONSTRAINT=/etc/pip-constraints.txt" in by["ENV"], path.name
    assert len(uids) == 1, f"api and worker must write the data volume as one uid: {uids}"


def test_images_run_as_a_fixed_uid_that_owns_the_data_dir() -> None:
    """The non-root user has the fixed APP_UID and owns SAFT_DATA_DIR, so uploads and
    checkpoints can be written to the volume (a root-owned /data would fail every job)."""
    for path in DOCKERFILES.values():
        instrs = dockerfile_instructions(path)
        user = [a for i, a in instrs if i == "USER"][-1]
        env = " ".join(a for i, a in instrs if i == "ENV")
        data_dir = re.search(r"SAFT_DATA_DIR=(\S+)", env)
        assert data_dir, f"{path.name}: ENV SAFT_DATA_DIR"
        runs = " ".join(a for i, a in instrs if i == "RUN")
        assert re.search(rf'useradd --uid "\$\{{APP_UID\}}" .*\b{user}\b', runs), path.name
        assert f"chown {user}:{user} {data_dir.group(1)}" in runs, f"{path.name}: data dir owner"
        volumes = [json.loads(a) for i, a in instrs if i == "VOLUME"]
        assert [data_dir.group(1)] in volumes, f"{path.name}: VOLUME {data_dir.group(1)}"


def test_worker_command_runs_one_job_at_a_time() -> None:
    """Jobs never share a GPU: every worker container runs `saft worker`, which starts Celery
    with the solo pool and concurrency 1 (and compose gives each container one GPU)."""
    from saft_cli.service_commands import worker_argv

    text = ENTRYPOINT.read_text()
    assert re.search(r"exec saft worker\b", text)
    assert "--concurrency" not in text and "--pool" not in text  # not overridden here
    argv = worker_argv("gpu", "saft@%h")
    assert argv[argv.index("--concurrency") + 1] == "1"
    assert argv[argv.index("--pool") + 1] == "solo"


def test_dockerfile_bases_and_torch() -> None:
    api = DOCKERFILES["api"].read_text()
    worker = DOCKERFILES["worker"].read_text()
    assert [a for i, a in dockerfile_instructions(DOCKERFILES["api"]) if i == "FROM"] == [
        "python:3.11-slim"
    ]
    assert re.search(r"ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cpu\b", api)
    assert re.search(r'pip install "torch==\$\{TORCH_VERSION\}" --index-url', api)
    base = re.search(r"^ARG BASE_IMAGE=(\S+)", worker, re.MULTILINE)
    assert base and base.group(1).startswith("pytorch/pytorch:") and "cuda" in base.group(1)
    assert "FROM ${BASE_IMAGE}" in worker
    # The worker keeps the base's CUDA torch: it must never pip-install torch itself.
    assert not re.search(r"pip install[^\n]*\btorch\b", worker), "worker reinstalls torch"


def test_python_entry_points_exist() -> None:
    """Module paths the images run, found without importing them (no torch, no app start)."""
    for module, attr in (("api.main", "app"), ("worker.celery_app", "app")):
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin, f"{module} not found"
        tree = ast.parse(Path(spec.origin).read_text())
        names = {
            t.id
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name)
        }
        assert attr in names, f"{module} defines no module-level {attr}"
    # `saft serve` (the api container) runs this uvicorn target.
    serve_src = (REPO / "saft_cli" / "service_commands.py").read_text()
    assert '"api.main:app"' in serve_src
    assert '"worker.celery_app"' in serve_src or "from worker.celery_app import app" in serve_src


def test_saft_commands_and_options_exist() -> None:
    """Every `saft ...` in the entrypoint, Dockerfiles and deployment doc is a real command."""
    cli = saft_cli()
    for required in ("serve", "worker", "users", "db"):
        assert required in cli.commands, f"saft {required} missing"
    sources = {
        "docker/entrypoint.sh": ENTRYPOINT.read_text(),
        **{f"docker/{p.name}": p.read_text() for p in DOCKERFILES.values()},
        "docs/deployment.md": bash_blocks(DEPLOYMENT_DOC.read_text()),
    }
    seen = set()
    for where, text in sources.items():
        for args in saft_invocations(text):
            cmd, rest = resolve_saft(args)
            opts = option_names(cmd)
            for token in rest:
                if token.startswith("-"):
                    flag = token.split("=", 1)[0]
                    assert flag in opts, f"{where}: `saft {' '.join(args)}`: no option {flag}"
            seen.add(cmd.name)
    # Guards the scanner itself: the entry point must have been found to call these.
    assert {"serve", "worker", "upgrade", "add"} <= seen, seen


# ---- settings names ---------------------------------------------------------------------


def test_saft_env_names_are_settings_fields(compose: dict[str, Any]) -> None:
    from persistence.settings import Settings

    assert Settings.model_config.get("env_prefix") == "SAFT_"
    fields = set(Settings.model_fields)
    files = [COMPOSE_FILE, ENTRYPOINT, *DOCKERFILES.values(), DEPLOYMENT_DOC]
    used: dict[str, str] = {}
    for path in files:
        for name in SAFT_NAME.findall(path.read_text()):
            used.setdefault(name, path.name)
    unknown = {n: f for n, f in used.items() if n[len("SAFT_") :].lower() not in fields}
    assert not unknown, f"SAFT_* names that are no Settings field: {unknown}"
    assert {"SAFT_DATA_DIR", "SAFT_DATABASE_URL", "SAFT_BROKER_URL"} <= set(used)
    # Also the keys of every environment block, whatever their spelling.
    for name, svc in compose["services"].items():
        for key in _env(svc):
            if key.startswith("SAFT_"):
                assert key[5:].lower() in fields, f"{name}: {key}"


def test_compose_settings_validate_and_agree(compose: dict[str, Any]) -> None:
    """The values parse as Settings, point at the compose services and agree everywhere."""
    from persistence.settings import Settings

    shared = ("SAFT_DATA_DIR", "SAFT_DATABASE_URL", "SAFT_BROKER_URL")
    seen: dict[str, set[str]] = {k: set() for k in shared}
    for name, svc in app_services(compose).items():
        env = {k: INTERPOLATION.sub("x", v) for k, v in _env(svc).items() if k.startswith("SAFT_")}
        for key in shared:
            assert key in env, f"{name}: {key} not set"
            seen[key].add(env[key])
        settings = Settings(_env_file=None, **{k[5:].lower(): v for k, v in env.items()})
        assert settings.database_url.startswith("postgresql+psycopg://"), name
        assert "@postgres:5432/" in settings.database_url, name
        assert settings.broker_url.startswith("redis://redis:6379/"), name
        assert not settings.embedded_broker and not settings.is_sqlite
    for key, values in seen.items():
        assert len(values) == 1, f"{key} differs between api and workers: {values}"
    for name, svc in worker_services(compose).items():
        assert _env(svc).get("SAFT_DEVICE", "").startswith("cuda"), name


# ---- docs/deployment.md snippets -------------------------------------------------------


def doc_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DEPLOYMENT_DOC.read_text(), re.DOTALL)


def test_doc_overrides_name_real_services() -> None:
    """The override examples parse and only touch services the compose file has."""
    services = set(yaml.safe_load(COMPOSE_FILE.read_text())["services"])
    volumes = set(yaml.safe_load(COMPOSE_FILE.read_text())["volumes"])
    blocks = doc_blocks("yaml")
    assert len(blocks) >= 3, "the NFS volume, main-host and GPU-host overrides"
    for block in blocks:
        data = yaml.safe_load(block)
        assert set(data.get("services", {})) <= services, block
        assert set(data.get("volumes", {})) <= volumes, block


def test_doc_python_snippets_use_real_names() -> None:
    """The key-rotation script compiles and everything it imports exists (light modules)."""
    blocks = doc_blocks("python")
    assert blocks, "docs/deployment.md has the key-rotation script"
    for block in blocks:
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module}.{alias.name}"
    from persistence.tables import User

    for column in ("name", "key_hash", "key_prefix"):
        assert hasattr(User, column), column


# ---- .dockerignore ----------------------------------------------------------------------


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes; `dir/` means the dir."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        negate = pat.startswith("!")
        pat = pat.lstrip("!").rstrip("/")
        pat = pat.removeprefix("/")
        if pat.startswith("**/"):
            hit = any(fnmatch(p, pat[3:]) for p in parts)
        else:
            hit = any(fnmatch(p, pat) for p in prefixes)
        if hit:
            ignored = not negate
    return ignored


def test_dockerignore() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    for path in (".venv/bin/python", "saft-data/saft.db", "runs/x", "data/x", ".git/HEAD"):
        assert _ignored(path, patterns), f".dockerignore lets {path} into the image"
    assert _ignored(".env", patterns), ".env holds the database password"
    needed = [
        "pyproject.toml",
        "README.md",
        "alembic.ini",
        "alembic/env.py",
        "docker/entrypoint.sh",
        "saft_core/weights/default_sr.pth",
        *(
            f"{pkg}/__init__.py"
            for pkg in ("api", "persistence", "saft_cli", "saft_core", "worker")
        ),
    ]
    for path in needed:
        assert not _ignored(path, patterns), f".dockerignore excludes {path}, which images need"


# ---- the compose CLI, when there is one -------------------------------------------------


def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        ok = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60)
        if ok.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_cli_config(tmp_path: Path) -> None:
    """`compose config` parses and validates against the compose schema without a daemon."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no `docker compose` plugin nor docker-compose: the YAML checks above ran")
    env_file = tmp_path / "empty.env"  # ignore a developer's .env beside the compose file
    env_file.write_text("")
    base_env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "API_BIND", "API_PORT"}
        and not k.startswith("COMPOSE_")
    }
    argv = [*cli, "--env-file", str(env_file), "-f", str(COMPOSE_FILE)]
    for profile in ([], ["--profile", "multi-gpu"]):
        run = subprocess.run(
            [*argv, *profile, "config", "-q"],
            env={**base_env, "POSTGRES_PASSWORD": "0123abcd"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
    # The override examples of docs/deployment.md merge into a valid file.
    for i, block in enumerate(doc_blocks("yaml")):
        override = tmp_path / f"override{i}.yml"
        override.write_text(block)
        run = subprocess.run(
            [*argv, "-f", str(override), "--profile", "multi-gpu", "config", "-q"],
            env={**base_env, "POSTGRES_PASSWORD": "0123abcd", "REDIS_PASSWORD": "4567ef"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, f"docs override {i}: {run.stderr}"
    # The database password is mandatory: no default password on a facility network.
    run = subprocess.run(
        [*argv, "config", "-q"], env=base_env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode != 0 and "POSTGRES_PASSWORD" in run.stderr, run.stderr
