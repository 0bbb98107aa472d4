"""SR / DEN networks, checkpoint formats and device selection."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from saft_core.device import describe_device, select_device
from saft_core.errors import CheckpointError, InvalidParameterError
from saft_core.networks import (
    REFERENCE_DEN,
    SMALL_SR,
    WEIGHTS_DIR,
    DENConfig,
    RRDBNet,
    SRConfig,
    UNetDEN,
    build_den,
    build_sr,
    count_parameters,
    load_model,
    model_summary,
    model_training_condition,
    save_checkpoint,
    save_checkpoint_dict,
    training_condition,
)

TINY = SRConfig(nf=8, nb=1, gc=8)


def sfsrm_keys(nb: int, scale: int = 4) -> list[str]:
    """The parameter names of a published ESRGAN / SFSRM RRDBNet checkpoint, in order."""
    names = ["conv_first"]
    names += [
        f"RRDB_trunk.{i}.RDB{r}.conv{c}" for i in range(nb) for r in (1, 2, 3) for c in range(1, 6)
    ]
    names += ["trunk_conv", "upconv1", "upconv2"] + (["upconv3"] if scale == 8 else [])
    names += ["HRconv", "conv_last"]
    return [f"{n}.{p}" for n in names for p in ("weight", "bias")]


def same_params(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- architecture --------------------------------------------------------------------------


def test_sfsrm_state_dict_round_trip_full_size(tmp_path: Path) -> None:
    model = build_sr(SRConfig(), seed=3)
    assert list(model.state_dict()) == sfsrm_keys(23)
    assert count_parameters(model) == 16_696_257
    path = tmp_path / "sfsrm.pth"
    torch.save(model.state_dict(), path)  # a bare state dict, as SFSRM publishes them
    loaded = load_model(path, "sr")
    assert loaded.config == SRConfig(in_nc=2, out_nc=1, nf=64, nb=23, gc=32, scale=4)
    assert not loaded.training
    assert same_params(model, loaded)


@pytest.mark.parametrize("scale", [4, 8])
def test_small_bare_state_dict_infers_config(tmp_path: Path, scale: int) -> None:
    cfg = SRConfig(in_nc=2, out_nc=1, nf=8, nb=3, gc=4, scale=scale)
    model = build_sr(cfg, seed=1)
    assert list(model.state_dict()) == sfsrm_keys(3, scale)
    torch.save(model.state_dict(), tmp_path / "m.pth")
    loaded = load_model(tmp_path / "m.pth", "sr")
    assert loaded.config == cfg
    assert same_params(model, loaded)


@pytest.mark.parametrize("scale", [4, 8])
def test_forward_shapes(scale: int) -> None:
    model = build_sr(SRConfig(nf=8, nb=1, gc=8, scale=scale), seed=0)
    out = model(torch.rand(1, 2, 16, 16))
    assert out.shape == (1, 1, 16 * scale, 16 * scale)


def test_invalid_scale_rejected() -> None:
    with pytest.raises(InvalidParameterError) as err:
        SRConfig(scale=2)
    assert err.value.field == "scale"


def test_build_is_deterministic_with_seed() -> None:
    assert same_params(build_sr(TINY, seed=5), build_sr(TINY, seed=5))
    assert not same_params(build_sr(TINY, seed=5), build_sr(TINY, seed=6))


def test_den_sizes_and_identity_start() -> None:
    with torch.device("meta"):  # count without allocating 31M parameters
        assert count_parameters(UNetDEN(REFERENCE_DEN)) == 31_377_793
        assert count_parameters(UNetDEN(DENConfig())) == 487_009
    den = build_den(DENConfig(base=4, depth=3), seed=0)
    for shape in [(2, 1, 37, 50), (1, 1, 3, 5), (1, 1, 16, 16)]:
        x = torch.rand(shape)
        y = den(x)
        assert y.shape == x.shape
        assert torch.equal(y, x)  # zero head: an untrained DEN is the identity
    with torch.no_grad():
        den.head.weight.fill_(0.1)
    x = torch.rand(1, 1, 37, 50)
    y = den(x)
    assert y.shape == x.shape and not torch.allclose(y, x)


def test_model_summary() -> None:
    summary = model_summary(build_sr(TINY, seed=0))
    assert summary["kind"] == "sr"
    assert summary["config"] == {"in_nc": 2, "out_nc": 1, "nf": 8, "nb": 1, "gc": 8, "scale": 4}
    assert summary["parameters"] == count_parameters(build_sr(TINY))
    assert model_summary(build_den())["kind"] == "den"


# -- checkpoints ---------------------------------------------------------------------------


def test_saft_checkpoint_round_trip(tmp_path: Path) -> None:
    model = build_sr(TINY, seed=2)
    path = save_checkpoint(tmp_path / "it.pth", model, "sr", extra={"saft": {"iteration": 3}})
    assert [p.name for p in tmp_path.iterdir()] == ["it.pth"]  # no temp file left behind
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "saft-checkpoint/1" and raw["kind"] == "sr"
    assert raw["config"] == {"in_nc": 2, "out_nc": 1, "nf": 8, "nb": 1, "gc": 8, "scale": 4}
    assert raw["saft"] == {"iteration": 3}
    loaded = load_model(path, "sr")
    assert same_params(model, loaded) and not loaded.training
    x = torch.rand(1, 2, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert same_params(model, load_model(raw, "sr"))  # a checkpoint dict works too


def test_save_checkpoint_dict_and_den_sub_dict(tmp_path: Path) -> None:
    den = build_den(DENConfig(base=4, depth=2), seed=0)
    ckpt = {"kind": "den", "config": {"base": 4, "depth": 2}, "state_dict": den.state_dict()}
    save_checkpoint_dict(tmp_path / "d.pth", ckpt)
    assert same_params(den, load_model(tmp_path / "d.pth", "den"))


def test_failed_save_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(Exception):  # noqa: B017 - whatever pickle raises for a lambda
        save_checkpoint_dict(tmp_path / "x.pth", {"bad": lambda: 0})
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_wrong_kind_and_reserved_extra(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError):
        save_checkpoint(tmp_path / "x.pth", build_den(), "sr")
    with pytest.raises(ValueError, match="state_dict"):
        save_checkpoint(tmp_path / "x.pth", build_sr(TINY), "sr", extra={"state_dict": {}})


@pytest.mark.parametrize("wrapper", ["params_ema", "params"])
def test_basicsr_wrappers(tmp_path: Path, wrapper: str) -> None:
    model = build_sr(TINY, seed=4)
    other = build_sr(TINY, seed=5)
    obj = {wrapper: model.state_dict()}
    if wrapper == "params_ema":
        obj["params"] = other.state_dict()  # BasicSR keeps both; the EMA weights are preferred
    torch.save(obj, tmp_path / "b.pth")
    assert same_params(model, load_model(tmp_path / "b.pth", "sr"))


def test_basicsr_new_style_names(tmp_path: Path) -> None:
    model = build_sr(TINY, seed=4)
    renames = [
        ("RRDB_trunk.", "body."),
        (".RDB", ".rdb"),
        ("trunk_conv", "conv_body"),
        ("upconv", "conv_up"),
        ("HRconv", "conv_hr"),
    ]
    sd = {}
    for key, value in model.state_dict().items():
        for old, new in renames:
            key = key.replace(old, new)
        sd[key] = value
    assert "body.0.rdb1.conv1.weight" in sd
    torch.save({"params_ema": sd}, tmp_path / "new.pth")
    assert same_params(model, load_model(tmp_path / "new.pth", "sr"))


def test_dataparallel_prefix(tmp_path: Path) -> None:
    model = build_sr(TINY, seed=7)
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "dp.pth")
    assert same_params(model, load_model(tmp_path / "dp.pth", "sr"))
    den = build_den(DENConfig(base=4, depth=2), seed=1)
    torch.save({f"module.{k}": v for k, v in den.state_dict().items()}, tmp_path / "dd.pth")
    loaded = load_model(tmp_path / "dd.pth", "den")
    assert loaded.config == DENConfig(base=4, depth=2) and same_params(den, loaded)


def test_wrong_kind(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "den.pth", build_den(DENConfig(base=4, depth=2)), "den")
    with pytest.raises(CheckpointError, match="DEN checkpoint, but an SR model") as err:
        load_model(tmp_path / "den.pth", "sr")
    assert err.value.field == "sr_model"
    torch.save(build_sr(TINY).state_dict(), tmp_path / "sr.pth")  # bare: kind from the keys
    with pytest.raises(CheckpointError, match="SR checkpoint, but an DEN model") as err:
        load_model(tmp_path / "sr.pth", "den")
    assert err.value.field == "den_model"


def test_corrupt_and_foreign_files(tmp_path: Path) -> None:
    (tmp_path / "noise.pth").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "text.pth").write_text("not a model\n")
    save_checkpoint(tmp_path / "good.pth", build_sr(TINY), "sr")
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    for name in ("noise.pth", "text.pth", "cut.pth"):
        with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as err:
            load_model(tmp_path / name, "sr")
        assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pth", "sr")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds a list"):
        load_model(tmp_path / "list.pth", "sr")
    torch.save({"a.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="neither an SR"):
        load_model(tmp_path / "other.pth", "sr")
    with pytest.raises(CheckpointError, match="'default'"):
        load_model(42, "sr")  # type: ignore[arg-type]


class _Marker:
    """Unpickling this would create a file: proof that arbitrary code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.path,))


def test_weights_only_enforced(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    sd = build_sr(TINY).state_dict()
    with open(tmp_path / "evil.pth", "wb") as fh:
        torch.save({"state_dict": sd, "payload": _Marker(marker)}, fh, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_model(tmp_path / "evil.pth", "sr")
    assert not marker.exists()


def test_key_and_shape_mismatch(tmp_path: Path) -> None:
    sd = build_sr(TINY).state_dict()
    ckpt = {"format": "saft-checkpoint/1", "kind": "sr", "config": {}, "state_dict": sd}
    cfg = {"in_nc": 2, "out_nc": 1, "nf": 16, "nb": 1, "gc": 8, "scale": 4}
    with pytest.raises(CheckpointError, match=r"conv_first.weight has shape \(8, 2, 3, 3\)"):
        load_model({**ckpt, "config": cfg}, "sr")
    missing = {k: v for k, v in sd.items() if k != "HRconv.bias"}
    with pytest.raises(CheckpointError, match="1 missing key.*HRconv.bias"):
        load_model(missing, "sr")
    extra = {**sd, "RRDB_trunk.0.RDB1.conv9.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="unexpected key"):
        load_model(extra, "sr")
    with pytest.raises(CheckpointError, match="unknown entries: colour"):
        load_model({**ckpt, "config": {**cfg, "colour": 1}}, "sr")
    with pytest.raises(CheckpointError, match="scale must be 4 or 8"):
        load_model({**ckpt, "config": {**cfg, "nf": 8, "scale": 2}}, "sr")
    with pytest.raises(CheckpointError, match="unsupported checkpoint format"):
        load_model({**ckpt, "format": "other/9"}, "sr")
    with pytest.raises(CheckpointError, match="is not a state dict"):
        load_model({**sd, "note": "hello"}, "sr")


def test_default_models_are_deterministic() -> None:
    a, b = load_model("default", "sr"), load_model("default", "sr")
    assert same_params(a, b) and not a.training and isinstance(a, RRDBNet)
    if not (WEIGHTS_DIR / "default_sr.pth").exists():
        assert a.config == SMALL_SR
    den = load_model("default", "den")
    assert isinstance(den, UNetDEN) and same_params(den, load_model("default", "den"))
    a.train()  # callers own the returned module: it must not be shared
    assert not load_model("default", "sr").training


# -- device --------------------------------------------------------------------------------


def test_select_device() -> None:
    assert select_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device(None).type == expected
    assert select_device("auto").type == expected
    for bad in ("tpu", "mps", "cuda:x"):
        with pytest.raises(InvalidParameterError) as err:
            select_device(bad)
        assert err.value.field == "device"
    if not torch.cuda.is_available():
        for wanted in ("cuda", "cuda:1"):
            with pytest.raises(InvalidParameterError, match="no CUDA GPU") as err:
                select_device(wanted)
            assert err.value.field == "device"


def test_describe_device() -> None:
    assert describe_device(torch.device("cpu")) == f"cpu ({torch.get_num_threads()} threads)"
    assert describe_device("cpu").startswith("cpu (")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_load_onto_missing_gpu_is_a_device_error() -> None:
    with pytest.raises(InvalidParameterError, match="no CUDA GPU") as err:
        load_model("default", "sr", map_location="cuda")
    assert err.value.field == "device"


# -- training-condition metadata -------------------------------------------------------------


def test_training_condition_round_trip(tmp_path: Path) -> None:
    model = build_sr(TINY, seed=1)
    cond = training_condition(1.6, 0.065)
    path = save_checkpoint(tmp_path / "m.pth", model, "sr", extra={"training_condition": cond})
    assert model_training_condition(path) == {"psf_sigma_lr_px": 1.6, "pixel_size_um": 0.065}
    assert model_training_condition(torch.load(path, weights_only=True)) == cond
    assert same_params(model, load_model(path, "sr"))  # the entry does not disturb loading
    # pixel size may be unknown
    save_checkpoint(
        tmp_path / "n.pth",
        model,
        "sr",
        extra={"training_condition": {"psf_sigma_lr_px": 2, "pixel_size_um": None}},
    )
    assert model_training_condition(tmp_path / "n.pth") == training_condition(2.0)


@pytest.mark.parametrize(
    "bad",
    [
        {"psf_sigma_lr_px": 0.0},
        {"psf_sigma_lr_px": "1"},
        {"psf_sigma_lr_px": 1.0, "nm": 2},
        {"psf_sigma_lr_px": 1.0, "pixel_size_um": -1.0},
        [1.0],
    ],
)
def test_malformed_training_condition_is_refused(tmp_path: Path, bad) -> None:
    with pytest.raises(ValueError, match="training_condition"):
        save_checkpoint(tmp_path / "x.pth", build_sr(TINY), "sr", extra={"training_condition": bad})
    ckpt = {
        "format": "saft-checkpoint/1",
        "kind": "sr",
        "config": {},
        "state_dict": {},
        "training_condition": bad,
    }
    with pytest.raises(CheckpointError, match="training_condition"):
        model_training_condition(ckpt)


def test_foreign_checkpoints_have_no_training_condition_and_still_load(tmp_path: Path) -> None:
    model = build_sr(TINY, seed=2)
    sd = model.state_dict()
    for name, obj in [("bare", sd), ("basicsr", {"params_ema": sd}), ("ours", None)]:
        path = tmp_path / f"{name}.pth"
        if obj is None:
            save_checkpoint(path, model, "sr")  # our format without the entry
        else:
            torch.save(obj, path)
        assert model_training_condition(path) is None
        assert same_params(model, load_model(path, "sr"))
    with pytest.raises(CheckpointError, match="not found"):
        model_training_condition(tmp_path / "missing.pth")


def test_shipped_weights_state_their_training_condition(tmp_path: Path) -> None:
    from saft_core.pretraining import TrainConfig, trained_condition

    card = json.loads((WEIGHTS_DIR / "card.json").read_text())
    expected = trained_condition(TrainConfig())  # the broad recipe: a range of PSF widths
    assert card["data"]["condition_name"] == "BROAD"
    assert card["data"]["condition"]["psf_sigma_lr"] == expected["psf_sigma_lr_px_range"]
    assert model_training_condition("default") == expected
    assert load_model("default", "sr").training_condition == expected
    for kind in ("sr", "den"):
        shipped = WEIGHTS_DIR / f"default_{kind}.pth"
        assert model_training_condition(shipped) == expected
        copy = tmp_path / f"my_{kind}.pth"  # recognised by content, wherever it was copied
        shutil.copyfile(shipped, copy)
        assert model_training_condition(copy) == expected
