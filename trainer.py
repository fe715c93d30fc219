"""The Trainer: builds everything once, then runs epochs of `train_step` with evaluation.

Read top to bottom: construction (`build_*`), the loop (`train` -> `train_epoch`), one step
(`train_step`: prepare batch -> predict -> compute losses -> backward -> optimiser step), then
the prediction phases (depth, poses, view synthesis), logging, evaluation and checkpoints.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from augmentation import apply_color_jitter
from checkpoints import (CHECKPOINT_FORMAT, ModelSpec, load_checkpoint, model_state_dicts,
                         save_checkpoint)
from datasets import DATASETS
from kitti_utils import STEREO_SCALE_FACTOR
from layers import backproject, disp_to_depth, project, transformation_from_parameters, upsample_disp, warp
from losses import LossSettings, build_loss_terms
from networks import build_depth_network, build_pose_network
from options import training_frame_ids, uses_pose_network
from utils import format_hms, readlines, resolve_split_dir, seed_everything, seed_worker, select_device

logger = logging.getLogger(__name__)

CKPT_NAME = "ckpt.pth"
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
        if frame_id == 0 or all_frames_multiscale:
            for scale in range(1, num_scales):
                inputs[("color", frame_id, scale)] = F.avg_pool2d(inputs[("color", frame_id, scale - 1)], 2)
    return inputs


class Trainer:
    def __init__(self, opts):
        self.opts = opts
        self.device = select_device(opts.device)
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
        self.prepare_run_dir()
        self.build_models()
        self.build_optimizer()
        self.build_dataloaders()
        self.build_loggers()
        self.load_initial_state()

    # ------------------------------------------------------------------------------ construction
    def prepare_run_dir(self) -> None:
        ckpt = self.run_dir / CKPT_NAME
        has_run = ckpt.exists() or (self.run_dir / "models").exists()
        if has_run and not (self.opts.resume or self.opts.overwrite):
            raise FileExistsError(f"{self.run_dir} already holds a run: pass --resume to continue it, "
                                  "--overwrite to start afresh, or choose another --exp_name")
        if self.opts.overwrite:
            for stale in (ckpt, self.run_dir / "models", self.run_dir / "tensorboard"):
                if stale.is_dir():
                    shutil.rmtree(stale)
                elif stale.exists():
                    stale.unlink()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "opt.json").write_text(json.dumps(vars(self.opts), indent=2))

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
        self.model_spec = ModelSpec.from_options(self.opts)

    def parameters(self):
        return [p for model in self.models.values() for p in model.parameters()]

    def build_optimizer(self) -> None:
        opts = self.opts
        params = self.parameters()
        if opts.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=opts.learning_rate, betas=(opts.beta1, opts.beta2),
                                               weight_decay=opts.weight_decay)
        elif opts.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=opts.learning_rate, betas=(opts.beta1, opts.beta2))
        else:
            self.optimizer = torch.optim.SGD(params, lr=opts.learning_rate, momentum=opts.momentum)

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
            flip=opts.flip, jitter_per_frame=opts.jitter_per_frame, split_name=str(train_file))
        self.steps_per_epoch = len(self.train_dataset) // opts.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"--batch_size {opts.batch_size} is larger than the {len(self.train_dataset)} "
                             f"training samples in {train_file}")
        self.total_steps = self.steps_per_epoch * opts.num_epochs
        self.build_scheduler()
        self.eval_loader, self.eval_gt = None, None
        if opts.eval:
            from evaluate_depth import build_kitti_eval_loader, load_kitti_gt

            self.eval_gt = load_kitti_gt(opts.eval_split)
            self.eval_loader = build_kitti_eval_loader(opts.data_path, opts.eval_split, opts.height,
                                                       opts.width, opts.eval_batch_size,
                                                       min(opts.num_workers, 4), opts.img_ext)
        logger.info("Using split: %s", split_dir)
        logger.info("There are %d training items and %d test items", len(self.train_dataset),
                    len(self.eval_loader.dataset) if self.eval_loader else 0)

    def train_loader(self, epoch: int, start_batch: int = 0) -> DataLoader:
        """The epoch's loader: a permutation seeded by (seed, epoch), resumable mid-epoch."""
        generator = torch.Generator()
        generator.manual_seed(max(self.opts.seed, 0) * 1000003 + epoch)
        order = torch.randperm(len(self.train_dataset), generator=generator)
        order = order[start_batch * self.opts.batch_size:].tolist()
        return DataLoader(self.train_dataset, batch_size=self.opts.batch_size, sampler=order,
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

    def load_initial_state(self) -> None:
        ckpt = self.run_dir / CKPT_NAME
        if self.opts.resume and ckpt.exists():
            payload = load_checkpoint(ckpt)
            self.load_model_weights(payload, ckpt)
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            self.epoch, self.batch_in_epoch, self.step = payload["epoch"], payload["batch_idx"], payload["step"]
            logger.info("Resumed from %s at epoch %d, batch %d, step %d", ckpt, self.epoch,
                        self.batch_in_epoch, self.step)
        elif self.opts.pretrained_path:
            self.load_model_weights(load_checkpoint(self.opts.pretrained_path), self.opts.pretrained_path)
        elif self.opts.resume:
            logger.info("No checkpoint to resume, train from epoch 0.")

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
        if self.opts.progress_bar:
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
        return outputs

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

    def synthesize_views(self, inputs: dict, outputs: dict) -> None:
        """Warp every source frame into the target with each scale's depth.

        The target's camera points depend only on its depth, so they are back-projected once per
        scale and projected into each source camera.
        """
        height, width = self.opts.height, self.opts.width
        for scale in self.scales:
            disp = outputs[("disp", scale)]
            source_scale = self.loss_settings.source_scale(scale)
            if not self.opts.v1_multiscale:
                disp = upsample_disp(disp, (height, width))
            _, depth = disp_to_depth(disp, self.opts.min_depth, self.opts.max_depth)
            outputs[("depth", 0, scale)] = depth
            cam_points = backproject(depth, inputs[("inv_K", source_scale)])
            for frame_id in self.source_frame_ids:
                T = inputs["stereo_T"] if frame_id == "s" else outputs[("cam_T_cam", 0, frame_id)]
                grid = project(cam_points, inputs[("K", source_scale)], T, depth.shape[2], depth.shape[3])
                outputs[("color", frame_id, scale)] = warp(inputs[("color", frame_id, source_scale)], grid)

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
        lr = self.optimizer.param_groups[0]["lr"]
        remaining = (self.total_steps - self.step) * batch_time if self.step > 1 else 0.0
        scalars = {k: float(v.detach()) for k, v in losses.items()}
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
        self.writer.close()
        root = logging.getLogger()
        root.removeHandler(self._file_handler)
        root.setLevel(self._previous_log_level)
        self._file_handler.close()

    # ------------------------------------------------------------------------------ evaluation
    def validate(self, epoch: int) -> dict:
        """Depth metrics on --eval_split with the shared evaluation code (median-scaled unless stereo)."""
        if self.eval_loader is None:
            return {}
        from evaluate_depth import evaluate_predictions, format_metrics_table, kitti_protocol, predict_disparities

        logger.info("Test the model at epoch %d", epoch)
        pred_disps = predict_disparities(self.depth_net, self.eval_loader, self.device,
                                         self.opts.min_depth, self.opts.max_depth)
        stereo_only = self.opts.use_stereo and not self.use_pose_net
        result = evaluate_predictions(pred_disps, self.eval_gt, kitti_protocol(self.opts.eval_split),
                                      median_scaling=not stereo_only,
                                      pred_depth_scale_factor=STEREO_SCALE_FACTOR if stereo_only else 1.0)
        if result.ratios.size:
            logger.info(result.ratio_summary())
        logger.info("\n%s", format_metrics_table(result.metrics))
        for name, value in result.metrics.items():
            self.writer.add_scalar(f"val/{name}", value, self.step)
        self.set_train()
        return result.metrics

    # ------------------------------------------------------------------------------ checkpoints
    def weights_payload(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "model_spec": self.model_spec.to_dict(),
                **model_state_dicts(self.models)}

    def save_resume_checkpoint(self, epoch: int, batch_idx: int) -> None:
        """Everything needed to continue at batch ``batch_idx`` of ``epoch``."""
        payload = self.weights_payload()
        payload.update(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                       epoch=epoch, batch_idx=batch_idx, step=self.step)
        save_checkpoint(self.run_dir / CKPT_NAME, payload)

    def save_epoch(self, epoch: int, metrics: dict) -> None:
        payload = self.weights_payload()
        payload.update(epoch=epoch, metrics=metrics)
        save_checkpoint(self.run_dir / "models" / f"model{epoch}.pth", payload)
        self.save_resume_checkpoint(epoch + 1, 0)
