"""Load depth models from our checkpoints and from the released Monodepth2 / BDEdepth weights.

``read_weights(path)`` (behind `model.load_model`, ``--pretrained_path`` and the model zoo; it also
says which format it found) and ``to_checkpoint_payload(path)`` (the payload alone; the
command ``python convert_weights.py --input models/mono_640x192 --output mono_640x192.pth`` writes
it as a checkpoint) accept, with no architecture flags:

- a checkpoint written by this toolkit (it carries a ``model_spec``);
- a released Monodepth2 folder: ``encoder.pth`` (a ResnetEncoder state dict plus the ``height``,
  ``width`` and ``use_stereo`` it was trained with), ``depth.pth`` (DepthDecoder, layers in a
  ModuleList ``decoder.N``), optionally ``pose_encoder.pth`` and ``pose.pth`` (PoseDecoder,
  ``net.N``);
- a PackNet-SfM / All4Depth ``.ckpt`` (or a legacy ``.pth.tar``, or the ``state_dict`` extracted
  from one): `packnet_weights`, which reads the pickled config without running any of it;
- a FeatDepth mmcv ``.pth`` (``state_dict`` with ``DepthEncoder.``, ``DepthDecoder.``, ``PoseEncoder.``,
  ``PoseDecoder.``, ``extractor.`` or ``Encoder.``/``Decoder.`` prefixes): `featdepth_weights`, tensor by
  tensor, the unused classification heads left out by name and anything else that does not fit an error;
- a released BDEdepth ``.pth``: one dict with ``encoder``, ``depth`` (and possibly ``pose_encoder``,
  ``pose``) state dicts plus ``height``, ``width``, ``use_stereo``; our BDEdepth modules use its
  parameter names;
- a released SQLdepth folder (``models/weights_<epoch>/``): ``encoder.pth`` (the encoder-decoder up
  to the fused feature map, plus ``height``, ``width``, ``use_stereo``), ``depth.pth`` (the Self
  Query Layer: ``embedding_convPxP``, ``transformer_encoder``, ``bins_regressor``, ...) and
  optionally ``pose.pth`` (Monodepth2's PoseCNN, ``net.N``). The backbone is read off the key
  names, the patch size, query and bin counts and widths off the tensor shapes; the depth range
  is not stored: it comes from ``sql_variant`` or the flags, else from the published variant of
  that size (`networks.sqldepth.SQLDEPTH_VARIANTS`), else SQLdepth's default 0.001-80 m.

Each is turned into our checkpoint payload (``{"model_spec", "encoder", "depth", ...}``); the
architecture is read off the tensor names and shapes. Monodepth2 and BDEdepth files store no
depth range, so the reference default 0.1-100 m is assumed (pass it to ``convert_weights.py``
for e.g. NYUv2 models).
Every file is read with ``torch.load(weights_only=True)``; a PackNet ``.ckpt`` that it refuses (for
its pickled config) is read by `packnet_weights.RestrictedUnpickler`, which never runs pickled code.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from checkpoints import CHECKPOINT_FORMAT, ModelSpec, load_checkpoint
from released_layouts import convert_monodepth2_pose, infer_resnet_layers, tensors_only

logger = logging.getLogger(__name__)

MONODEPTH2_FILES = ("encoder.pth", "depth.pth", "pose_encoder.pth", "pose.pth")
# Monodepth2's depth range, assumed for its and BDEdepth's files (which do not store one).
DEFAULT_DEPTH_RANGE = (0.1, 100.0)
# SQLdepth's default --min_depth/--max_depth (its args files), for sizes no published model has.
SQLDEPTH_DEFAULT_DEPTH_RANGE = (0.001, 80.0)
# A tensor only SQLdepth's depth.pth has (its Self Query Layer's patch embedding).
SQLDEPTH_MARKER = "embedding_convPxP.weight"
# timm backbone of an SQLdepth encoder.pth, by a key only it has.
SQLDEPTH_TIMM_MARKERS = {"encoder.conv_stem.weight": "efficientnet_b5", "encoder.stem_0.weight": "convnext_large"}
# Keys of Monodepth2's encoder.pth / BDEdepth's file that are settings, not tensors.
SETTING_KEYS = ("height", "width", "use_stereo")

# Monodepth2's DepthDecoder registers its OrderedDict of layers as a ModuleList, so a layer's
# name is its position: upconv (4,0), (4,1), (3,0), ... (0,1), then dispconv per scale.
MONODEPTH2_UPCONVS = tuple(f"upconv_{i}_{j}" for i in range(4, -1, -1) for j in (0, 1))
# BDEdepth's grid decoder: 6 levels x 3 laterals + 5 x 3 upconvs, then one dispconv per scale.
GRID_DECODER_BASE_MODULES = 6 * 3 + 5 * 3


def convert_resnet_encoder(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Tensors only, without the unused classification head (our trunk has none)."""
    return {k: v for k, v in tensors_only(state).items() if not k.startswith("encoder.fc.")}


def convert_monodepth2_depth(state: dict[str, Any], source: str) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Rename ``decoder.N.*`` to our ``convs.<name>.*``; return the state and the scales."""
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"decoder\.(\d+)\.", k))})
    num_scales = len(indices) - len(MONODEPTH2_UPCONVS)
    if indices != list(range(len(indices))) or num_scales < 1:
        raise ValueError(f"{source}: expected Monodepth2 decoder layers decoder.0 .. decoder.N with "
                         f"N >= {len(MONODEPTH2_UPCONVS)}, found {indices}")
    names = list(MONODEPTH2_UPCONVS) + [f"dispconv_{s}" for s in range(num_scales)]
    converted = {}
    for key, value in tensors_only(state).items():
        index, rest = re.match(r"decoder\.(\d+)\.(.*)", key).groups()
        converted[f"convs.{names[int(index)]}.{rest}"] = value
    return converted, list(range(num_scales))


def _settings(state: dict[str, Any], source: str) -> dict[str, Any]:
    missing = [k for k in ("height", "width") if k not in state]
    if missing:
        raise ValueError(f"{source} lacks {missing}: the input size the model was trained at")
    return {"height": int(state["height"]), "width": int(state["width"]),
            "use_stereo": bool(state.get("use_stereo", False))}


def _add_pose(payload: dict, spec: ModelSpec, pose_encoder: dict | None, pose: dict | None, source: str) -> None:
    """Pose networks, when both halves are present (the depth model never needs them)."""
    if pose_encoder is None or pose is None:
        return
    payload["pose_encoder"] = convert_resnet_encoder(pose_encoder)
    payload["pose"], payload["num_frames_to_predict_for"] = convert_monodepth2_pose(pose, source)
    num_input_images = payload["pose_encoder"]["encoder.conv1.weight"].shape[1] // 3
    spec.pose_model_input = "pairs" if num_input_images == 2 else "all"


def load_monodepth2_folder(folder: str | Path, min_depth: float = 0.1, max_depth: float = 100.0) -> dict:
    """A released Monodepth2 model folder as our checkpoint payload."""
    folder = Path(folder)
    for name in MONODEPTH2_FILES[:2]:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a Monodepth2 model folder: {name} is missing "
                                    f"(expected {', '.join(MONODEPTH2_FILES)})")
    encoder = load_checkpoint(folder / "encoder.pth")
    depth = load_checkpoint(folder / "depth.pth")
    depth_state, scales = convert_monodepth2_depth(depth, str(folder / "depth.pth"))
    spec = ModelSpec(backbone="resnet", num_layers=infer_resnet_layers(encoder, str(folder / "encoder.pth")),
                     decoder="monodepth2", min_depth=min_depth, max_depth=max_depth, scales=scales,
                     **_settings(encoder, str(folder / "encoder.pth")))
    payload = {"format": CHECKPOINT_FORMAT, "encoder": convert_resnet_encoder(encoder), "depth": depth_state}
    pose_files = [folder / name for name in MONODEPTH2_FILES[2:]]
    if all(p.is_file() for p in pose_files):
        _add_pose(payload, spec, load_checkpoint(pose_files[0]), load_checkpoint(pose_files[1]), str(pose_files[1]))
    payload["model_spec"] = spec.to_dict()
    return payload


def sqldepth_settings(encoder: dict[str, torch.Tensor], depth: dict[str, torch.Tensor], source: str) -> dict:
    """What SQLdepth's released tensors say of the model: backbone and the Self Query Layer's sizes.

    Returns:
        ``{"backbone", "num_layers", "sql_patch_size", "sql_num_queries", "sql_num_bins",
        "sql_model_dim", "sql_dim_feedforward", "sql_num_features"}`` (ModelSpec fields).

    Raises:
        ValueError: a tensor the Self Query Layer needs is missing, or the backbone is unknown.
    """
    from networks import SQL_BACKBONES

    needed = (SQLDEPTH_MARKER, "convert_to_prob.0.weight", "transformer_encoder.layers.0.linear1.weight")
    missing = [k for k in needed if k not in depth]
    if missing:
        raise ValueError(f"{source}: not SQLdepth's Self Query Layer weights ({', '.join(missing)} missing)")
    if any(k.startswith("encoder.encoder.") for k in encoder) and "decoder.conv2.weight" in encoder:
        backbone, num_features = "resnet", int(encoder["decoder.conv2.weight"].shape[0])
        layers = infer_resnet_layers(encoder, source, prefix="encoder.encoder.")
        if layers != 50:
            raise ValueError(f"{source}: SQLdepth's ResNet path is a ResNet-50, this encoder is a ResNet-{layers}")
    else:
        found = [name for key, name in SQLDEPTH_TIMM_MARKERS.items() if key in encoder]
        if not found:
            raise ValueError(f"{source}: an SQLdepth encoder this toolkit does not know (neither the ResNet-50 "
                             f"fusion path nor one of {sorted(SQLDEPTH_TIMM_MARKERS.values())})")
        backbone, num_features = found[0], 256
    assert backbone in SQL_BACKBONES
    embedding = depth[SQLDEPTH_MARKER]  # E x E x p x p
    num_bins, num_queries = depth["convert_to_prob.0.weight"].shape[:2]
    return {"backbone": backbone, "num_layers": 50 if backbone == "resnet" else 18,
            "sql_patch_size": int(embedding.shape[-1]), "sql_num_queries": int(num_queries),
            "sql_num_bins": int(num_bins), "sql_model_dim": int(embedding.shape[0]),
            "sql_dim_feedforward": int(depth["transformer_encoder.layers.0.linear1.weight"].shape[0]),
            "sql_num_features": num_features}


def sqldepth_depth_range(settings: dict, height: int, width: int, source: str, sql_variant: str | None = None,
                         depth_range: tuple[float | None, float | None] = (None, None)) -> tuple[float, float]:
    """The depth range of an SQLdepth model: named variant, else flags, else the published one of its size.

    Raises:
        ValueError: ``sql_variant`` is unknown or its sizes differ from the tensors' (each named).
    """
    from networks.sqldepth import SQL_BACKBONES_BY_NAME, SQLDEPTH_VARIANTS

    def describe(variant) -> dict:
        return {"backbone": variant.backbone, "height": variant.height, "width": variant.width,
                "sql_patch_size": variant.patch_size, "sql_num_queries": variant.num_queries,
                "sql_num_bins": variant.num_bins}

    found = {"backbone": SQL_BACKBONES_BY_NAME[settings["backbone"]], "height": height, "width": width,
             **{k: settings[k] for k in ("sql_patch_size", "sql_num_queries", "sql_num_bins")}}
    if sql_variant is not None:
        if sql_variant not in SQLDEPTH_VARIANTS:
            raise ValueError(f"--sql_variant must be one of {sorted(SQLDEPTH_VARIANTS)} (got {sql_variant!r})")
        variant = SQLDEPTH_VARIANTS[sql_variant]
        differ = [f"{k} {v} (the weights have {found[k]})" for k, v in describe(variant).items() if found[k] != v]
        if differ:
            raise ValueError(f"{source} is not SQLdepth's {sql_variant}: {', '.join(differ)}; choose the variant "
                             "these weights belong to, or give --min_depth/--max_depth without --sql_variant")
        return variant.min_depth, variant.max_depth
    if None not in depth_range:
        return depth_range
    for name, variant in SQLDEPTH_VARIANTS.items():
        if describe(variant) == found:
            logger.info("%s: sizes of SQLdepth's %s, depth range %g-%g m", source, name, variant.min_depth,
                        variant.max_depth)
            return variant.min_depth, variant.max_depth
    logger.warning("%s: no published SQLdepth model has these sizes; assuming its default depth range %g-%g m "
                   "(give --min_depth/--max_depth if it was trained with another)", source,
                   *SQLDEPTH_DEFAULT_DEPTH_RANGE)
    return SQLDEPTH_DEFAULT_DEPTH_RANGE


def convert_posecnn(state: dict[str, Any], source: str) -> dict[str, torch.Tensor]:
    """Monodepth2/SQLdepth PoseCNN (``net.N``, ``pose_conv``) in our key names (``convs.convN``)."""
    converted = {}
    for key, value in tensors_only(state).items():
        if key.startswith("module."):
            key = key[len("module."):]
        match = re.match(r"net\.(\d+)\.(.+)", key)
        converted[f"convs.conv{match.group(1)}.{match.group(2)}" if match else key] = value
    if "pose_conv.weight" not in converted:
        raise ValueError(f"{source}: not a PoseCNN (no pose_conv)")
    return converted


def load_sqldepth_folder(folder: str | Path, sql_variant: str | None = None,
                         depth_range: tuple[float | None, float | None] = (None, None)) -> dict:
    """A released SQLdepth model folder as our checkpoint payload (module docstring)."""
    folder = Path(folder)
    for name in ("encoder.pth", "depth.pth"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not an SQLdepth model folder: {name} is missing")
    encoder = load_checkpoint(folder / "encoder.pth")
    size = _settings(encoder, str(folder / "encoder.pth"))
    encoder_state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in tensors_only(encoder).items()}
    depth = tensors_only(load_checkpoint(folder / "depth.pth"))
    settings = sqldepth_settings(encoder_state, depth, str(folder))
    min_depth, max_depth = sqldepth_depth_range(settings, size["height"], size["width"], str(folder), sql_variant,
                                                depth_range)
    spec = ModelSpec(decoder="sql", min_depth=min_depth, max_depth=max_depth, scales=[0],
                     pose_model_type="posecnn", **settings, **size)
    if not spec.use_stereo:
        spec.pose_translation_scaling = "mean_inverse_depth"  # what its monocular runs trained with
    payload = {"format": CHECKPOINT_FORMAT, "encoder": encoder_state, "depth": depth}
    if (folder / "pose.pth").is_file():
        payload["pose"] = convert_posecnn(load_checkpoint(folder / "pose.pth"), str(folder / "pose.pth"))
    payload["model_spec"] = spec.to_dict()
    return payload


def load_released_folder(folder: str | Path, sql_variant: str | None = None,
                         depth_range: tuple[float | None, float | None] = (None, None)) -> dict:
    """A released model folder, SQLdepth's or Monodepth2's (told apart by ``depth.pth``'s tensors)."""
    folder = Path(folder)
    depth_file = folder / "depth.pth"
    if depth_file.is_file() and SQLDEPTH_MARKER in load_checkpoint(depth_file):
        return load_sqldepth_folder(folder, sql_variant, depth_range)
    if sql_variant is not None:
        raise ValueError(f"--sql_variant {sql_variant}: {folder} is not an SQLdepth model folder")
    min_depth, max_depth = (DEFAULT_DEPTH_RANGE if None in depth_range else depth_range)
    return load_monodepth2_folder(folder, min_depth, max_depth)


def convert_bdedepth(payload: dict, source: str, min_depth: float = 0.1, max_depth: float = 100.0) -> dict:
    """A released BDEdepth file (``encoder``, ``depth``, settings) as our checkpoint payload."""
    from networks import DEPTH_DECODERS, DEPTH_ENCODERS

    for key in ("encoder", "depth"):
        if key not in payload:
            raise ValueError(f"{source} has no '{key}' weights: neither our checkpoint, nor a BDEdepth file")
    encoder, depth = tensors_only(payload["encoder"]), tensors_only(payload["depth"])
    hrnet = any(k.startswith(("encoder.transition", "encoder.stage")) for k in encoder)
    backbone = "hrnet" if hrnet else "resnet"
    for registry, name, what in ((DEPTH_ENCODERS, backbone, "backbone"), (DEPTH_DECODERS, "bdedepth", "decoder")):
        if name not in registry:
            raise ValueError(f"{source} is a BDEdepth {backbone} model, but this version has no '{name}' "
                             f"{what} in networks")
    indices = {int(m.group(1)) for k in depth if (m := re.match(r"decoder\.(\d+)\.", k))}
    num_scales = len(indices) - GRID_DECODER_BASE_MODULES
    if num_scales < 1:
        raise ValueError(f"{source}: the depth weights are not BDEdepth's grid decoder "
                         f"({len(indices)} modules, expected at least {GRID_DECODER_BASE_MODULES + 1})")
    spec = ModelSpec(backbone=backbone, num_layers=18 if hrnet else infer_resnet_layers(encoder, source),
                     decoder="bdedepth", min_depth=min_depth, max_depth=max_depth,
                     scales=list(range(num_scales)), frame_ids=[0, -1, 1], **_settings(payload, source))
    converted = {"format": CHECKPOINT_FORMAT, "encoder": convert_resnet_encoder(encoder), "depth": depth}
    _add_pose(converted, spec, payload.get("pose_encoder"), payload.get("pose"), source)
    converted["model_spec"] = spec.to_dict()
    return converted


# What `read_weights` found, in words (log lines and errors).
WEIGHT_FORMATS = {"ours": "checkpoint", "monodepth2": "Monodepth2 model folder", "sqldepth": "SQLdepth model folder",
                  "bdedepth": "BDEdepth file", "packnet": "PackNet-SfM checkpoint", "featdepth": "FeatDepth checkpoint"}


def read_weights(path: str | Path, image_shape: tuple[int, int] | None = None,
                 depth_range: tuple[float | None, float | None] = (None, None)) -> tuple[dict, str]:
    """Any supported weights as our payload, and which format they were (a key of `WEIGHT_FORMATS`):
    ours, a Monodepth2 or SQLdepth folder, a BDEdepth file, a PackNet-SfM ``.ckpt`` / ``.pth.tar`` or
    its extracted state dict (`packnet_weights`), a FeatDepth mmcv file (`featdepth_weights`).

    Args:
        image_shape: (H, W) for PackNet and FeatDepth files, which do not record it (PackNet's
            config may; FeatDepth's default is 320 x 1024).
        depth_range: (min, max) depth for released Monodepth2/BDEdepth/SQLdepth files, which do not
            store theirs (None: the reference defaults); formats that record a range keep it.
    """
    from featdepth_weights import convert_featdepth_checkpoint, featdepth_state_dict
    from packnet_weights import convert_packnet_checkpoint, has_packnet_suffix, load_packnet_file, packnet_state_dict

    path = Path(path)
    if path.is_dir():
        payload = load_released_folder(path, depth_range=depth_range)
        return payload, "sqldepth" if payload["model_spec"]["decoder"] == "sql" else "monodepth2"
    # PackNet's own files hold a pickled config: they get the restricted second read.
    payload = load_packnet_file(path) if has_packnet_suffix(path) else load_checkpoint(path)
    if "model_spec" in payload:
        return payload, "ours"
    if packnet_state_dict(payload) is not None:
        return convert_packnet_checkpoint(payload, str(path), image_shape)[0], "packnet"
    if featdepth_state_dict(payload) is not None:
        return convert_featdepth_checkpoint(payload, str(path), image_shape)[0], "featdepth"
    return convert_bdedepth(payload, str(path), *(DEFAULT_DEPTH_RANGE if None in depth_range else depth_range)), \
        "bdedepth"


def to_checkpoint_payload(path: str | Path, image_shape: tuple[int, int] | None = None) -> dict:
    """`read_weights`'s payload alone."""
    return read_weights(path, image_shape)[0]
