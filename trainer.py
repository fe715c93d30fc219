"""The Trainer: builds everything once, then runs epochs of `train_step` with evaluation.

Read top to bottom: construction (`build_*`), the loop (`train` -> `train_epoch`), one step
(`train_step`: prepare batch -> predict -> compute losses -> backward -> optimiser step), then
the prediction phases (depth, poses, view synthesis), logging, evaluation and checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from augmentation import apply_color_jitter, local_crop_camera, reshuffle_images, restore_reshuffled
from checkpoints import (CHECKPOINT_FORMAT, RESUME_DIR, ModelSpec, load_checkpoint,
                         load_newest_resume_checkpoint, model_state_dicts, prune_resume_checkpoints,
                         resume_checkpoint_path, save_checkpoint)
from datasets import DATASETS
from distributed import (broadcast_from_main, cleanup_process_group, context_from_environment,
                         epoch_sample_order, epoch_seed, gather_to_all, mean_over_ranks, sample_seed,
                         setup_process_group)
from kitti_utils import STEREO_SCALE_FACTOR
from layers import (backproject, crop_pose_correction, disp_to_depth, project, transformation_from_parameters,
                    upsample_disp, warp)
from losses import LOCAL_VIEW, ORIGINAL_VIEW, RESHUFFLE_VIEW, LossSettings, View, build_loss_terms
from networks import build_depth_network, build_pose_network
from options import training_frame_ids, uses_pose_network
from speed import SpeedSettings
from utils import (atomic_output, capture_rng_state, format_hms, readlines, resolve_split_dir, restore_rng_state,
                   seed_everything, seed_worker, select_device)

logger = logging.getLogger(__name__)

MAX_LOGGED_IMAGES = 4


def prepare_batch(batch: dict, device: torch.device, frame_ids: list, num_scales: int,
                  all_frames_multiscale: bool) -> dict:
    """Move a collated batch to ``device`` and make the float views the losses read.

    Adds ``("color", f, 0)`` as float in [0, 1], ``("color_aug", f, 0)`` with the sample's
    colour jitter (one draw per sample shared by its frames, or per frame), and smaller scales
    ``("color", f, s)`` by 2x2 area averaging: for frame 0 only (the smoothness term's edge
    guide) unless ``all_frames_multiscale`` (v1 multi-scale warps at every scale).
    """
    inputs = {key: value.to(device, non_blocking=True) if torch.is_tensor(value) else value
              for key, value in batch.items()}
    frames = torch.stack([inputs[("color", f, 0)] for f in frame_ids], dim=1).float() / 255.0
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


def add_smaller_scales(inputs: dict, name: str, frame_ids: list, num_scales: int, all_frames: bool) -> None:
    """``(name, f, s)`` for s >= 1 by repeated 2x2 area averaging of ``(name, f, 0)`` (in place):
    frame 0 only (the smoothness term's edge guide) unless ``all_frames`` (v1 multi-scale)."""
    for frame_id in frame_ids:
        if frame_id == 0 or all_frames:
            for scale in range(1, num_scales):
                inputs[(name, frame_id, scale)] = F.avg_pool2d(inputs[(name, frame_id, scale - 1)], 2)


def prepare_bde_views(inputs: dict, frame_ids: list, num_scales: int, all_frames_multiscale: bool) -> None:
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
    if ("color_local", 0, 0) in inputs:
        for frame_id in frame_ids:
            inputs[("color_local", frame_id, 0)] = inputs[("color_local", frame_id, 0)].float() / 255.0
        add_smaller_scales(inputs, "color_local", frame_ids, num_scales, all_frames_multiscale)
        inputs[("color_local_aug", 0, 0)] = apply_color_jitter(inputs[("color_local", 0, 0)],
                                                               inputs["bde_jitter"][:, 0], enabled)
    if "split_xy" in inputs:
        reshuffled = reshuffle_images(inputs[("color", 0, 0)], inputs["split_xy"])
        inputs[("color_reshuffle", 0, 0)] = reshuffled
        inputs[("color_reshuffle_aug", 0, 0)] = apply_color_jitter(reshuffled, inputs["bde_jitter"][:, 1], enabled)


class Trainer:
    def __init__(self, opts):
        self.opts = opts
        self.dist = context_from_environment(opts.local_rank)
        self.device = setup_process_group(self.dist, select_device(opts.device), opts.dist_timeout)
        if opts.sync_bn and self.device.type != "cuda":
            raise ValueError("--sync_bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU "
                             "implementation): drop --sync_bn or train on GPUs")
        self.frame_ids = training_frame_ids(opts)
        self.source_frame_ids = self.frame_ids[1:]
        self.temporal_frame_ids = list(opts.frame_ids)
        self.scales = list(range(opts.num_scales))
        self.run_dir = Path(opts.log_dir).expanduser() / opts.exp_name
        self.loss_settings = LossSettings.from_options(opts, self.source_frame_ids)
        self.loss_terms = build_loss_terms(opts)
        self.use_pose_net = uses_pose_network(opts)
        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0

        if opts.seed > 0:
            seed_everything(opts.seed)
        torch.backends.cudnn.benchmark = opts.seed <= 0
        # Augmentation draws are keyed by this seed; an unseeded run gets a fresh one, which
        # the resume checkpoints keep so that a resumed run still continues exactly.
        self.run_seed = opts.seed if opts.seed > 0 else broadcast_from_main(
            int.from_bytes(os.urandom(4), "little"), self.dist)
        self.prepare_run_dir()
        self.build_models()
        self.build_optimizer()
        self.build_dataloaders()
        self.build_loggers()
        self.load_initial_state()
        self.wrap_distributed()

    # ------------------------------------------------------------------------------ construction
    def prepare_run_dir(self) -> None:
        """Rank 0 checks and prepares the run folder; every rank gets the same verdict."""
        problem = None
        if self.dist.is_main:
            has_run = (self.run_dir / RESUME_DIR).exists() or (self.run_dir / "models").exists()
            if has_run and not (self.opts.resume or self.opts.overwrite):
                problem = (f"{self.run_dir} already holds a run: pass --resume to continue it, "
                           "--overwrite to start afresh, or choose another --exp_name")
            else:
                if self.opts.overwrite:
                    for stale in (self.run_dir / RESUME_DIR, self.run_dir / "models",
                                  self.run_dir / "tensorboard"):
                        if stale.is_dir():
                            shutil.rmtree(stale)
                self.run_dir.mkdir(parents=True, exist_ok=True)
                with atomic_output(self.run_dir / "opt.json") as tmp:
                    tmp.write_text(json.dumps(vars(self.opts), indent=2))
        problem = broadcast_from_main(problem, self.dist)
        if problem:
            raise FileExistsError(problem)

    def build_models(self) -> None:
        pretrained = self.opts.weights_init == "pretrained"
        self.models = {}
        depth_net = build_depth_network(backbone=self.opts.backbone, num_layers=self.opts.num_layers,
                                        decoder=self.opts.decoder, scales=tuple(self.scales),
                                        pretrained=pretrained)
        self.depth_net = depth_net.to(self.device)
        self.models["encoder"] = self.depth_net.encoder
        self.models["depth"] = self.depth_net.decoder
        self.pose_net = None
        if self.use_pose_net:
            pairs = self.opts.pose_model_input == "pairs"
            num_input_frames = 2 if pairs else len(self.temporal_frame_ids)
            self.pose_net = build_pose_network(
                pose_model_type=self.opts.pose_model_type, num_layers=self.opts.num_layers,
                num_input_frames=num_input_frames, pretrained=pretrained,
                num_frames_to_predict_for=None if pairs else num_input_frames - 1).to(self.device)
            if self.pose_net.encoder is not None:
                self.models["pose_encoder"] = self.pose_net.encoder
            self.models["pose"] = self.pose_net.decoder
        if self.opts.sync_bn:
            # Converting in place keeps the same Parameter objects, so self.models stays valid.
            self.depth_net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.depth_net)
            if self.pose_net is not None:
                self.pose_net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.pose_net)
        self.model_spec = ModelSpec.from_options(self.opts)
        # Autocast/channels_last/compile wrap the networks only; self.models keeps the plain
        # modules, so checkpoints and the optimiser see the same parameters either way.
        self.speed = SpeedSettings.resolve(self.opts, self.device)
        self.depth_net = self.speed.wrap(self.depth_net)
        if self.pose_net is not None:
            self.pose_net = self.speed.wrap(self.pose_net)

    def parameters(self):
        return [p for model in self.models.values() for p in model.parameters()]

    def build_optimizer(self) -> None:
        opts = self.opts
        params = self.parameters()
        if opts.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=opts.learning_rate, betas=(opts.beta1, opts.beta2),
                                               weight_decay=opts.weight_decay, **self.speed.optimizer_kwargs())
        elif opts.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=opts.learning_rate, betas=(opts.beta1, opts.beta2),
                                              **self.speed.optimizer_kwargs())
        else:
            self.optimizer = torch.optim.SGD(params, lr=opts.learning_rate, momentum=opts.momentum,
                                             **self.speed.optimizer_kwargs())

    def build_dataloaders(self) -> None:
        opts = self.opts
        dataset_class = DATASETS[opts.dataset]
        split_dir = resolve_split_dir(opts.split)
        train_file = split_dir / "train_files.txt"
        if not train_file.is_file():
            raise FileNotFoundError(f"--split {opts.split}: {train_file} not found")
        self.train_dataset = dataset_class(
            opts.data_path, readlines(train_file), opts.height, opts.width, self.frame_ids,
            opts.num_scales, is_train=True, img_ext=opts.img_ext, color_jitter=opts.color_jitter,
            flip=opts.flip, jitter_per_frame=opts.jitter_per_frame, split_name=str(train_file),
            **self.bde_dataset_options())
        if getattr(opts, "frame_cache", None):
            from frame_cache import FrameCache

            self.train_dataset.use_frame_cache(FrameCache.open(opts.frame_cache))
        samples_per_process = len(self.train_dataset) // self.dist.world_size
        self.steps_per_epoch = samples_per_process // opts.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"--batch_size {opts.batch_size} is larger than the {samples_per_process} "
                             f"training samples per process ({len(self.train_dataset)} in {train_file} "
                             f"over {self.dist.world_size} processes): lower --batch_size")
        self.total_steps = self.steps_per_epoch * opts.num_epochs
        self.build_scheduler()
        self.eval_sets = []
        # Evaluation runs on rank 0 alone; the others wait for it in their next collective.
        if opts.eval and self.dist.is_main:
            from evaluate_depth import build_training_eval_sets

            self.eval_sets = build_training_eval_sets(opts, self.model_spec)
        logger.info("Using split: %s", split_dir)
        logger.info("There are %d training items and %d test items", len(self.train_dataset),
                    sum(len(eval_set.gt_depths) for eval_set in self.eval_sets))

    def train_loader(self, epoch: int, start_batch: int = 0) -> DataLoader:
        """The epoch's loader for this rank, starting at batch ``start_batch``.

        The sample order is a pure function of (seed, epoch, rank, world size), and each sample
        carries its own augmentation seed, so a run resumed mid-epoch sees exactly the batches,
        flips and jitters it would have seen, whatever the number of workers.
        """
        order = epoch_sample_order(len(self.train_dataset), self.run_seed, epoch, self.dist.rank,
                                   self.dist.world_size)
        order = order[start_batch * self.opts.batch_size:].tolist()
        keys = [(index, sample_seed(self.run_seed, epoch, index)) for index in order]
        generator = torch.Generator()
        generator.manual_seed(epoch_seed(self.run_seed, epoch))
        return DataLoader(self.train_dataset, batch_size=self.opts.batch_size, sampler=keys,
                          num_workers=self.opts.num_workers, pin_memory=self.device.type == "cuda",
                          drop_last=True, worker_init_fn=seed_worker, generator=generator,
                          persistent_workers=False)

    def build_scheduler(self) -> None:
        opts = self.opts
        if opts.lr_sche_type == "cos":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=self.total_steps, eta_min=opts.eta_min)
        else:
            self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
                self.optimizer, milestones=opts.decay_step, gamma=opts.decay_rate)

    def build_loggers(self) -> None:
        """Rank 0 writes the text log and tensorboard events; the other ranks write nothing."""
        self.writer, self._file_handler = None, None
        if not self.dist.is_main:
            return
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(self.run_dir / "tensorboard" / "train"))
        handler = logging.FileHandler(self.run_dir / "logger.log", mode="a")
        handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s",
                                               "%Y-%m-%d %H:%M:%S"))
        handler.setLevel(logging.INFO)
        self._file_handler = handler
        root = logging.getLogger()
        # The run's text log must get INFO even when the caller (pytest, a notebook) configured
        # logging differently; the previous level is restored in close().
        self._previous_log_level = root.level
        root.setLevel(min(root.level, logging.INFO) if root.level else logging.INFO)
        root.addHandler(handler)
        logger.info("Experiment %s in %s on %s", self.opts.exp_name, self.run_dir.resolve(), self.device)
        logger.info("Speed settings: %s", self.speed.describe())
        if self.dist.is_distributed:
            logger.info("Distributed training: %d processes, batch %d per process (%d in all)",
                        self.dist.world_size, self.opts.batch_size, self.opts.batch_size * self.dist.world_size)

    def load_initial_state(self) -> None:
        """Resume the newest good checkpoint, or start from --pretrained_path, or from scratch.

        Rank 0 picks the checkpoint and every rank loads that file, so all ranks restart from the
        same state (the run folder must be on storage every node sees, as the data is).
        """
        found = None
        if self.opts.resume:
            found = load_newest_resume_checkpoint(self.run_dir) if self.dist.is_main else None
            chosen = broadcast_from_main(str(found[0]) if found else None, self.dist)
            if chosen and not self.dist.is_main:
                found = (Path(chosen), load_checkpoint(chosen))
        if found:
            path, payload = found
            self.load_model_weights(payload, path)
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            self.epoch, self.batch_in_epoch, self.step = payload["epoch"], payload["batch_idx"], payload["step"]
            self.run_seed = payload.get("run_seed", self.run_seed)
            self.restore_random_states(payload.get("rng_states"))
            logger.info("Resumed from %s at epoch %d, batch %d, step %d", path, self.epoch,
                        self.batch_in_epoch, self.step)
        elif self.opts.pretrained_path:
            # Our checkpoints, released Monodepth2 folders and BDEdepth files alike.
            from released_weights import to_checkpoint_payload

            self.load_model_weights(to_checkpoint_payload(self.opts.pretrained_path), self.opts.pretrained_path)
        elif self.opts.resume:
            logger.info("No checkpoint to resume, train from epoch 0.")

    def restore_random_states(self, rng_states: list | None) -> None:
        """Each rank continues its own random streams (the tie-breaking noise of the losses)."""
        if not rng_states:
            logger.warning("The checkpoint has no random states: the continuation will not repeat "
                           "the uninterrupted run's random draws exactly")
            return
        if len(rng_states) != self.dist.world_size:
            logger.warning("The checkpoint was written by %d processes and this job has %d: "
                           "random streams restart from rank 0's", len(rng_states), self.dist.world_size)
        restore_rng_state(rng_states[self.dist.rank if self.dist.rank < len(rng_states) else 0])

    def wrap_distributed(self) -> None:
        """Wrap the networks in DDP (after loading, so every rank starts from the same weights).

        ``self.depth_model`` stays the plain network, used for evaluation on rank 0 alone; the
        training forward goes through ``self.depth_net``/``self.pose_net``, which average
        gradients over the ranks in backward.
        """
        self.depth_model = self.depth_net
        if not self.dist.is_distributed:
            return
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        self.depth_net = DistributedDataParallel(self.depth_net, device_ids=device_ids)
        if self.pose_net is not None:
            self.pose_net = DistributedDataParallel(self.pose_net, device_ids=device_ids)

    def load_model_weights(self, payload: dict, source) -> None:
        for name, model in self.models.items():
            if name not in payload:
                raise ValueError(f"{source} has no '{name}' weights, needed by this configuration")
            model.load_state_dict(payload[name])

    # ------------------------------------------------------------------------------ the loop
    def train(self) -> dict:
        """Train to the last epoch; return the final evaluation metrics (empty without --eval)."""
        metrics = {}
        try:
            for epoch in range(self.epoch, self.opts.num_epochs):
                self.epoch = epoch
                self.train_epoch(epoch, self.batch_in_epoch)
                self.batch_in_epoch = 0
                if self.opts.lr_sche_type == "step":
                    self.scheduler.step()
                metrics = self.validate(epoch)
                self.save_epoch(epoch, metrics)
        finally:
            self.close()
        return metrics

    def train_epoch(self, epoch: int, start_batch: int) -> None:
        self.set_train()
        loader = self.train_loader(epoch, start_batch)
        progress = None
        if self.opts.progress_bar and self.dist.is_main:
            from tqdm import tqdm

            progress = tqdm(total=self.steps_per_epoch, initial=start_batch, desc=f"epoch {epoch}",
                            dynamic_ncols=True, leave=False)
        data_start = time.time()
        for batch_idx, batch in enumerate(loader, start=start_batch):
            data_time = time.time() - data_start
            step_start = time.time()
            self.step += 1
            inputs, outputs, losses = self.train_step(batch)
            self.batch_in_epoch = batch_idx + 1
            if batch_idx % self.opts.log_frequency == 0:
                self.log_step(inputs, outputs, losses, data_time, time.time() - step_start)
                if progress is not None:  # reading the loss syncs with the GPU: only on log steps
                    progress.set_postfix(loss=f"{float(losses['loss'].detach()):.4f}")
            if self.step % self.opts.save_frequency == 0:
                self.save_resume_checkpoint(epoch, self.batch_in_epoch)
            if progress is not None:
                progress.update(1)
            data_start = time.time()
        if progress is not None:
            progress.close()

    def train_step(self, batch: dict):
        inputs = prepare_batch(batch, self.device, self.frame_ids, self.opts.num_scales,
                               self.opts.v1_multiscale)
        outputs = self.predict(inputs)
        losses = self.compute_losses(inputs, outputs)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if self.opts.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters(), self.opts.clip_grad)
        self.optimizer.step()
        if self.opts.lr_sche_type == "cos":
            self.scheduler.step()
        return inputs, outputs, losses

    # ------------------------------------------------------------------------------ prediction
    def predict(self, inputs: dict) -> dict:
        """Disparities per scale, poses per source frame, and source frames warped to the target."""
        outputs = dict(self.depth_net(inputs[("color_aug", 0, 0)]))
        if self.use_pose_net:
            outputs.update(self.predict_poses(inputs))
        self.synthesize_views(inputs, outputs)
        self.predict_augmented_views(inputs, outputs)
        return outputs

    def bde_dataset_options(self) -> dict:
        """Dataset arguments of the BDEdepth views (none when both are off)."""
        opts = self.opts
        options = {}
        if opts.use_local_crop:
            options.update(local_crop=True, resize_ratio=tuple(opts.resize_ratio))
        if opts.use_patch_reshuffle:
            options.update(patch_reshuffle=True, split_ratio=tuple(opts.split_ratio))
        return options

    def predict_augmented_views(self, inputs: dict, outputs: dict) -> None:
        """BDEdepth's extra passes of the same depth network; the poses are reused.

        Local crop: ``("disp_local", s)``, warped with the crop's cameras. Reshuffle: the
        disparity of the permuted frame 0 is restored at every scale (``("disp_reshuffle", s)``)
        and warped with the original cameras. The passes are separate, as in the reference, so
        BatchNorm statistics stay per view.
        """
        if self.opts.use_local_crop:
            for (_, scale), disp in self.depth_net(inputs[("color_local_aug", 0, 0)]).items():
                outputs[("disp_local", scale)] = disp
            self.synthesize_views(inputs, outputs, LOCAL_VIEW, self.local_view_cameras(inputs))
        if self.opts.use_patch_reshuffle:
            for (_, scale), disp in self.depth_net(inputs[("color_reshuffle_aug", 0, 0)]).items():
                outputs[("disp_reshuffle", scale)] = restore_reshuffled(disp, inputs["split_xy"], self.opts.width)
            self.synthesize_views(inputs, outputs, RESHUFFLE_VIEW)

    def local_view_cameras(self, inputs: dict) -> dict:
        """Cameras of the local view: ``K``/``inv_K`` per source scale, ``Rc`` and ``depth_scale``.

        See `augmentation.local_crop_camera`; ``--local_crop_geometry reference`` keeps the
        original intrinsics and corrects the poses instead.
        """
        camera = local_crop_camera(inputs["local_crop"], inputs[("K", 0)], inputs[("inv_K", 0)],
                                   self.opts.height, self.opts.width,
                                   reference=self.opts.local_crop_geometry == "reference")
        K, inv_K = {}, {}
        for scale in {self.loss_settings.source_scale(s) for s in self.scales}:
            if camera["Rc"] is not None:
                K[scale], inv_K[scale] = inputs[("K", scale)], inputs[("inv_K", scale)]
                continue
            factor = 2.0 ** -scale  # scale s halves the pixel coordinates s times
            K[scale] = torch.cat([camera["K"][:, :2] * factor, camera["K"][:, 2:]], dim=1)
            inv_K[scale] = torch.cat([camera["inv_K"][:, :, :2] / factor, camera["inv_K"][:, :, 2:]], dim=2)
        return {"K": K, "inv_K": inv_K, "Rc": camera["Rc"], "depth_scale": camera["depth_scale"]}

    def predict_poses(self, inputs: dict) -> dict:
        """``("cam_T_cam", 0, f)``: T_source_from_target for every temporal source frame f.

        Pairs are always fed in temporal order, (f, 0) for f < 0 and (0, f) otherwise, and the
        transform is inverted for past frames, so the pose net sees forward motion only.
        """
        outputs = {}
        temporal_sources = [f for f in self.source_frame_ids if f != "s"]
        if self.opts.pose_model_input == "pairs":
            for frame_id in temporal_sources:
                ordered = (frame_id, 0) if frame_id < 0 else (0, frame_id)
                pair = torch.cat([inputs[("color_aug", f, 0)] for f in ordered], dim=1)
                axisangle, translation = self.pose_net(pair)
                outputs[("axisangle", 0, frame_id)] = axisangle
                outputs[("translation", 0, frame_id)] = translation
                outputs[("cam_T_cam", 0, frame_id)] = transformation_from_parameters(
                    axisangle[:, 0], translation[:, 0], invert=frame_id < 0)
        else:
            stacked = torch.cat([inputs[("color_aug", f, 0)] for f in self.temporal_frame_ids], dim=1)
            axisangle, translation = self.pose_net(stacked)
            for i, frame_id in enumerate(temporal_sources):
                outputs[("axisangle", 0, frame_id)] = axisangle
                outputs[("translation", 0, frame_id)] = translation
                outputs[("cam_T_cam", 0, frame_id)] = transformation_from_parameters(
                    axisangle[:, i], translation[:, i])
        return outputs

    def synthesize_views(self, inputs: dict, outputs: dict, view: View = ORIGINAL_VIEW,
                         cameras: dict | None = None) -> None:
        """Warp every source frame into the target with each scale's depth.

        The target's camera points depend only on its depth, so they are back-projected once per
        scale and projected into each source camera. ``view`` names the branch's keys
        (``("disp_local", s)`` -> ``("color_local", f, s)``, ...); ``cameras`` (from
        `local_view_cameras`) replaces the intrinsics, corrects the poses and scales the depth.
        """
        height, width = self.opts.height, self.opts.width
        for scale in self.scales:
            disp = outputs[(view.key("disp"), scale)]
            source_scale = self.loss_settings.source_scale(scale)
            if not self.opts.v1_multiscale:
                disp = upsample_disp(disp, (height, width))
            _, depth = disp_to_depth(disp, self.opts.min_depth, self.opts.max_depth)
            outputs[(view.key("depth"), 0, scale)] = depth
            K, inv_K = inputs[("K", source_scale)], inputs[("inv_K", source_scale)]
            if cameras is not None:
                K, inv_K = cameras["K"][source_scale], cameras["inv_K"][source_scale]
                depth = depth * cameras["depth_scale"].to(depth.dtype).view(-1, 1, 1, 1)
            cam_points = backproject(depth, inv_K)
            for frame_id in self.source_frame_ids:
                T = inputs["stereo_T"] if frame_id == "s" else outputs[("cam_T_cam", 0, frame_id)]
                if cameras is not None and cameras["Rc"] is not None:
                    T = crop_pose_correction(T, cameras["Rc"])
                grid = project(cam_points, K, T, depth.shape[2], depth.shape[3])
                outputs[(view.key("color"), frame_id, scale)] = warp(
                    inputs[(view.images, frame_id, source_scale)], grid)

    def compute_losses(self, inputs: dict, outputs: dict) -> dict:
        """Weighted sum of the loss terms; raises FloatingPointError on a non-finite loss."""
        losses = {}
        total = 0.0
        for name, term, weight in self.loss_terms:
            value, maps = term(inputs, outputs, self.loss_settings)
            outputs.update(maps)
            losses[f"loss/{name}"] = value
            total = total + weight * value
        losses["loss"] = total
        if not torch.isfinite(total):
            terms = ", ".join(f"{k}={float(v):.4g}" for k, v in losses.items())
            raise FloatingPointError(f"non-finite loss at step {self.step}: {terms}")
        return losses

    # ------------------------------------------------------------------------------ logging
    def set_train(self) -> None:
        for model in self.models.values():
            model.train()

    def log_step(self, inputs, outputs, losses, data_time: float, batch_time: float) -> None:
        """Losses averaged over the ranks (every rank takes part); rank 0 writes them."""
        scalars = mean_over_ranks(losses, self.dist)
        if not self.dist.is_main:
            return
        lr = self.optimizer.param_groups[0]["lr"]
        remaining = (self.total_steps - self.step) * batch_time if self.step > 1 else 0.0
        logger.info("epoch: %2d/%d | batch: %4d/%d | data time: %.4f | batch time: %.3f | loss: %.4f | "
                    "lr: %.2e | time left: %s", self.epoch, self.opts.num_epochs - 1, self.batch_in_epoch - 1,
                    self.steps_per_epoch, data_time, batch_time, scalars["loss"], lr, format_hms(remaining))
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, self.step)
        self.writer.add_scalar("lr", lr, self.step)
        batch_size = inputs[("color", 0, 0)].shape[0]
        for j in range(min(MAX_LOGGED_IMAGES, batch_size)):
            for scale in self.scales:
                disp = outputs[("disp", scale)][j].detach()
                disp = (disp - disp.min()) / (disp.max() - disp.min() + 1e-8)
                self.writer.add_image(f"disp_{scale}/{j}", disp.cpu().numpy(), self.step)
                if ("automask", scale) in outputs:
                    self.writer.add_image(f"automask_{scale}/{j}",
                                          outputs[("automask", scale)][j].float().cpu().numpy(), self.step)
            for frame_id in self.frame_ids:
                self.writer.add_image(f"color_{frame_id}_0/{j}", inputs[("color", frame_id, 0)][j].cpu().numpy(),
                                      self.step)
                if frame_id != 0:
                    self.writer.add_image(f"color_pred_{frame_id}_0/{j}",
                                          outputs[("color", frame_id, 0)][j].detach().clamp(0, 1).cpu().numpy(),
                                          self.step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            root = logging.getLogger()
            root.removeHandler(self._file_handler)
            root.setLevel(self._previous_log_level)
            self._file_handler.close()
        cleanup_process_group()

    # ------------------------------------------------------------------------------ evaluation
    def validate(self, epoch: int) -> dict:
        """Depth metrics of the dataset's benchmark with the shared evaluation code (median-scaled
        unless the model is stereo-only, which is scaled by 5.4); the first table's metrics."""
        if not self.eval_sets:
            return {}
        from evaluate_depth import evaluate_predictions, format_metrics_table, predict_disparities

        logger.info("Test the model at epoch %d", epoch)
        stereo_only = self.opts.use_stereo and not self.use_pose_net
        results = []
        for eval_set in self.eval_sets:
            pred_disps = predict_disparities(self.depth_model, eval_set.loader, self.device,
                                             self.opts.min_depth, self.opts.max_depth)
            result = evaluate_predictions(pred_disps, eval_set.gt_depths, eval_set.protocol,
                                          median_scaling=not stereo_only,
                                          pred_depth_scale_factor=STEREO_SCALE_FACTOR if stereo_only else 1.0)
            if result.ratios.size:
                logger.info(result.ratio_summary())
            logger.info("%s:\n%s", eval_set.title, format_metrics_table(result.metrics))
            prefix = "val" if not results else f"val_{eval_set.key}"
            for name, value in result.metrics.items():
                self.writer.add_scalar(f"{prefix}/{name}", value, self.step)
            results.append(result.metrics)
        self.set_train()
        return results[0]

    # ------------------------------------------------------------------------------ checkpoints
    def weights_payload(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "model_spec": self.model_spec.to_dict(),
                **model_state_dicts(self.models)}

    def save_resume_checkpoint(self, epoch: int, batch_idx: int) -> None:
        """Everything needed to continue at batch ``batch_idx`` of ``epoch``, exactly.

        Called by every rank (their random states are gathered); rank 0 writes
        ``checkpoints/step{step}.pth`` atomically and keeps the --keep_last newest.
        """
        rng_states = gather_to_all(capture_rng_state(), self.dist)
        if not self.dist.is_main:
            return
        payload = self.weights_payload()
        payload.update(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                       epoch=epoch, batch_idx=batch_idx, step=self.step, run_seed=self.run_seed,
                       rng_states=rng_states)
        save_checkpoint(resume_checkpoint_path(self.run_dir, self.step), payload)
        prune_resume_checkpoints(self.run_dir, self.opts.keep_last)

    def save_epoch(self, epoch: int, metrics: dict) -> None:
        """The epoch's weights snapshot (what evaluation reads) and a resume checkpoint."""
        if self.dist.is_main:
            payload = self.weights_payload()
            payload.update(epoch=epoch, metrics=metrics)
            save_checkpoint(self.run_dir / "models" / f"model{epoch}.pth", payload)
        self.save_resume_checkpoint(epoch + 1, 0)
