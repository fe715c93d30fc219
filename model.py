"""The self-supervised depth method as one module: networks, forward pass, losses, depth.

`SelfSupervisedDepth` holds every network of a configuration in one ``nn.ModuleDict``
(``networks``: ``"depth"``, ``"pose"`` when a pose network is used, and any auxiliary network a
loss term declares) and reads top to bottom:

    inputs = model.prepare_inputs(batch, device)  # uint8 frames -> float views, pyramid, jitter
    outputs = model(inputs)                       # depth, poses, view synthesis per branch
    losses = model.losses(inputs, outputs)        # {"loss": total, "loss/<term>": value, ...}
    depth = model.predict_depth(images)           # the only network-output -> depth conversion

The Trainer is only the engine around these calls (loop, DDP, checkpoints, logging). It drives
any `TrainableMethod` the same way: ``--method autoencoder`` builds `AutoencoderTraining`,
FeatDepth's stage 1 (the FeatureNet whose encoder the feature-metric loss term reads), with the
same four calls (`build_training_model`).

Batch keys (the dataset's schema is in `MonoDataset.__getitem__`):

    ("color_uint8", f, 0)     uint8 B x 3 x H x W frame f as loaded (f in 0, -1, 1, ..., "s")
    ("color", f, s)           float [0, 1] frame f at scale s (H/2^s x W/2^s); s >= 1 for frame 0
                              only unless --v1_multiscale
    ("color_aug", f, 0)       float [0, 1] colour-jittered frame f: what the networks see
    ("color_local", f, s)     float local-crop view of frame f (BDEdepth --use_local_crop)
    ("color_local_aug", 0, 0) its jittered frame 0
    ("color_reshuffle", 0, 0), ("color_reshuffle_aug", 0, 0)
                              frame 0 split and permuted (BDEdepth --use_patch_reshuffle)
    ("K", s), ("inv_K", s)    B x 4 x 4 intrinsics at scale s, pixels; "stereo_T" B x 4 x 4
    ("translation_norm", f)   float B: metres travelled between the target and temporal frame f
                              (only with --velocity_weight; `losses.velocity_term` reads it)
    "flip_depth_input"        bool B: mirror this sample's depth-network input and output only
                              (only with --flip_mode depth_net, PackNet-SfM's flip)

Outputs (``forward``); ``<branch>`` is "" for the original view, "_local" or "_reshuffle":

    ("disp<branch>", s)           B x 1 x H/2^s x W/2^s network output at decoder scale s
                                  (sigmoid disparity; the reshuffled branch's is restored to the
                                  original layout); a network whose ``output_kind`` is
                                  "inv_depth" (PackNet) or "depth" puts its maps under that key
                                  instead, and `output_to_depth` is the only reader that cares
    ("depth<branch>", 0, s)       B x 1 x h x w depth used to warp scale s (h x w = H x W unless
                                  --v1_multiscale), model units (metres up to scale)
    (<rotation>, 0, f), ("translation", 0, f)
                                  raw pose-network outputs for source f (B x N x 1 x 3), the
                                  rotation under its parametrisation's name: "axisangle"
                                  (Monodepth2's networks) or "euler" (PackNet's)
    ("cam_T_cam", 0, f)           B x 4 x 4 T_source_from_target for temporal source f
    ("sample_grid<branch>", f, s) B x h x w x 2 normalised sampling grid into source f
    ("warped<branch>", f, s)      B x 3 x h x w source f warped into the target
    ("depth_features", 0)         the depth encoder's feature list (only when a loss term
                                  declares it needs "depth_features")
    "finite_checks"               [(name, bool tensor)] device flags: grids, depths and poses
                                  are finite (read by `nonfinite_names`)
and, after ``losses``, the maps the terms log: ("automask<branch>", s) B x 1 x h x w, and what the
photometric terms share: ("image_only_photometric", images, source scale) = (the target's SSIM
statistics, the unwarped frames' B x N x h x w errors), computed once per batch
(`losses.image_only_photometric`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Callable, Collection, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from augmentation import apply_color_jitter, mirror_where, reshuffle_images, restore_reshuffled
from checkpoints import ModelSpec
from datasets.mono_dataset import STEREO_BASELINE_UNITS
from layers import backproject, disp_to_depth, project, transformation_from_parameters, upsample_disp, warp
from local_crop import crop_pose_correction, local_crop_camera
from losses import (LOCAL_VIEW, ORIGINAL_VIEW, RESHUFFLE_VIEW, LossSettings, LossTerm, View, build_loss_terms,
                    enabled_views)
from networks import DepthNetwork, SelfQuerySettings, build_depth_network, build_pose_network
from networks.sqldepth import SQLdepthNetwork
from networks.packnet import euler_pose_to_matrix

logger = logging.getLogger(__name__)

# Checkpoint names of the networks, in the order the optimiser has always listed their
# parameters (resume checkpoints index optimiser state by that order).
CHECKPOINT_NAMES = ("encoder", "depth", "pose_encoder", "pose")

# Smallest inverse depth converted to depth (PackNet-SfM's inv2depth clamp).
INVERSE_DEPTH_FLOOR = 1e-6

# Where a sanitised non-finite sampling coordinate points: outside [-1, 1], i.e. off the image.
OUTSIDE_GRID = 2.0


def add_smaller_scales(inputs: dict, name: str, frame_ids: Sequence, num_scales: int, all_frames: bool) -> None:
    """``(name, f, s)`` for s >= 1 by repeated 2x2 area averaging of ``(name, f, 0)`` (in place):
    frame 0 only (the smoothness term's edge guide) unless ``all_frames`` (v1 multi-scale)."""
    for frame_id in frame_ids:
        if frame_id == 0 or all_frames:
            for scale in range(1, num_scales):
                inputs[(name, frame_id, scale)] = F.avg_pool2d(inputs[(name, frame_id, scale - 1)], 2)


def prepare_batch(batch: dict, device: torch.device, frame_ids: Sequence, num_scales: int,
                  all_frames_multiscale: bool) -> dict:
    """Move a collated batch to ``device`` and add the float views the networks and losses read.

    Adds ``("color", f, 0)`` as float in [0, 1] from ``("color_uint8", f, 0)``, ``("color_aug",
    f, 0)`` with the sample's colour jitter (one draw per sample shared by its frames, or per
    frame), smaller scales (`add_smaller_scales`) and BDEdepth's views (`prepare_bde_views`).
    """
    inputs = {key: value.to(device, non_blocking=True) if torch.is_tensor(value) else value
              for key, value in batch.items()}
    frames = torch.stack([inputs[("color_uint8", f, 0)] for f in frame_ids], dim=1).float() / 255.0
    jitter = inputs["color_jitter"]
    if jitter.dim() == 3:  # per-frame parameters: fold frames into the batch
        b, f = frames.shape[:2]
        enabled = inputs["do_color_aug"].repeat_interleave(f)
        augmented = apply_color_jitter(frames.flatten(0, 1), jitter.flatten(0, 1), enabled)
        augmented = augmented.unflatten(0, (b, f))
    else:
        augmented = apply_color_jitter(frames, jitter, inputs["do_color_aug"])
    for i, frame_id in enumerate(frame_ids):
        inputs[("color", frame_id, 0)] = frames[:, i]
        inputs[("color_aug", frame_id, 0)] = augmented[:, i]
    add_smaller_scales(inputs, "color", frame_ids, num_scales, all_frames_multiscale)
    prepare_bde_views(inputs, frame_ids, num_scales, all_frames_multiscale)
    return inputs


def prepare_bde_views(inputs: dict, frame_ids: Sequence, num_scales: int, all_frames_multiscale: bool) -> None:
    """BDEdepth's views, on the device, when the batch carries them (in place).

    Local crop: ``("color_local", f, s)`` float in [0, 1] (smaller scales as for the original
    frames) and the jittered network input ``("color_local_aug", 0, 0)``. Reshuffle:
    ``("color_reshuffle", 0, 0)``, frame 0 cyclically shifted by ``split_xy`` (no loop over
    samples), and its jittered copy ``("color_reshuffle_aug", 0, 0)``. The jitter parameters
    are ``bde_jitter``'s rows (the sample's own draw unless ``--jitter_per_frame``).
    """
    if "bde_jitter" not in inputs:
        return
    enabled = inputs["do_color_aug"]
    if ("color_local_uint8", 0, 0) in inputs:
        for frame_id in frame_ids:
            inputs[("color_local", frame_id, 0)] = inputs[("color_local_uint8", frame_id, 0)].float() / 255.0
        add_smaller_scales(inputs, "color_local", frame_ids, num_scales, all_frames_multiscale)
        inputs[("color_local_aug", 0, 0)] = apply_color_jitter(inputs[("color_local", 0, 0)],
                                                               inputs["bde_jitter"][:, 0], enabled)
    if "split_xy" in inputs:
        reshuffled = reshuffle_images(inputs[("color", 0, 0)], inputs["split_xy"])
        inputs[("color_reshuffle", 0, 0)] = reshuffled
        inputs[("color_reshuffle_aug", 0, 0)] = apply_color_jitter(reshuffled, inputs["bde_jitter"][:, 1], enabled)


def output_to_depth(output: torch.Tensor, kind: str, min_depth: float, max_depth: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The one conversion of a depth network's output into depth.

    Args:
        output: the network's map, any shape.
        kind: the network's ``output_kind``: "disp" (sigmoid disparity in (0, 1), mapped into the
            depth range as Monodepth2 does), "inv_depth" (inverse depth, PackNet) or "depth".
        min_depth, max_depth: the depth range the network was trained with (model units; used
            by "disp" only).

    Returns:
        ``(inverse_depth, depth)``, both shaped like ``output``; for "disp" the inverse depth is
        the scaled disparity of `layers.disp_to_depth` (exactly what the lineage evaluates).
    """
    if kind == "disp":
        return disp_to_depth(output, min_depth, max_depth)
    if kind == "inv_depth":  # PackNet's inv2depth: a zero inverse depth is 1e6, not infinite
        return output, 1.0 / output.clamp(min=INVERSE_DEPTH_FLOOR)
    if kind == "depth":
        return 1.0 / output, output
    raise ValueError(f"unknown depth network output kind {kind!r}: expected disp, inv_depth or depth")


def pose_matrix(angles: torch.Tensor, translation: torch.Tensor, parametrisation: str = "axisangle",
                invert: bool = False) -> torch.Tensor:
    """T_source_from_target, B x 4 x 4, from a pose network's B x 1 x 3 rotation and translation.

    ``parametrisation`` is the pose network's: "axisangle" (Monodepth2: R from the axis-angle,
    translation applied after; ``invert`` for past frames fed in temporal order) or "euler"
    (PackNet: R = Rx Ry Rz, `networks.packnet.euler_pose_to_matrix`).
    """
    if parametrisation == "axisangle":
        return transformation_from_parameters(angles, translation, invert=invert)
    if parametrisation == "euler" and not invert:
        return euler_pose_to_matrix(torch.cat([translation.flatten(1), angles.flatten(1)], dim=1))
    raise ValueError(f"no pose matrix for parametrisation {parametrisation!r} with invert={invert}")


def raise_if_not_finite(step: int, names: list[str], flags: torch.Tensor, advice: str) -> None:
    """Raise FloatingPointError naming ``step`` and every quantity whose flag is False.

    Args:
        names, flags: from `SelfSupervisedDepth.finite_flags`.
        advice: what to do about it, appended to the message.
    """
    if bool(flags.all()):
        return
    bad = [name for name, ok in zip(names, flags.tolist()) if not ok]
    raise FloatingPointError(f"non-finite values at step {step}: {', '.join(bad)}; {advice}")


class TrainableMethod(nn.Module):
    """What the Trainer needs of a method besides its forward pass: named networks, checkpoints, flags.

    A subclass holds its networks in ``self.networks`` (an ``nn.ModuleDict``), describes itself in
    ``self.spec`` (`ModelSpec`) and defines ``checkpoint_modules``, ``prepare_inputs``, ``forward``,
    ``losses`` and ``logged_images``. Networks without a trainable parameter (frozen auxiliary
    networks) stay in eval mode and out of the optimiser.
    """

    spec: ModelSpec

    def checkpoint_modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters in checkpoint order (the optimiser's order since the first checkpoint)."""
        return [p for module in self.checkpoint_modules().values() for p in module.parameters() if p.requires_grad]

    def state_dicts(self) -> dict[str, dict]:
        return {name: module.state_dict() for name, module in self.checkpoint_modules().items()}

    def describe_networks(self) -> str:
        """The configuration's networks, for messages about weights that do not fit."""
        return f"{self.spec.backbone}/{self.spec.decoder}"

    def load_state_dicts(self, payload: dict, source: str, strict_names: bool = True) -> None:
        """Load every network from a payload of ``{checkpoint name: state_dict}``.

        Raises:
            ValueError: naming ``source`` and the missing or mismatching network.
        """
        for name, module in self.checkpoint_modules().items():
            if name not in payload:
                if not strict_names:
                    continue
                raise ValueError(f"{source} has no '{name}' weights, needed by this configuration")
            try:
                module.load_state_dict(payload[name])
            except RuntimeError as err:
                raise ValueError(f"{source}: the '{name}' weights do not fit the {self.describe_networks()} "
                                 f"network of this configuration: "
                                 f"{summarize_mismatches(state_mismatches(module, payload[name]))}") from err

    def train(self, mode: bool = True) -> "TrainableMethod":
        super().train(mode)
        # A frozen auxiliary network (no trainable parameter) keeps its inference behaviour.
        for name, network in self.networks.items():
            if name not in ("depth", "pose") and not any(p.requires_grad for p in network.parameters()):
                network.eval()
        return self

    @staticmethod
    def finite_flags(outputs: dict, losses: dict) -> tuple[list[str], torch.Tensor]:
        """(names, one bool tensor of flags on the device): the loss terms, total, grids, depths, poses."""
        names = [name for name in losses]
        flags = [torch.isfinite(value.detach()).all() if torch.is_tensor(value) else
                 torch.tensor(bool(value == value and abs(value) != float("inf")))
                 for value in losses.values()]
        device = flags[0].device if flags else torch.device("cpu")
        for name, flag in outputs.get("finite_checks", []):
            names.append(name)
            flags.append(flag)
        return names, torch.stack([flag.to(device) for flag in flags])


class SelfSupervisedDepth(TrainableMethod):
    """Depth and pose networks trained by view synthesis (Monodepth2, BDEdepth's views).

    Args:
        spec: the architecture and depth range (`checkpoints.ModelSpec`).
        loss_settings: what the loss terms read; None builds a model for inference only.
        loss_terms: ``(name, LossTerm, weight)`` from `losses.build_loss_terms`.
        auxiliary_networks: extra networks declared by loss terms, by name.
        use_pose_network: build the pose network (False for stereo-only training and inference).
        pretrained: start encoders from ImageNet weights: True/False for every network, or the names
            of the networks (``depth``, ``pose``) whose encoders start so (the others' weights come
            from a file).
        views: the depth branches, original first (BDEdepth adds local and reshuffle).
        bde_local_reference: warp the local view with BDEdepth's own crop-camera model.
    """

    def __init__(self, spec: ModelSpec, loss_settings: LossSettings | None = None,
                 loss_terms: Sequence[tuple[str, LossTerm, float]] = (),
                 auxiliary_networks: dict[str, nn.Module] | None = None, use_pose_network: bool = True,
                 pretrained: bool | Collection[str] = False, views: Sequence[View] = (ORIGINAL_VIEW,),
                 bde_local_reference: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.loss_settings = loss_settings
        self.loss_terms = list(loss_terms)
        self.views = tuple(views)
        self.bde_local_reference = bde_local_reference
        # Set by an engine that reads the finite-value flags late: a non-finite sampling grid is
        # replaced before grid_sample, whose CPU backward crashes on NaN coordinates.
        self.sanitize_grids = False
        self.scales = list(spec.scales)
        self.temporal_frame_ids = list(spec.frame_ids)
        self.frame_ids = self.temporal_frame_ids + (["s"] if spec.use_stereo else [])
        self.source_frame_ids = self.frame_ids[1:]
        self.needs = frozenset().union(*(term.needs for _, term, _ in self.loss_terms))
        if isinstance(pretrained, bool):
            pretrained_networks = {"depth", "pose"} if pretrained else set()
        else:
            pretrained_networks = set(pretrained)
        networks = {"depth": build_depth_network(
            backbone=spec.backbone, num_layers=spec.num_layers, decoder=spec.decoder, scales=tuple(spec.scales),
            pretrained="depth" in pretrained_networks, height=spec.height, width=spec.width,
            min_depth=spec.min_depth, max_depth=spec.max_depth, sql=SelfQuerySettings.from_prefixed(spec))}
        if use_pose_network:
            pairs = spec.pose_model_input == "pairs"
            num_input_frames = 2 if pairs else len(self.temporal_frame_ids)
            networks["pose"] = build_pose_network(
                pose_model_type=spec.pose_model_type, num_layers=spec.pose_layers,
                num_input_frames=num_input_frames, pretrained="pose" in pretrained_networks,
                num_frames_to_predict_for=spec.pose_num_transforms if pairs else num_input_frames - 1)
        for name, network in (auxiliary_networks or {}).items():
            if name in networks or name in CHECKPOINT_NAMES:
                raise ValueError(f"a loss term declares a network named {name!r}, which is taken: rename it")
            networks[name] = network
        self.networks = nn.ModuleDict(networks)
        # The key and meaning of the depth network's outputs ("disp", "inv_depth" or "depth").
        self.output_kind = getattr(networks["depth"], "output_kind", "disp")
        if self.loss_settings is not None:
            self.loss_settings = dataclasses.replace(self.loss_settings, output_kind=self.output_kind)
        if len(self.views) > 1 and self.output_kind != "disp":
            raise ValueError(f"BDEdepth's views (--use_local_crop, --use_patch_reshuffle) need a disparity network; "
                             f"--backbone {spec.backbone} predicts {self.output_kind}")
        if "depth_features" in self.needs and not hasattr(networks["depth"], "encoder"):
            raise ValueError(f"a loss term needs the depth encoder's features, and --backbone {spec.backbone} "
                             "has no separate encoder")
        self.run_depth: Callable = self.networks["depth"]
        self.run_pose: Callable | None = self.networks["pose"] if use_pose_network else None

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def from_options(cls, opts: argparse.Namespace,
                     pretrained: bool | Collection[str] | None = None) -> "SelfSupervisedDepth":
        """The training model the command-line options describe (losses, views, networks)."""
        from options import training_frame_ids, uses_pose_network

        terms = build_loss_terms(opts)
        auxiliary = {}
        for _, term, _ in terms:
            if term.networks is not None:
                auxiliary.update(term.networks(opts))
        settings = LossSettings.from_options(opts, training_frame_ids(opts)[1:])
        return cls(ModelSpec.from_options(opts), settings, terms, auxiliary, use_pose_network=uses_pose_network(opts),
                   pretrained=opts.weights_init == "pretrained" if pretrained is None else pretrained,
                   views=enabled_views(opts), bde_local_reference=opts.local_crop_geometry == "reference")

    @classmethod
    def for_inference(cls, spec: ModelSpec) -> "SelfSupervisedDepth":
        """The depth network alone, as a checkpoint describes it (no pose network, no losses)."""
        return cls(spec, use_pose_network=False)

    def checkpoint_modules(self) -> dict[str, nn.Module]:
        """Checkpoint name -> module: ``encoder``, ``depth`` (the decoder), ``pose_encoder``,
        ``pose`` (the names Monodepth2 and every checkpoint of this toolkit use), then the
        auxiliary networks under their own names."""
        depth_net = self.networks["depth"]
        if isinstance(depth_net, (DepthNetwork, SQLdepthNetwork)):  # SQLdepth's files split the same way
            modules = {"encoder": depth_net.encoder, "depth": depth_net.decoder}
        else:  # a whole encoder-decoder (PackNet): one state dict under "depth"
            modules = {"depth": depth_net}
        if "pose" in self.networks:
            pose_net = self.networks["pose"]
            if pose_net.encoder is not None:
                modules["pose_encoder"] = pose_net.encoder
            modules["pose"] = pose_net.decoder
        modules.update({name: net for name, net in self.networks.items() if name not in ("depth", "pose")})
        return modules

    def wrap_networks(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Run the depth and pose networks through ``wrap`` (autocast, channels_last, compile).

        The wrapped callables are kept outside the module tree: parameters, checkpoints and the
        optimiser keep seeing each weight once, under its plain name.
        """
        self.run_depth = wrap(self.networks["depth"])
        if self.run_pose is not None:
            self.run_pose = wrap(self.networks["pose"])

    def __setattr__(self, name, value):
        # The wrapped networks are plain callables for the forward pass, not submodules.
        if name in ("run_depth", "run_pose"):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # ------------------------------------------------------------------------------ the batch
    def prepare_inputs(self, batch: dict, device: torch.device) -> dict:
        """`prepare_batch` with this model's frames and scales; ``stereo_T`` rescaled from the
        datasets' 0.1-unit baseline to ``spec.stereo_baseline`` (FeatDepth's 0.015)."""
        inputs = prepare_batch(batch, device, self.frame_ids, len(self.scales), self.loss_settings.v1_multiscale)
        if "stereo_T" in inputs and self.spec.stereo_baseline != STEREO_BASELINE_UNITS:
            stereo_T = inputs["stereo_T"].clone()
            stereo_T[:, 0, 3] *= self.spec.stereo_baseline / STEREO_BASELINE_UNITS
            inputs["stereo_T"] = stereo_T
        return inputs

    # ------------------------------------------------------------------------------ forward
    def forward(self, inputs: dict) -> dict:
        """Disparities, poses and warped source frames for every branch (module docstring)."""
        outputs: dict = {"finite_checks": []}
        target = inputs[("color_aug", 0, 0)]
        # PackNet-SfM's flip (--flip_mode depth_net): the depth network alone sees the mirrored
        # target and its maps are mirrored back; encoder features stay as the network saw them.
        mirrored = inputs.get("flip_depth_input")
        if mirrored is not None:
            target = mirror_where(target, mirrored)
        if "depth_features" in self.needs:
            depth_net = self.networks["depth"]
            features = depth_net.encoder(target)
            outputs[("depth_features", 0)] = features
            depth_maps = depth_net.decoder(features)
        else:
            depth_maps = self.run_depth(target)
        if mirrored is not None:
            depth_maps = {key: mirror_where(value, mirrored) for key, value in depth_maps.items()}
        outputs.update(depth_maps)
        if self.run_pose is not None:
            outputs.update(self.predict_poses(inputs, outputs))
            for frame_id in self.source_frame_ids:
                if frame_id != "s":
                    self._check_finite(outputs, f"pose of frame {frame_id}", outputs[("cam_T_cam", 0, frame_id)])
        self.synthesize_views(inputs, outputs)
        if LOCAL_VIEW in self.views:  # disparity networks only (checked at construction)
            for (_, scale), disp in self.run_depth(inputs[("color_local_aug", 0, 0)]).items():
                outputs[("disp_local", scale)] = disp
            self.synthesize_views(inputs, outputs, LOCAL_VIEW, self.local_view_cameras(inputs))
        if RESHUFFLE_VIEW in self.views:
            width = inputs[("color", 0, 0)].shape[-1]
            for (_, scale), disp in self.run_depth(inputs[("color_reshuffle_aug", 0, 0)]).items():
                outputs[("disp_reshuffle", scale)] = restore_reshuffled(disp, inputs["split_xy"], width)
            self.synthesize_views(inputs, outputs, RESHUFFLE_VIEW)
        return outputs

    @staticmethod
    def _check_finite(outputs: dict, name: str, tensor: torch.Tensor) -> None:
        # A device-side flag: reading it is left to the caller, which decides when to synchronise.
        outputs["finite_checks"].append((name, torch.isfinite(tensor.detach()).all()))

    def predict_poses(self, inputs: dict, depth_outputs: dict | None = None) -> dict:
        """``("cam_T_cam", 0, f)``: T_source_from_target for every temporal source frame f.

        Pairs are always fed in temporal order, (f, 0) for f < 0 and (0, f) otherwise, and the
        transform is inverted for past frames, so the pose net sees forward motion only. With
        ``--pose_translation_scaling mean_inverse_depth`` the translations are multiplied by each
        target's mean inverse depth (read from ``depth_outputs``, the depth network's outputs)
        before the matrix is built; the raw translations are kept under ``"translation"``.
        """
        outputs = {}
        temporal_sources = [f for f in self.source_frame_ids if f != "s"]
        parametrisation = self.networks["pose"].parametrisation
        scale = self.translation_scale(depth_outputs)
        frames = {f: self.pose_input(inputs[("color_aug", f, 0)]) for f in self.temporal_frame_ids}
        if self.spec.pose_model_input == "pairs":
            for frame_id in temporal_sources:
                ordered = (frame_id, 0) if frame_id < 0 else (0, frame_id)
                pair = torch.cat([frames[f] for f in ordered], dim=1)
                axisangle, translation = self.run_pose(pair)
                outputs[(parametrisation, 0, frame_id)] = axisangle
                outputs[("translation", 0, frame_id)] = translation
                outputs[("cam_T_cam", 0, frame_id)] = pose_matrix(axisangle[:, 0], translation[:, 0] * scale,
                                                                  parametrisation, invert=frame_id < 0)
        else:
            stacked = torch.cat([frames[f] for f in self.temporal_frame_ids], dim=1)
            axisangle, translation = self.run_pose(stacked)
            for i, frame_id in enumerate(temporal_sources):
                outputs[(parametrisation, 0, frame_id)] = axisangle
                outputs[("translation", 0, frame_id)] = translation
                outputs[("cam_T_cam", 0, frame_id)] = pose_matrix(axisangle[:, i], translation[:, i] * scale,
                                                                  parametrisation)
        return outputs

    def pose_input(self, image: torch.Tensor) -> torch.Tensor:
        """A frame as the pose network sees it: resized (bilinear, half-pixel centres) to
        ``spec.pose_input_size`` when one is set (FeatDepth feeds 192 x 640 at any training size)."""
        size = self.spec.pose_input_size
        if size is None or tuple(image.shape[-2:]) == tuple(size):
            return image
        return F.interpolate(image, size=tuple(size), mode="bilinear", align_corners=False)

    def translation_scale(self, depth_outputs: dict | None) -> torch.Tensor | float:
        """1, or B x 1 x 1: each target's spatial mean inverse depth (--pose_translation_scaling)."""
        if self.spec.pose_translation_scaling == "none":
            return 1.0
        inverse_depth, _ = output_to_depth(depth_outputs[(self.output_kind, 0)], self.output_kind,
                                           self.spec.min_depth, self.spec.max_depth)
        return inverse_depth.mean(dim=(2, 3)).unsqueeze(-1)

    def local_view_cameras(self, inputs: dict) -> dict:
        """Cameras of the local view: ``K``/``inv_K`` per source scale, ``Rc`` and ``depth_scale``.

        See `local_crop.local_crop_camera`; ``--local_crop_geometry reference`` keeps the
        original intrinsics and corrects the poses instead.
        """
        height, width = inputs[("color", 0, 0)].shape[-2:]
        camera = local_crop_camera(inputs["local_crop"], inputs[("K", 0)], inputs[("inv_K", 0)],
                                   height, width, reference=self.bde_local_reference)
        K, inv_K = {}, {}
        for scale in {self.loss_settings.source_scale(s) for s in self.scales}:
            if camera["Rc"] is not None:
                K[scale], inv_K[scale] = inputs[("K", scale)], inputs[("inv_K", scale)]
                continue
            factor = 2.0 ** -scale  # scale s halves the pixel coordinates s times
            K[scale] = torch.cat([camera["K"][:, :2] * factor, camera["K"][:, 2:]], dim=1)
            inv_K[scale] = torch.cat([camera["inv_K"][:, :, :2] / factor, camera["inv_K"][:, :, 2:]], dim=2)
        return {"K": K, "inv_K": inv_K, "Rc": camera["Rc"], "depth_scale": camera["depth_scale"]}

    def synthesize_views(self, inputs: dict, outputs: dict, view: View = ORIGINAL_VIEW,
                         cameras: dict | None = None) -> None:
        """Warp every source frame into the target with each scale's depth.

        The target's camera points depend only on its depth, so they are back-projected once per
        scale and projected into each source camera. The loss settings choose how each scale's
        output is upsampled and how points outside a source frame are padded (`LOSS_PRESETS`). ``view`` names the branch's keys
        (``("disp_local", s)`` -> ``("warped_local", f, s)``, ...); ``cameras`` (from
        `local_view_cameras`) replaces the intrinsics, corrects the poses and scales the depth.
        """
        height, width = inputs[("color", 0, 0)].shape[-2:]
        settings = self.loss_settings
        for scale in self.scales:
            output = outputs[(view.key(self.output_kind), scale)]
            source_scale = settings.source_scale(scale)
            if not settings.v1_multiscale:
                output = upsample_disp(output, (height, width), mode=settings.upsample_mode)
            _, depth = output_to_depth(output, self.output_kind, self.spec.min_depth, self.spec.max_depth)
            outputs[(view.key("depth"), 0, scale)] = depth
            self._check_finite(outputs, f"{view.key('depth')} at scale {scale}", depth)
            K, inv_K = inputs[("K", source_scale)], inputs[("inv_K", source_scale)]
            if cameras is not None:
                K, inv_K = cameras["K"][source_scale], cameras["inv_K"][source_scale]
                depth = depth * cameras["depth_scale"].to(depth.dtype).view(-1, 1, 1, 1)
            cam_points = backproject(depth, inv_K)
            for frame_id in self.source_frame_ids:
                T = inputs["stereo_T"] if frame_id == "s" else outputs[("cam_T_cam", 0, frame_id)]
                if cameras is not None and cameras["Rc"] is not None:
                    T = crop_pose_correction(T, cameras["Rc"])
                grid = project(cam_points, K, T, depth.shape[2], depth.shape[3],
                               depth_floor=settings.projection_depth_floor)
                self._check_finite(outputs, f"{view.key('sample_grid')} of frame {frame_id} at scale {scale}", grid)
                if self.sanitize_grids:
                    grid = torch.nan_to_num(grid, nan=OUTSIDE_GRID, posinf=OUTSIDE_GRID, neginf=-OUTSIDE_GRID)
                outputs[(view.key("sample_grid"), frame_id, scale)] = grid
                outputs[(view.key("warped"), frame_id, scale)] = warp(
                    inputs[(view.images, frame_id, source_scale)], grid, padding_mode=settings.padding_mode)

    # ------------------------------------------------------------------------------ losses
    def losses(self, inputs: dict, outputs: dict) -> dict:
        """``{"loss": weighted total, "loss/<term>": value}``; the terms' maps go into ``outputs``.

        No check here: `nonfinite_names` reads the terms' and the forward pass's flags, so the
        caller decides when to synchronise with the device.
        """
        losses = {}
        total = 0.0
        for name, term, weight in self.loss_terms:
            value, maps = term.function(inputs, outputs, self.loss_settings, self.networks)
            outputs.update(maps)
            losses[f"loss/{name}"] = value
            total = total + weight * value
        losses["loss"] = total
        return losses

    def logged_images(self, inputs: dict, outputs: dict, index: int) -> dict[str, torch.Tensor]:
        """Sample ``index``'s images for the log, by name: each scale's network output (min-max
        normalised) and auto-mask, every frame and its warp into the target (C x h x w, CPU)."""
        images = {}
        for scale in self.scales:
            disp = outputs[(self.output_kind, scale)][index].detach().float()
            images[f"disp_{scale}"] = (disp - disp.min()) / (disp.max() - disp.min() + 1e-8)
            if ("automask", scale) in outputs:
                images[f"automask_{scale}"] = outputs[("automask", scale)][index].float()
        for frame_id in self.frame_ids:
            images[f"color_{frame_id}_0"] = inputs[("color", frame_id, 0)][index]
            if frame_id != 0:
                images[f"color_pred_{frame_id}_0"] = outputs[("warped", frame_id, 0)][index].detach().clamp(0, 1)
        return {name: image.cpu() for name, image in images.items()}

    # ------------------------------------------------------------------------------ inference
    @property
    def prediction_domain(self) -> str:
        """Where maps are resized and flip-blended: "depth" for a network that predicts depth
        (SQLdepth evaluates so), else "inverse_depth" (the Monodepth2 lineage and PackNet)."""
        return "depth" if self.output_kind == "depth" else "inverse_depth"

    @torch.no_grad()
    def predict(self, images: torch.Tensor, scale: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Inverse depth and depth of a batch of images: the one place a network output becomes depth.

        Args:
            images: B x 3 x H x W RGB in [0, 1] at the network's size (``spec.height x spec.width``).
            scale: decoder scale to read (0: full resolution).

        Returns:
            ``(inverse_depth, depth)``, each B x 1 x H/2^s x W/2^s float32 in model units (metres
            up to scale; see `ModelSpec.metric_depth_scale`). The inverse depth is the scaled
            disparity the Monodepth2 lineage evaluates, post-processes and saves.
        """
        output = self.networks["depth"](images)[(self.output_kind, scale)].float()
        return output_to_depth(output, self.output_kind, self.spec.min_depth, self.spec.max_depth)

    def predict_depth(self, images: torch.Tensor, inverse: bool = False, scale: int = 0) -> torch.Tensor:
        """`predict`'s depth, or its inverse depth with ``inverse=True``."""
        inverse_depth, depth = self.predict(images, scale)
        return inverse_depth if inverse else depth


class AutoencoderTraining(TrainableMethod):
    """FeatDepth's stage 1 (methods spec 2.1): the FeatureNet auto-encoder learns to rebuild single frames.

    The same interface as `SelfSupervisedDepth` for the Trainer (``prepare_inputs`` -> ``forward``
    -> ``losses``; checkpoints under ``feature_net``, the name ``--feature_net_path`` reads):

        outputs[("autoencoder_features", 0)]  the encoder's five features of the un-augmented frame
        outputs[("reconstruction", s)]        B x 3 x H/2^s x W/2^s, s = 0..3, in (0, 1)
        losses: "loss/reconstruction"         SSIM + Charbonnier per scale, each target resized from
                                              the previous one (FeatDepth's autoencoder), / 4
                "loss/feature_regularisation" discriminative + convergent terms of the five levels

    The encoder sees raw [0, 1] pixels of the un-augmented frame (colour jitter is not used; flips
    are), as FeatDepth's does.

    Args:
        spec: ``method == "autoencoder"``; its height and width are the training size.
        pretrained: start the encoder from ImageNet weights.
    """

    def __init__(self, spec: ModelSpec, pretrained: bool = False) -> None:
        super().__init__()
        from networks.featdepth import FeatureNet

        self.spec = spec
        self.networks = nn.ModuleDict({"feature_net": FeatureNet(pretrained)})
        self.sanitize_grids = False  # read by the engine; there are no grids here
        self.run_feature_net: Callable = self.networks["feature_net"]

    @classmethod
    def from_options(cls, opts: argparse.Namespace) -> "AutoencoderTraining":
        return cls(ModelSpec.from_options(opts), pretrained=opts.weights_init == "pretrained")

    def __setattr__(self, name, value):
        if name == "run_feature_net":  # a wrapped callable (autocast, compile), not a second submodule
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def checkpoint_modules(self) -> dict[str, nn.Module]:
        return {"feature_net": self.networks["feature_net"]}

    def describe_networks(self) -> str:
        return "FeatureNet auto-encoder"

    def wrap_networks(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        self.run_feature_net = wrap(self.networks["feature_net"])

    def prepare_inputs(self, batch: dict, device: torch.device) -> dict:
        """`prepare_batch` for frame 0 at one scale."""
        return prepare_batch(batch, device, [0], 1, False)

    def forward(self, inputs: dict) -> dict:
        features, reconstructions = self.run_feature_net(inputs[("color", 0, 0)])
        return {"finite_checks": [], ("autoencoder_features", 0): features, **reconstructions}

    def losses(self, inputs: dict, outputs: dict) -> dict:
        from featdepth_losses import feature_regularisation_loss, reconstruction_loss

        image = inputs[("color", 0, 0)]
        reconstructions = [value.float() for key, value in outputs.items() if key[0] == "reconstruction"]
        features = [level.float() for level in outputs[("autoencoder_features", 0)]]
        losses = {"loss/reconstruction": reconstruction_loss(reconstructions, image, chained_resize=True),
                  "loss/feature_regularisation": feature_regularisation_loss(features, image)}
        losses["loss"] = losses["loss/reconstruction"] + losses["loss/feature_regularisation"]
        return losses

    def logged_images(self, inputs: dict, outputs: dict, index: int) -> dict[str, torch.Tensor]:
        """The frame and its full-resolution reconstruction."""
        return {"color_0_0": inputs[("color", 0, 0)][index].cpu(),
                "reconstruction_0": outputs[("reconstruction", 0)][index].detach().float().cpu()}


def build_training_model(opts: argparse.Namespace, pretrained: Collection[str] | None = None) -> TrainableMethod:
    """The method ``--method`` names, as the Trainer drives it; ``pretrained``: the depth method's
    networks ("depth", "pose") whose encoders start from ImageNet weights (None: --weights_init)."""
    if getattr(opts, "method", "depth") == "autoencoder":
        return AutoencoderTraining.from_options(opts)
    return SelfSupervisedDepth.from_options(opts, pretrained=pretrained)


def state_mismatches(module: nn.Module, state: dict, prefix: str = "") -> list[str]:
    """Every tensor that keeps ``state`` from loading into ``module``: ``<prefix><key> is missing``, ``...
    is unexpected`` and ``... has shape (A), expected (B)``, in that order."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    return ([f"{prefix}{k} is missing" for k in expected if k not in found]
            + [f"{prefix}{k} is unexpected" for k in found if k not in expected]
            + [f"{prefix}{k} has shape {found[k]}, expected {expected[k]}" for k in expected
               if k in found and found[k] != expected[k]])


def summarize_mismatches(problems: Sequence[str], shown: int = 5) -> str:
    """``N tensor(s): first; second; ...`` instead of torch's full dump."""
    return f"{len(problems)} tensor(s): " + "; ".join(problems[:shown]) + (" ..." if len(problems) > shown else "")


def describe_spec(spec: ModelSpec) -> str:
    """One line of what a checkpoint holds, e.g. ``resnet18 + monodepth2 decoder, 640x192, stereo, depth 0.1-100``."""
    layers = spec.num_layers if spec.backbone in ("resnet", "hrnet") else ""
    training = "stereo" if spec.use_stereo else "monocular"
    return (f"{spec.backbone}{layers} + {spec.decoder} decoder, {spec.width}x{spec.height}, {training}, depth "
            f"{spec.min_depth:g}-{spec.max_depth:g}")


def load_model(path: str, device: torch.device | str = "cpu",
               depth_range: tuple[float | None, float | None] = (None, None),
               check: Callable[[ModelSpec], None] | None = None) -> SelfSupervisedDepth:
    """The inference model (eval mode) of any supported weights: a checkpoint of this toolkit, a
    released Monodepth2 or SQLdepth folder, a BDEdepth file or a PackNet-SfM ``.ckpt``
    (`released_weights.read_weights`). Logs one line saying what was loaded from where.

    Args:
        depth_range: (min, max) for released files that record none (`released_weights.read_weights`).
        check: called with the weights' ModelSpec before any tensor is loaded (raises to refuse).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the weights do not describe or fit a network of this toolkit (named).
    """
    from pathlib import Path

    from checkpoints import spec_from_checkpoint
    from released_weights import WEIGHT_FORMATS, read_weights

    if not Path(path).exists():
        raise FileNotFoundError(f"--pretrained_path {path} does not exist")
    payload, kind = read_weights(path, depth_range=depth_range)
    spec = spec_from_checkpoint(payload, path)
    if spec.method != "depth":
        raise ValueError(f"{path} is a FeatDepth auto-encoder checkpoint (stage 1), which predicts no depth: give "
                         "it to train.py --feature_net_path")
    if check is not None:
        check(spec)
    model = SelfSupervisedDepth.for_inference(spec)
    model.load_state_dicts(payload, str(path))
    model.source = str(path)  # where the weights came from (reports name it)
    origin = f" (released model {payload['zoo']['name']})" if isinstance(payload.get("zoo"), dict) else ""
    logger.info("Loaded the %s %s%s: %s", WEIGHT_FORMATS[kind], path, origin, describe_spec(spec))
    return model.to(device).eval()
