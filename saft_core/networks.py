"""The SR network (SFSRM / ESRGAN RRDBNet), the degradation-estimation U-Net, and checkpoints.

Checkpoint files are always read with ``torch.load(..., weights_only=True)``: a model file
from a user must never be able to run code. Every problem with a model file becomes a
``CheckpointError`` with a one-line message naming the field (``sr_model`` / ``den_model``).

A saft-checkpoint/1 file is a dict: ``format``, ``kind`` ("sr" / "den"), ``config`` (the
network's dataclass as a dict), ``state_dict``, plus optional entries given as ``extra``. One
optional entry is documented: ``training_condition`` = ``{"psf_sigma_lr_px": float,
"pixel_size_um": float | None}``, the Gaussian PSF sigma (LR px) and camera pixel size (um,
None when unknown) of the data the network was trained on, so that a user's data can be
resampled to match (saft_core.psf). The shipped default networks carry it in
``weights/card.json``; foreign checkpoints (published SFSRM .pth files) have none.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from saft_core.atomic import atomic_path
from saft_core.errors import CheckpointError, InvalidParameterError

Kind = Literal["sr", "den"]
CHECKPOINT_FORMAT = "saft-checkpoint/1"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
RESIDUAL_SCALE = 0.2  # ESRGAN residual scaling inside RDB and RRDB
LRELU_SLOPE = 0.2
RDB_INIT_SCALE = 0.1  # ESRGAN scales the initial RDB weights down so deep trunks start stable
_RESERVED_KEYS = ("format", "kind", "config", "state_dict")
TRAINING_CONDITION = "training_condition"  # optional checkpoint / model-card entry
CARD_PATH = WEIGHTS_DIR / "card.json"
_FIELD = {"sr": "sr_model", "den": "den_model"}


# -- configurations ------------------------------------------------------------------------


@dataclass(frozen=True)
class SRConfig:
    """RRDBNet hyper-parameters; defaults are the published SFSRM network (scale 4, ~16.7M)."""

    in_nc: int = 2  # input channels, in the order [SRRF edge map, widefield LR]
    out_nc: int = 1
    nf: int = 64  # trunk feature channels
    nb: int = 23  # number of RRDB blocks
    gc: int = 32  # growth channels inside a residual dense block
    scale: int = 4  # SR pixels per LR pixel along each axis

    def __post_init__(self) -> None:
        for f in ("in_nc", "out_nc", "nf", "nb", "gc"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InvalidParameterError(f"SR config {f} must be a positive integer, got {v!r}")
        if self.scale not in (4, 8):
            raise InvalidParameterError(
                f"SR network scale must be 4 or 8, got {self.scale!r}", field="scale"
            )


@dataclass(frozen=True)
class DENConfig:
    """U-Net DEN hyper-parameters; the default is the light one (base 16, depth 3, ~0.49M)."""

    base: int = 16  # channels at full resolution, doubled at every pooling level
    depth: int = 3  # number of 2x max-pool levels

    def __post_init__(self) -> None:
        if not isinstance(self.base, int) or isinstance(self.base, bool) or self.base < 1:
            raise InvalidParameterError(f"DEN config base must be >= 1, got {self.base!r}")
        if not isinstance(self.depth, int) or isinstance(self.depth, bool):
            raise InvalidParameterError(f"DEN config depth must be an integer, got {self.depth!r}")
        if not 1 <= self.depth <= 6:
            raise InvalidParameterError(f"DEN config depth must be 1 to 6, got {self.depth}")


SMALL_SR = SRConfig(nf=16, nb=2, gc=16)  # CPU-sized stand-in (~0.22M) until trained weights ship
REFERENCE_DEN = DENConfig(base=64, depth=4)  # the authors' size, ~31.4M parameters


# -- SR network: ESRGAN RRDBNet with the BasicSR-old / SFSRM parameter names ----------------


class ResidualDenseBlock5C(nn.Module):
    """Five densely connected 3x3 convs; output = x + 0.2 * conv5(...) (ESRGAN RDB)."""

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = F.leaky_relu(self.conv1(x), LRELU_SLOPE)
        x2 = F.leaky_relu(self.conv2(torch.cat((x, x1), 1)), LRELU_SLOPE)
        x3 = F.leaky_relu(self.conv3(torch.cat((x, x1, x2), 1)), LRELU_SLOPE)
        x4 = F.leaky_relu(self.conv4(torch.cat((x, x1, x2, x3), 1)), LRELU_SLOPE)
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs with a scaled outer skip."""

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.RDB1 = ResidualDenseBlock5C(nf, gc)
        self.RDB2 = ResidualDenseBlock5C(nf, gc)
        self.RDB3 = ResidualDenseBlock5C(nf, gc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.RDB3(self.RDB2(self.RDB1(x))) * RESIDUAL_SCALE + x


class RRDBNet(nn.Module):
    """SFSRM generator: (N, in_nc, H, W) [edge, LR] -> (N, out_nc, scale*H, scale*W).

    Parameter names match ESRGAN / BasicSR-old / SFSRM checkpoints so their files load as-is.
    """

    kind: Kind = "sr"

    def __init__(self, config: SRConfig | None = None) -> None:
        super().__init__()
        c = config or SRConfig()
        self.config = c
        self.conv_first = nn.Conv2d(c.in_nc, c.nf, 3, 1, 1)
        self.RRDB_trunk = nn.Sequential(*(RRDB(c.nf, c.gc) for _ in range(c.nb)))
        self.trunk_conv = nn.Conv2d(c.nf, c.nf, 3, 1, 1)
        self.upconv1 = nn.Conv2d(c.nf, c.nf, 3, 1, 1)
        self.upconv2 = nn.Conv2d(c.nf, c.nf, 3, 1, 1)
        if c.scale == 8:  # registered here so the key order matches x8 ESRGAN variants
            self.upconv3 = nn.Conv2d(c.nf, c.nf, 3, 1, 1)
        self.HRconv = nn.Conv2d(c.nf, c.nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(c.nf, c.out_nc, 3, 1, 1)

    @property
    def scale(self) -> int:
        return self.config.scale

    def _up(self, conv: nn.Conv2d, fea: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(conv(F.interpolate(fea, scale_factor=2, mode="nearest")), LRELU_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.RRDB_trunk(fea))
        fea = self._up(self.upconv1, fea)
        fea = self._up(self.upconv2, fea)
        if self.config.scale == 8:
            fea = self._up(self.upconv3, fea)
        return self.conv_last(F.leaky_relu(self.HRconv(fea), LRELU_SLOPE))


# -- DEN: a plain U-Net, residual around the identity ---------------------------------------


class _DoubleConv(nn.Module):
    """Two 3x3 conv + ReLU: the unit of every U-Net level (no BatchNorm: batch-size free)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class UNetDEN(nn.Module):
    """Degradation-estimation network: (N, 1, H, W) LR -> (N, 1, H, W), any H and W.

    out = x + head(U-Net(x)). The head starts at zero, so an untrained DEN is the identity
    and the first SAFT steps compare the degraded SR output with the LR frame itself.
    """

    kind: Kind = "den"

    def __init__(self, config: DENConfig | None = None) -> None:
        super().__init__()
        c = config or DENConfig()
        self.config = c
        ch = [c.base * 2**i for i in range(c.depth + 1)]
        self.enc = nn.ModuleList(
            [_DoubleConv(1, ch[0])] + [_DoubleConv(ch[i - 1], ch[i]) for i in range(1, c.depth + 1)]
        )
        # dec[i] merges the upsampled level i+1 with the skip of level i
        self.dec = nn.ModuleList([_DoubleConv(ch[i + 1] + ch[i], ch[i]) for i in range(c.depth)])
        self.head = nn.Conv2d(ch[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.config.depth
        xp = _pad_to_multiple(x, m)
        skips = []
        fea = xp
        for i, block in enumerate(self.enc):
            if i > 0:
                fea = F.max_pool2d(fea, 2)
            fea = block(fea)
            skips.append(fea)
        for i in range(self.config.depth - 1, -1, -1):
            fea = F.interpolate(fea, scale_factor=2, mode="bilinear", align_corners=False)
            fea = self.dec[i](torch.cat((fea, skips[i]), 1))
        out = xp + self.head(fea)
        return out[..., :h, :w]


def _pad_to_multiple(x: torch.Tensor, m: int) -> torch.Tensor:
    """Pad bottom/right up to a multiple of m: reflect (no dark border), replicate if too small."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


# -- building ------------------------------------------------------------------------------


def build_sr(config: SRConfig | None = None, *, seed: int | None = None) -> RRDBNet:
    """A new SR network with ESRGAN initialisation; ``seed`` makes it reproducible."""
    model = RRDBNet(config or SRConfig())
    _init(model, seed, rdb_scale=RDB_INIT_SCALE, nonlinearity="leaky_relu", slope=LRELU_SLOPE)
    return model


def build_den(config: DENConfig | None = None, *, seed: int | None = None) -> UNetDEN:
    """A new DEN (identity at start: zero head); ``seed`` makes it reproducible."""
    model = UNetDEN(config or DENConfig())
    _init(model, seed, rdb_scale=1.0, nonlinearity="relu", slope=0.0)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    return model


def _init(
    model: nn.Module, seed: int | None, *, rdb_scale: float, nonlinearity: str, slope: float
) -> None:
    """Kaiming-normal convs, zero biases; RDB convs scaled by rdb_scale (ESRGAN recipe)."""
    gen = None
    if seed is not None:
        gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(
                    mod.weight, a=slope, nonlinearity=nonlinearity, generator=gen
                )
                if ".RDB" in f".{name}":
                    mod.weight.mul_(rdb_scale)
                if mod.bias is not None:
                    mod.bias.zero_()


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_summary(model: nn.Module) -> dict[str, Any]:
    """JSON-ready description: kind, config and parameter count."""
    kind = _kind_of(model)
    return {"kind": kind, "config": asdict(model.config), "parameters": count_parameters(model)}


def default_model(kind: Kind) -> nn.Module:
    """The shipped weights ``weights/default_{kind}.pth`` if present, else a seeded small net."""
    _check_kind(kind)
    path = WEIGHTS_DIR / f"default_{kind}.pth"
    if path.is_file():
        return load_model(path, kind)
    # No trained weights shipped yet: a deterministic untrained stand-in keeps the pipeline
    # runnable (and testable) on a CPU.
    model = build_sr(SMALL_SR, seed=0) if kind == "sr" else build_den(DENConfig(), seed=0)
    return model.eval()


# -- saving --------------------------------------------------------------------------------


def save_checkpoint(
    path: str | Path, model: nn.Module, kind: Kind, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``model`` as a saft-checkpoint/1 file atomically; returns the path."""
    _check_kind(kind)
    if _kind_of(model) != kind:
        raise CheckpointError(
            f"cannot save a {_kind_of(model).upper()} network as a {kind.upper()} checkpoint",
            field=_FIELD[kind],
        )
    extra = dict(extra or {})
    clash = [k for k in _RESERVED_KEYS if k in extra]
    if clash:
        raise ValueError(f"extra must not override checkpoint keys: {', '.join(clash)}")
    if TRAINING_CONDITION in extra:
        extra[TRAINING_CONDITION] = _check_condition(extra[TRAINING_CONDITION])
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "config": asdict(model.config),
        "state_dict": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
        **extra,
    }
    return save_checkpoint_dict(path, ckpt)


def save_checkpoint_dict(path: str | Path, ckpt: Mapping[str, Any]) -> Path:
    """torch.save an already-built checkpoint dict atomically (temp file + os.replace)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(dict(ckpt), fh)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def training_condition(
    psf_sigma_lr_px: float,
    pixel_size_um: float | None = None,
    psf_sigma_range: tuple[float, float] | None = None,
) -> dict:
    """The ``training_condition`` checkpoint entry: PSF sigma (LR px), pixel size (um) and,
    for a network trained over a range of PSF widths, that range (LR px)."""
    cond: dict[str, Any] = {"psf_sigma_lr_px": psf_sigma_lr_px, "pixel_size_um": pixel_size_um}
    if psf_sigma_range is not None:
        cond["psf_sigma_lr_px_range"] = list(psf_sigma_range)
    return _check_condition(cond)


def model_training_condition(spec_or_ckpt: str | Path | Mapping[str, Any]) -> dict | None:
    """The condition a model was trained on, or None when its checkpoint does not say.

    Accepts "default" (the shipped networks: their model card), a checkpoint path or an
    already-loaded checkpoint dict. The shipped files are recognised by their sha256 in the
    card, wherever they were copied. Foreign checkpoints (bare state dicts, BasicSR / SFSRM
    files) return None; a malformed entry raises CheckpointError.
    """
    if isinstance(spec_or_ckpt, str) and spec_or_ckpt == "default":
        return _card_condition()
    if isinstance(spec_or_ckpt, (str, Path)):
        path = Path(spec_or_ckpt)
        obj = _read_file(path, "cpu", "model")
        found = _condition_of(obj, path.name)
        if found is None and path.is_file() and _sha256(path) in _card_hashes():
            return _card_condition()
        return found
    if isinstance(spec_or_ckpt, Mapping):
        return _condition_of(spec_or_ckpt, "checkpoint")
    raise CheckpointError(
        f"expected 'default', a file path or a checkpoint dict, got {type(spec_or_ckpt).__name__}"
    )


def _condition_of(obj: Any, name: str) -> dict | None:
    if not isinstance(obj, Mapping) or TRAINING_CONDITION not in obj:
        return None
    try:
        return _check_condition(obj[TRAINING_CONDITION])
    except ValueError as exc:
        raise CheckpointError(f"{name}: {exc}", field="model") from None


def _check_condition(cond: Any) -> dict:
    """A validated copy of a training condition (ValueError naming the bad entry)."""
    if not isinstance(cond, Mapping):
        raise ValueError(f"{TRAINING_CONDITION} must be a mapping, got {type(cond).__name__}")
    unknown = sorted(set(cond) - {"psf_sigma_lr_px", "pixel_size_um", "psf_sigma_lr_px_range"})
    if unknown:
        raise ValueError(f"{TRAINING_CONDITION} has unknown entries: {', '.join(unknown)}")
    sigma, pixel = cond.get("psf_sigma_lr_px"), cond.get("pixel_size_um")
    if not _positive(sigma):
        raise ValueError(f"{TRAINING_CONDITION} psf_sigma_lr_px must be > 0 LR px, got {sigma!r}")
    if pixel is not None and not _positive(pixel):
        raise ValueError(f"{TRAINING_CONDITION} pixel_size_um must be > 0 or null, got {pixel!r}")
    out: dict[str, Any] = {
        "psf_sigma_lr_px": float(sigma),
        "pixel_size_um": None if pixel is None else float(pixel),
    }
    if "psf_sigma_lr_px_range" in cond:
        span = cond["psf_sigma_lr_px_range"]
        if (
            not isinstance(span, (list, tuple))
            or len(span) != 2
            or not all(_positive(v) for v in span)
            or not span[0] <= sigma <= span[1]
        ):
            raise ValueError(
                f"{TRAINING_CONDITION} psf_sigma_lr_px_range must be [low, high] LR px around "
                f"psf_sigma_lr_px, got {span!r}"
            )
        out["psf_sigma_lr_px_range"] = [float(span[0]), float(span[1])]
    return out


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _card() -> dict:
    try:
        return json.loads(CARD_PATH.read_text())
    except (OSError, ValueError):
        return {}


def _card_condition() -> dict | None:
    cond = _card().get(TRAINING_CONDITION)
    return None if cond is None else _check_condition(cond)


def _card_hashes() -> set[str]:
    return {f.get("sha256") for f in _card().get("files", {}).values() if isinstance(f, dict)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- loading -------------------------------------------------------------------------------


def load_model(
    spec: str | Path | Mapping[str, Any],
    kind: Kind,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """An SR or DEN network in eval mode from "default", a file path or a checkpoint dict.

    Accepted contents: our checkpoint format, a bare state dict, BasicSR ``{"params_ema": sd}``
    / ``{"params": sd}`` (new-style BasicSR names are mapped to the old ones), and
    DataParallel ``module.`` prefixes. A bare state dict's config is inferred from its shapes.
    """
    _check_kind(kind)
    if str(map_location).startswith("cuda") and not torch.cuda.is_available():
        raise InvalidParameterError(
            f"cannot load the model onto {map_location}: no CUDA GPU is available", field="device"
        )
    if isinstance(spec, str) and spec == "default":
        model = default_model(kind).to(map_location).eval()
        model.training_condition = _card_condition()
        return model
    field = _FIELD[kind]
    if isinstance(spec, (str, Path)):
        name = Path(spec).name
        obj = _read_file(Path(spec), map_location, field)
    elif isinstance(spec, Mapping):
        name, obj = "checkpoint", spec
    else:
        raise CheckpointError(
            f"model must be 'default', a file path or a checkpoint dict, got {type(spec).__name__}",
            field=field,
        )
    model = _model_from(obj, kind, name, field)
    # What the network was trained (or fine-tuned from a network trained) on; None if unknown.
    model.training_condition = _condition_of(obj, name)
    known = model.training_condition is not None or not isinstance(spec, (str, Path))
    if not known and _sha256(Path(spec)) in _card_hashes():
        model.training_condition = _card_condition()
    return model.to(map_location).eval()


def _read_file(path: Path, map_location: str | torch.device, field: str) -> Any:
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}", field=field)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for bad files; all mean "not usable"
        text = str(exc)
        unsafe = re.search(r"Unsupported (?:global|class):? (?:GLOBAL )?([\w.]+)", text)
        if unsafe:
            raise CheckpointError(
                f"{path.name} contains Python objects other than tensors and plain data "
                f"({unsafe.group(1)}); refusing to unpickle it: only weights-only checkpoints "
                "are accepted",
                field=field,
            ) from None
        raise CheckpointError(
            f"{path.name} is not a readable PyTorch checkpoint (corrupt or another format: "
            f"{type(exc).__name__})",
            field=field,
        ) from None


def _model_from(obj: Any, kind: Kind, name: str, field: str) -> nn.Module:
    """Unwrap the known containers, check kind and shapes, and build the loaded network."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{name} holds a {type(obj).__name__}, not a state dict or checkpoint", field=field
        )
    config_dict: Mapping[str, Any] | None = None
    declared: str | None = None
    if "format" in obj:
        if obj["format"] != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{name} has unsupported checkpoint format {obj['format']!r}", field=field
            )
        for key in ("kind", "config", "state_dict"):
            if key not in obj:
                raise CheckpointError(f"{name} lacks the {key!r} entry", field=field)
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        declared = obj.get("kind")
        config_dict = obj.get("config")
        sd = obj["state_dict"]
    elif isinstance(obj.get("params_ema"), Mapping):
        sd = obj["params_ema"]
    elif isinstance(obj.get("params"), Mapping):
        sd = obj["params"]
    else:
        sd = obj
    sd = _clean_state_dict(sd, name, field)
    found = _kind_of_state_dict(sd)
    if declared is not None and declared not in ("sr", "den"):
        raise CheckpointError(f"{name} declares unknown kind {declared!r}", field=field)
    if declared is not None and found is not None and declared != found:
        raise CheckpointError(
            f"{name} declares kind {declared!r} but holds a {found.upper()} state dict",
            field=field,
        )
    actual = declared or found
    if actual is None:
        raise CheckpointError(
            f"{name} is neither an SR (RRDBNet) nor a DEN (U-Net) state dict "
            f"(first key {next(iter(sd), '<none>')!r})",
            field=field,
        )
    if actual != kind:
        raise CheckpointError(
            f"{name} is a {actual.upper()} checkpoint, but an {kind.upper()} model was expected",
            field=field,
        )
    config = _config_from(config_dict, sd, kind, name, field)
    model = RRDBNet(config) if kind == "sr" else UNetDEN(config)
    _check_keys(model, sd, name, field)
    model.load_state_dict(sd, strict=True)
    return model


_NEW_BASICSR = [  # BasicSR >= 1.0 RRDBNet names -> the old ESRGAN / SFSRM names
    (re.compile(r"^body\.(\d+)\.rdb(\d)\."), r"RRDB_trunk.\1.RDB\2."),
    (re.compile(r"^conv_body\."), "trunk_conv."),
    (re.compile(r"^conv_up(\d)\."), r"upconv\1."),
    (re.compile(r"^conv_hr\."), "HRconv."),
]


def _clean_state_dict(sd: Mapping[str, Any], name: str, field: str) -> dict[str, torch.Tensor]:
    """Tensor-only dict without DataParallel prefixes and with old-style RRDBNet names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{name} is not a state dict: entry {key!r} is a {type(value).__name__}",
                field=field,
            )
        if key.startswith("module."):
            key = key[len("module.") :]
        for pattern, repl in _NEW_BASICSR:
            key = pattern.sub(repl, key)
        out[key] = value
    if not out:
        raise CheckpointError(f"{name} has an empty state dict", field=field)
    return out


def _kind_of_state_dict(sd: Mapping[str, torch.Tensor]) -> Kind | None:
    if "conv_first.weight" in sd:
        return "sr"
    if "enc.0.conv1.weight" in sd:
        return "den"
    return None


def _config_from(
    given: Mapping[str, Any] | None,
    sd: Mapping[str, torch.Tensor],
    kind: Kind,
    name: str,
    field: str,
) -> SRConfig | DENConfig:
    """The config written in the checkpoint, else one inferred from the tensor shapes."""
    cls = SRConfig if kind == "sr" else DENConfig
    if given is not None:
        if not isinstance(given, Mapping):
            raise CheckpointError(f"{name} config is not a mapping", field=field)
        unknown = sorted(set(given) - {f.name for f in fields(cls)})
        if unknown:
            raise CheckpointError(
                f"{name} config has unknown entries: {', '.join(map(str, unknown))}", field=field
            )
    try:
        if given is not None:
            return cls(**given)
        return _infer_sr(sd) if kind == "sr" else _infer_den(sd)
    except InvalidParameterError as exc:
        raise CheckpointError(f"{name}: {exc.message}", field=field) from None
    except (KeyError, IndexError, TypeError) as exc:
        raise CheckpointError(
            f"{name}: cannot infer the {kind.upper()} network shape from its state dict "
            f"(missing or malformed {exc})",
            field=field,
        ) from None


def _infer_sr(sd: Mapping[str, torch.Tensor]) -> SRConfig:
    first = sd["conv_first.weight"]
    blocks = [int(m.group(1)) for k in sd if (m := re.match(r"RRDB_trunk\.(\d+)\.", k))]
    return SRConfig(
        in_nc=int(first.shape[1]),
        out_nc=int(sd["conv_last.weight"].shape[0]),
        nf=int(first.shape[0]),
        nb=max(blocks) + 1 if blocks else 0,
        gc=int(sd["RRDB_trunk.0.RDB1.conv1.weight"].shape[0]),
        scale=8 if "upconv3.weight" in sd else 4,
    )


def _infer_den(sd: Mapping[str, torch.Tensor]) -> DENConfig:
    levels = [int(m.group(1)) for k in sd if (m := re.match(r"enc\.(\d+)\.", k))]
    return DENConfig(base=int(sd["enc.0.conv1.weight"].shape[0]), depth=max(levels))


def _check_keys(model: nn.Module, sd: Mapping[str, torch.Tensor], name: str, field: str) -> None:
    """One clear line for the first problem, instead of torch's multi-line report."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[0]!r}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[0]!r}")
        raise CheckpointError(
            f"{name} does not fit the {model.kind.upper()} network "
            f"{asdict(model.config)}: {'; '.join(parts)}",
            field=field,
        )
    for key, ref in expected.items():
        if tuple(sd[key].shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{name} does not fit the {model.kind.upper()} network: {key} has shape "
                f"{tuple(sd[key].shape)}, expected {tuple(ref.shape)}",
                field=field,
            )


def _kind_of(model: nn.Module) -> Kind:
    kind = getattr(model, "kind", None)
    if kind not in ("sr", "den") or not hasattr(model, "config"):
        raise CheckpointError(f"not a SAFT network: {type(model).__name__}")
    return kind


def _check_kind(kind: str) -> None:
    if kind not in ("sr", "den"):
        raise ValueError(f"kind must be 'sr' or 'den', got {kind!r}")
