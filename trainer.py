"""The Trainer: the engine around the method in `model.py`.

Read top to bottom: construction (`build_*`), the loop (`train` -> `train_epoch`), one step
(`train_step`: prepare batch -> model(inputs) -> model.losses -> backward -> clip -> optimiser
step), logging, evaluation and checkpoints. What is predicted and how it is scored is the
model's business; the Trainer owns the loop, DDP, the run folder, checkpoints and logs.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from checkpoints import (CHECKPOINT_FORMAT, load_checkpoint, load_newest_resume_checkpoint,
                         prune_resume_checkpoints, resume_checkpoint_path, save_checkpoint)
from config_files import write_config_yaml
from datasets import DATASETS, dataset_options
from distributed import (broadcast_from_main, cleanup_process_group, context_from_environment,
                         epoch_sample_order, epoch_seed, gather_to_all, mean_over_ranks, sample_seed,
                         setup_process_group)
from model import TrainableMethod, build_training_model, raise_if_not_finite
from options import training_frame_ids
from run_folder import (CONFIG_FILE, OPTIONS_FILE, check_resume_options, check_run_folder, claim_run_folder,
                        remove_stale_temporaries)
from speed import NO_TIMER, PhaseTimer, SpeedSettings, loader_oversubscription
from split_lists import resolve_split_dir
from utils import (StepClock, capture_rng_state, format_hms, readlines, restore_rng_state, seed_everything,
                   seed_worker, select_device, write_json)

logger = logging.getLogger(__name__)

MAX_LOGGED_IMAGES = 4
# Steps over which samples/s and the time left are averaged.
PACE_WINDOW = 50
VAL_FILE = "val_files.txt"
# --val_batches' default, and the share of an epoch's steps it may cost at most (forward passes only).
DEFAULT_VAL_BATCHES = 10
DEFAULT_VAL_SHARE = 0.1


def bde_dataset_options(opts) -> dict:
    """Dataset arguments of the BDEdepth views (none when both are off)."""
    options = {}
    if opts.use_local_crop:
        options.update(local_crop=True, resize_ratio=tuple(opts.resize_ratio))
    if opts.use_patch_reshuffle:
        options.update(patch_reshuffle=True, split_ratio=tuple(opts.split_ratio))
    return options


def make_optimizer(opts, model: TrainableMethod, extra: dict | None = None) -> torch.optim.Optimizer:
    """--optimizer over the model's trainable parameters, in checkpoint order.

    With --pose_lr_factor other than 1 the pose network's parameters form a second group at
    ``learning_rate * pose_lr_factor`` (the schedule scales both); otherwise one group, as every
    checkpoint so far holds.
    """
    params = model.trainable_parameters()
    if opts.pose_lr_factor != 1.0 and "pose" in model.networks:
        pose_ids = {id(p) for p in model.networks["pose"].parameters()}
        params = [{"params": [p for p in params if id(p) not in pose_ids]},
                  {"params": [p for p in params if id(p) in pose_ids],
                   "lr": opts.learning_rate * opts.pose_lr_factor}]
    extra = extra or {}
    if opts.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=opts.learning_rate, betas=(opts.beta1, opts.beta2),
                                 weight_decay=opts.weight_decay, **extra)
    if opts.optimizer == "adam":
        return torch.optim.Adam(params, lr=opts.learning_rate, betas=(opts.beta1, opts.beta2), **extra)
    return torch.optim.SGD(params, lr=opts.learning_rate, momentum=opts.momentum, **extra)


def warmup_factor(step: int, warmup_steps: int, start_ratio: float) -> float:
    """mmcv's linear warm-up: the learning rate's factor at optimiser step ``step`` (1 for the first).

    ``start_ratio`` at the first step, rising linearly to 1 after ``warmup_steps`` steps (FeatDepth:
    500 steps from 1/3); 1 from then on, and always with ``warmup_steps == 0``.
    """
    if warmup_steps <= 0 or step > warmup_steps:
        return 1.0
    return 1.0 - (1.0 - (step - 1) / warmup_steps) * (1.0 - start_ratio)


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, parameters: list,
                   clip_grad: float, lr_factor: float = 1.0, timer: PhaseTimer = NO_TIMER) -> None:
    """Backward, gradient-norm clipping when ``clip_grad > 0``, and the optimiser's step (timed as
    the phases "backward" and "optimiser step" by an enabled ``timer``).

    ``lr_factor`` (the warm-up's) multiplies every group's learning rate for this step only: the
    schedule's rates are restored afterwards, so the scheduler and resume checkpoints never see it.
    """
    with timer.phase("backward"):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
    with timer.phase("optimiser step"):
        if clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(parameters, clip_grad)
        if lr_factor == 1.0:
            optimizer.step()
            return
        scheduled = [group["lr"] for group in optimizer.param_groups]
        for group, lr in zip(optimizer.param_groups, scheduled):
            group["lr"] = lr * lr_factor
        try:
            optimizer.step()
        finally:
            for group, lr in zip(optimizer.param_groups, scheduled):
                group["lr"] = lr


# What a run stopped by non-finite values should do next.
NON_FINITE_ADVICE = ("the run stops before they reach a checkpoint (lower --learning_rate or set --clip_grad, "
                     "then --resume from the last checkpoint)")


class Trainer:
    def __init__(self, opts):
        self.opts = opts
        self.dist = context_from_environment(opts.local_rank)
        self.device = setup_process_group(self.dist, select_device(opts.device), opts.dist_timeout)
        # Rank 0 tells the story (dataset summaries, progress); the other ranks print warnings and errors
        # only, so a rank without the evaluation sets does not announce "0 test items".
        self._root_level_before = logging.getLogger().level
        if not self.dist.is_main:
            logging.getLogger().setLevel(logging.WARNING)
        self.clock = StepClock(PACE_WINDOW)
        self.writer, self.val_writer, self._file_handler = None, None, None
        if opts.sync_bn and self.device.type != "cuda":
            raise ValueError("--sync_bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU "
                             "implementation): drop --sync_bn or train on GPUs")
        self.frame_ids = training_frame_ids(opts)
        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        self.forced_changes: list[str] = []
        # bench/step_profile.py swaps in an enabled PhaseTimer to profile the step (speed.PhaseTimer).
        self.timer: PhaseTimer = NO_TIMER

        if opts.seed > 0:
            seed_everything(opts.seed)
        torch.backends.cudnn.benchmark = opts.seed <= 0
        # Augmentation draws are keyed by this seed; an unseeded run gets a fresh one, which
        # the resume checkpoints keep so that a resumed run still continues exactly.
        self.run_seed = opts.seed if opts.seed > 0 else broadcast_from_main(
            int.from_bytes(os.urandom(4), "little"), self.dist)
        # Nothing in the run folder changes until every check that can be made before training
        # has passed: a failing configuration with --overwrite leaves the previous run intact.
        self.run_dir = self.on_main_rank(self.check_run_folder)
        self.initial_weights = self.read_initial_weights()
        self.build_models()
        self.build_optimizer()
        self.build_dataloaders()
        self.from_pretrained = self.load_pretrained_weights()
        self.on_main_rank(self.claim_run_folder)
        self.build_loggers()
        self.load_initial_state()
        self.wrap_distributed()

    # ------------------------------------------------------------------------------ construction
    def on_main_rank(self, action):
        """Run ``action`` on rank 0 alone and give every rank its result, or its error."""
        result, problem = None, None
        if self.dist.is_main:
            try:
                result = action()
            except (OSError, ValueError) as err:
                problem = (type(err).__name__, str(err))
        result, problem = broadcast_from_main((result, problem), self.dist)
        if problem:
            error_type = {"FileExistsError": FileExistsError, "FileNotFoundError": FileNotFoundError,
                          "PermissionError": PermissionError, "ValueError": ValueError}.get(problem[0], OSError)
            raise error_type(problem[1])
        return result

    def check_run_folder(self) -> Path:
        """``<log_dir>/<exp_name>``, confined to --log_dir; with --resume, the options compared with
        the run's opt.json (changes that alter the arithmetic refused unless --force_resume)."""
        opts = self.opts
        run_dir = check_run_folder(opts.log_dir, opts.exp_name, opts.resume, opts.overwrite)
        self.forced_changes = check_resume_options(run_dir, vars(opts), opts.force_resume) if opts.resume else []
        return run_dir

    def read_initial_weights(self) -> tuple[dict, str, Path] | None:
        """(payload, format, path) of --pretrained_path, or None. A released model's name is fetched by
        rank 0 alone (the others then find it in the cache)."""
        opts = self.opts
        if not opts.pretrained_path:
            if opts.models_to_load:
                raise ValueError("--models_to_load chooses the networks --pretrained_path initialises: give "
                                 "--pretrained_path (or --load_weights_folder) too")
            return None
        from released_weights import read_weights
        from weights import resolve_weights

        path = Path(self.on_main_rank(lambda: str(resolve_weights(opts.pretrained_path, opts.cache_dir))))
        payload, kind = read_weights(path)
        return payload, kind, path

    def imagenet_networks(self) -> set[str]:
        """The networks whose encoders start from ImageNet weights: none with --weights_init scratch, and
        none that --pretrained_path initialises (its encoder is loaded, so no download)."""
        if self.opts.weights_init != "pretrained":
            return set()
        loaded = set(self.opts.models_to_load or ["encoder", "pose_encoder"]) if self.initial_weights else set()
        return {network for network, encoder in (("depth", "encoder"), ("pose", "pose_encoder"))
                if encoder not in loaded}

    def load_pretrained_weights(self) -> bool:
        """Load --pretrained_path into the networks before the run folder is touched, so a missing
        or mismatching file fails while the previous run is intact (a resume overrides them).

        Raises:
            ValueError: --models_to_load names a network this configuration lacks, the file lacks a
                network to load, or its architecture differs (naming the flags that match it).
        """
        if self.initial_weights is None:
            return False
        from checkpoints import spec_from_checkpoint
        from released_weights import WEIGHT_FORMATS
        from weights import check_weights_fit

        payload, kind, path = self.initial_weights
        self.initial_weights = None  # the tensors are copied into the networks; free them
        modules = list(self.model.checkpoint_modules())
        names = list(self.opts.models_to_load or modules)
        unknown = [name for name in names if name not in modules]
        if unknown:
            raise ValueError(f"--models_to_load {' '.join(unknown)}: this configuration's networks are "
                             f"{' '.join(modules)}")
        missing = [name for name in names if name not in payload]
        if missing:
            held = [name for name in modules if name in payload]
            raise ValueError(f"{path} ({WEIGHT_FORMATS[kind]}) has no {', '.join(missing)} weights: pass "
                             f"--models_to_load {' '.join(held)} to take only its networks (the others then start "
                             "as --weights_init says)")
        check_weights_fit(spec_from_checkpoint(payload, path), self.model.spec, names, path)
        self.model.load_state_dicts({name: payload[name] for name in names}, str(path), strict_names=False)
        self.initial_weights_description = f"{', '.join(names)} from the {WEIGHT_FORMATS[kind]} {path}"
        return True

    def claim_run_folder(self) -> None:
        """Take the run folder (deleting the previous run's artefacts with --overwrite), remove
        temporaries of killed writes, and record the options of a new run."""
        claim_run_folder(self.run_dir, self.opts.overwrite)
        removed = remove_stale_temporaries(self.run_dir)
        if removed:
            logger.warning("Removed %d temporary file(s) of interrupted writes: %s", len(removed),
                           ", ".join(map(str, removed)))
        if not (self.opts.resume and (self.run_dir / OPTIONS_FILE).is_file()):
            write_json(self.run_dir / OPTIONS_FILE, vars(self.opts))
            # The same options as a --config file: `train.py --config <run>/config.yaml` repeats the run.
            # It is a convenience beside opt.json (the record), so an environment without PyYAML trains on.
            try:
                write_config_yaml(self.run_dir / CONFIG_FILE, vars(self.opts),
                                  title=f"Options of the run {self.run_dir}; repeat it with: "
                                        f"python train.py --config {self.run_dir / CONFIG_FILE}")
            except ModuleNotFoundError as err:
                if err.name != "yaml":
                    raise
                logger.warning("%s not written: PyYAML is not installed (pip install 'pyyaml>=6.0'); "
                               "opt.json holds the same options", self.run_dir / CONFIG_FILE)

    def build_models(self) -> None:
        self.model = build_training_model(self.opts, pretrained=self.imagenet_networks()).to(self.device)
        finite_check = self.opts.finite_check
        if finite_check == "auto":
            finite_check = "deferred" if self.device.type == "cuda" else "every_step"
        self.deferred_finite_checks = [] if finite_check == "deferred" else None
        self.model.sanitize_grids = finite_check == "deferred"
        if self.opts.sync_bn:
            # Converting in place keeps the same Parameter objects inside the model.
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model_spec = self.model.spec
        # Autocast/channels_last/compile wrap the networks' forward passes only; the model keeps
        # the plain modules, so checkpoints and the optimiser see the same parameters either way.
        self.speed = SpeedSettings.resolve(self.opts, self.device)
        self.model.wrap_networks(self.speed.wrap)

    def parameters(self) -> list:
        return self.model.trainable_parameters()

    def build_optimizer(self) -> None:
        self.optimizer = make_optimizer(self.opts, self.model, self.speed.optimizer_kwargs())

    def training_lines(self) -> tuple[list[str] | None, str]:
        """The split lines to train on and where they come from (for messages).

        --split's train_files.txt; for a dataset that lists its own frames (image_folder, euroc)
        and a --split folder without one, None: every frame of --data_path with its context.
        Refinement (refine.py) trains on a test list instead.
        """
        opts = self.opts
        train_file = resolve_split_dir(opts.split) / "train_files.txt"
        if train_file.is_file():
            return readlines(train_file), str(train_file)
        if getattr(DATASETS[opts.dataset], "every_frame_without_split", False):
            return None, str(opts.data_path)
        raise FileNotFoundError(f"--split {opts.split}: {train_file} not found")

    def build_dataloaders(self) -> None:
        opts = self.opts
        lines, source = self.training_lines()
        self.train_dataset = DATASETS[opts.dataset](
            opts.data_path, lines, opts.height, opts.width, self.frame_ids,
            opts.num_scales, is_train=True, img_ext=opts.img_ext, color_jitter=opts.color_jitter,
            flip=opts.flip, jitter_per_frame=opts.jitter_per_frame, split_name=source,
            color_jitter_probability=opts.color_jitter_probability, color_jitter_hue=opts.color_jitter_hue,
            flip_in_depth_net=opts.flip_mode == "depth_net", **bde_dataset_options(opts), **dataset_options(opts))
        if getattr(opts, "frame_cache", None):
            from frame_cache import FrameCache

            self.train_dataset.use_frame_cache(FrameCache.open(opts.frame_cache))
        samples_per_process = len(self.train_dataset) // self.dist.world_size
        self.steps_per_epoch = samples_per_process // opts.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"--batch_size {opts.batch_size} is larger than the {samples_per_process} "
                             f"training samples per process ({len(self.train_dataset)} in {source} "
                             f"over {self.dist.world_size} processes): lower --batch_size")
        # A step budget (refine.py's --num_steps) replaces --num_epochs: the run stops after that
        # many optimiser steps, inside an epoch if need be.
        self.step_budget = getattr(opts, "num_steps", None) or None
        if self.step_budget:
            self.num_epochs = -(-self.step_budget // self.steps_per_epoch)
            self.total_steps = self.step_budget
        else:
            self.num_epochs = opts.num_epochs
            self.total_steps = self.steps_per_epoch * opts.num_epochs
        self.build_scheduler()
        self.val_dataset = self.build_val_dataset() if self.dist.is_main else None
        self.eval_sets = []
        # Evaluation runs on rank 0 alone; the others wait for it in their next collective.
        if opts.eval and self.dist.is_main:
            from datasets.benchmarks import EvalOptions
            from evaluation import build_training_eval_sets

            options = EvalOptions(height=opts.height, width=opts.width, batch_size=opts.eval_batch_size,
                                  num_workers=min(opts.num_workers, 4), img_ext=opts.img_ext,
                                  max_depth=opts.max_depth)
            self.eval_sets = build_training_eval_sets(opts.dataset, opts.eval_data_path or opts.data_path,
                                                      opts.eval_split, options)
        if self.dist.is_main:
            logger.info("Training on: %s", source)
            logger.info("There are %d training items, %d validation items (%s) and %d test items",
                        len(self.train_dataset), len(self.val_dataset) if self.val_dataset else 0,
                        f"{len(self.val_indices())} an epoch" if self.val_dataset else "no validation loss",
                        sum(len(eval_set.gt_depths) for eval_set in self.eval_sets))

    def build_val_dataset(self):
        """The split's val_files.txt for the per-epoch validation loss (None when off or absent).

        Built like the training set (the same views, so every loss term can be computed) but
        without flips or colour jitter; a broken list fails here, before training starts.
        """
        opts = self.opts
        if self.val_batches() == 0:
            return None
        split_dir = resolve_split_dir(opts.split)
        val_file = split_dir / VAL_FILE
        if not val_file.is_file():
            logger.info("No %s in %s: no per-epoch validation loss", VAL_FILE, split_dir)
            return None
        lines = [line for line in readlines(val_file) if line.strip()]
        if not lines:
            logger.info("%s is empty: no per-epoch validation loss", val_file)
            return None
        return DATASETS[opts.dataset](
            opts.data_path, lines, opts.height, opts.width, self.frame_ids, opts.num_scales, is_train=True,
            img_ext=opts.img_ext, color_jitter=False, flip=False, split_name=str(val_file),
            **bde_dataset_options(opts), **dataset_options(opts))

    def val_batches(self) -> int:
        """--val_batches, or by default 10 batches but at most a tenth of an epoch's steps (at least 1)."""
        if self.opts.val_batches is not None:
            return self.opts.val_batches
        return min(DEFAULT_VAL_BATCHES, max(1, int(self.steps_per_epoch * DEFAULT_VAL_SHARE)))

    def val_indices(self) -> list[int]:
        """The validation samples of every epoch: `val_batches` batches spread evenly over the list."""
        count = min(len(self.val_dataset), self.val_batches() * self.opts.batch_size)
        return sorted(set(np.linspace(0, len(self.val_dataset) - 1, count).round().astype(int).tolist()))

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
        if not self.dist.is_main:
            return
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(self.run_dir / "tensorboard" / "train"))
        # The validation losses under the training losses' names, so TensorBoard draws both curves together.
        self.val_writer = SummaryWriter(str(self.run_dir / "tensorboard" / "val"))
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
        oversubscribed = loader_oversubscription(self.opts.num_workers, self.device)
        if oversubscribed:
            logger.warning(oversubscribed)
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
            self.model.load_state_dicts(payload, str(path))
            initial_lrs = [group["initial_lr"] for group in self.optimizer.param_groups]
            self.optimizer.load_state_dict(payload["optimizer"])
            self.epoch, self.batch_in_epoch, self.step = payload["epoch"], payload["batch_idx"], payload["step"]
            if self.forced_changes:
                self.replay_schedule(initial_lrs)
            else:
                self.scheduler.load_state_dict(payload["scheduler"])
            self.run_seed = payload.get("run_seed", self.run_seed)
            self.restore_random_states(payload.get("rng_states"))
            logger.info("Resumed from %s at epoch %d, batch %d, step %d", path, self.epoch,
                        self.batch_in_epoch, self.step)
        elif self.from_pretrained:
            logger.info("Initial weights: %s", self.initial_weights_description)
        elif self.opts.resume:
            logger.info("No checkpoint to resume, train from epoch 0.")
        if self.forced_changes:
            logger.warning("Resuming with changed options (--force_resume): %s; the continuation is not the "
                           "uninterrupted run's", ", ".join(self.forced_changes))

    def replay_schedule(self, initial_lrs: list[float]) -> None:
        """The learning rates of this run's options at the resumed position.

        A forced resume may change --learning_rate, --pose_lr_factor or the schedule; the saved
        scheduler (and the rates inside the saved optimiser state) would silently keep the old ones.
        The optimiser keeps its saved moments; the schedule is rebuilt and stepped to where the
        checkpoint stopped (per step for cos, per finished epoch for step).
        """
        for group, lr in zip(self.optimizer.param_groups, initial_lrs):
            group["lr"] = group["initial_lr"] = lr
        self.build_scheduler()
        position = self.step if self.opts.lr_sche_type == "cos" else self.epoch
        with warnings.catch_warnings():  # "scheduler stepped before optimizer": intended here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(position):
                self.scheduler.step()

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
        """Wrap the model in DDP (after loading, so every rank starts from the same weights).

        The training forward goes through ``self.training_model``, which averages gradients
        over the ranks in backward; ``self.model`` stays the plain module (losses, evaluation
        on rank 0 alone, checkpoints).
        """
        self.training_model = self.model
        if not self.dist.is_distributed:
            return
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        self.training_model = DistributedDataParallel(self.model, device_ids=device_ids)

    # ------------------------------------------------------------------------------ the loop
    def train(self) -> dict:
        """Train to the last epoch; return the final evaluation metrics (empty without --eval)."""
        metrics = {}
        try:
            for epoch in range(self.epoch, self.num_epochs):
                if self.budget_spent():
                    break
                self.epoch = epoch
                self.train_epoch(epoch, self.batch_in_epoch)
                resume_at = (epoch, self.batch_in_epoch)  # a step budget may end the run inside the epoch
                if self.batch_in_epoch >= self.steps_per_epoch:
                    resume_at, self.batch_in_epoch = (epoch + 1, 0), 0
                    if self.opts.lr_sche_type == "step":
                        self.scheduler.step()
                metrics = self.validate(epoch)
                self.save_epoch(epoch, metrics, resume_at)
        finally:
            self.close()
        return metrics

    def show_progress_bar(self) -> bool:
        """A bar on an interactive terminal only: in a log file its carriage-return redraws would run
        into the log lines, which already give the progress every --log_frequency steps."""
        return self.opts.progress_bar and self.dist.is_main and sys.stderr.isatty()

    def train_epoch(self, epoch: int, start_batch: int) -> None:
        self.set_train()
        loader = self.train_loader(epoch, start_batch)
        if not self.show_progress_bar():
            self.run_epoch_steps(epoch, loader, start_batch, None)
            return
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        # Log lines are written above the bar (tqdm.write) while it is shown, never into it.
        with logging_redirect_tqdm(), tqdm(total=self.steps_per_epoch, initial=start_batch, desc=f"epoch {epoch}",
                                           dynamic_ncols=True, leave=False) as progress:
            self.run_epoch_steps(epoch, loader, start_batch, progress)

    def run_epoch_steps(self, epoch: int, loader: DataLoader, start_batch: int, progress) -> None:
        """The optimiser steps of one epoch from batch ``start_batch``; ``progress`` is a tqdm bar or None."""
        self.clock.restart()
        self.run_steps(epoch, enumerate(loader, start=start_batch), progress)

    def run_steps(self, epoch: int, numbered_batches: Iterator, progress=None, max_steps: int | None = None) -> int:
        """Train on ``(batch_idx, batch)`` pairs until they run out (or ``max_steps``); log and
        checkpoint on schedule. Returns the number of steps taken."""
        steps = 0
        while max_steps is None or steps < max_steps:
            data_start = time.time()
            with self.timer.phase("waiting for data"):
                numbered = next(numbered_batches, None)
            if numbered is None:
                break
            batch_idx, batch = numbered
            data_time = time.time() - data_start
            step_start = time.time()
            self.step += 1
            steps += 1
            inputs, outputs, losses = self.train_step(batch)
            self.batch_in_epoch = batch_idx + 1
            with self.timer.phase("logging and checkpoints"):
                if batch_idx % self.opts.log_frequency == 0:
                    self.flush_finite_checks()
                    self.log_step(inputs, outputs, losses, data_time, time.time() - step_start)
                    if progress is not None:  # reading the loss syncs with the GPU: only on log steps
                        progress.set_postfix(loss=f"{float(losses['loss'].detach()):.4f}")
                if self.step % self.opts.save_frequency == 0:
                    self.save_resume_checkpoint(epoch, self.batch_in_epoch)
                if progress is not None:
                    progress.update(1)
            self.clock.tick()
            if self.budget_spent():
                break
        return steps

    def budget_spent(self) -> bool:
        """Whether a step budget (--num_steps) is set and reached."""
        return self.step_budget is not None and self.step >= self.step_budget

    def train_step(self, batch: dict):
        timer = self.timer
        with timer.phase("batch preparation"):
            inputs = self.model.prepare_inputs(batch, self.device)
        with timer.phase("forward (rest)"):
            outputs = self.training_model(inputs)
        with timer.phase("losses"):
            losses = self.model.losses(inputs, outputs)
        with timer.phase("non-finite check"):
            self.check_finite(outputs, losses)
        optimizer_step(losses["loss"], self.optimizer, self.parameters(), self.opts.clip_grad,
                       warmup_factor(self.step, self.opts.warmup_steps, self.opts.warmup_ratio), timer)
        with timer.phase("optimiser step"):
            if self.opts.lr_sche_type == "cos":
                self.scheduler.step()
        return inputs, outputs, losses

    def check_finite(self, outputs: dict, losses: dict) -> None:
        """Stop when a loss, a sampling grid, a depth or a pose is not finite.

        A NaN in a sampling grid leaves ``grid_sample``'s output finite but crashes its backward
        pass on the CPU, so the grids are checked, not only the loss. The flags are reduced on the
        device. Checked every step (``--finite_check every_step``, the CPU default: reading them
        costs nothing there), the run stops before backward, so the weights never see the values.
        Deferred (the CUDA default), the flags are read on log steps and before every checkpoint,
        so no step waits for the GPU; the grids are sanitised so that backward cannot crash, and
        the last checkpoint written is still from before the first bad step.

        Raises:
            FloatingPointError: naming the step and every non-finite quantity.
        """
        names, flags = self.model.finite_flags(outputs, losses)
        if self.deferred_finite_checks is None:
            raise_if_not_finite(self.step, names, flags, NON_FINITE_ADVICE)
        else:
            self.deferred_finite_checks.append((self.step, names, flags))

    def flush_finite_checks(self) -> None:
        """Read the deferred flags (one synchronisation for all of them) and raise on the first bad step."""
        if not self.deferred_finite_checks:
            return
        pending, self.deferred_finite_checks = self.deferred_finite_checks, []
        all_ok = torch.stack([flags.all() for _, _, flags in pending])
        if bool(all_ok.all()):
            return
        step, names, flags = pending[int((~all_ok).nonzero()[0])]
        raise_if_not_finite(step, names, flags, NON_FINITE_ADVICE)

    # ------------------------------------------------------------------------------ logging
    def set_train(self) -> None:
        self.model.train()

    def log_step(self, inputs, outputs, losses, data_time: float, batch_time: float) -> None:
        """Losses averaged over the ranks (every rank takes part); rank 0 writes them."""
        scalars = mean_over_ranks(losses, self.dist)
        if not self.dist.is_main:
            return
        lr = self.optimizer.param_groups[0]["lr"] * warmup_factor(self.step, self.opts.warmup_steps,
                                                                  self.opts.warmup_ratio)
        # The pace of the last PACE_WINDOW steps (not of this batch alone), over every process's samples.
        samples_per_second = self.clock.samples_per_second(self.opts.batch_size * self.dist.world_size)
        remaining = self.clock.time_left(self.total_steps - self.step)
        logger.info("epoch: %2d/%d | batch: %4d/%d | samples/s: %.1f | data time: %.4f | batch time: %.3f | "
                    "loss: %.4f | lr: %.2e | time left: %s", self.epoch, self.num_epochs - 1,
                    self.batch_in_epoch - 1, self.steps_per_epoch, samples_per_second, data_time, batch_time,
                    scalars["loss"], lr, format_hms(remaining) if samples_per_second else "-")
        if samples_per_second:
            self.writer.add_scalar("samples_per_second", samples_per_second, self.step)
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, self.step)
        self.writer.add_scalar("lr", lr, self.step)
        batch_size = inputs[("color", 0, 0)].shape[0]
        for j in range(min(MAX_LOGGED_IMAGES, batch_size)):
            for name, image in self.model.logged_images(inputs, outputs, j).items():
                self.writer.add_image(f"{name}/{j}", image.numpy(), self.step)

    def close(self) -> None:
        if self.val_writer is not None:
            self.val_writer.close()
        if self.writer is not None:
            self.writer.close()
            root = logging.getLogger()
            root.removeHandler(self._file_handler)
            root.setLevel(self._previous_log_level)
            self._file_handler.close()
        if not self.dist.is_main:
            logging.getLogger().setLevel(self._root_level_before)
        cleanup_process_group()

    # ------------------------------------------------------------------------------ evaluation
    def validate(self, epoch: int) -> dict:
        """The validation loss (`validation_loss`), then the depth metrics of the dataset's benchmark with
        the shared evaluation code, scaled as `ModelSpec.metric_depth_scale` says (as evaluate_depth.py
        does); returns the first table's metrics."""
        self.validation_loss(epoch)
        if not self.eval_sets:
            return {}
        from evaluation import Scaling, evaluate_model, format_metrics_table

        logger.info("Test the model at epoch %d", epoch)
        scaling = Scaling.for_model(self.model_spec)
        results = []
        for eval_set in self.eval_sets:
            _, result = evaluate_model(self.model, eval_set, self.device, scaling)
            if result.ratios.size:
                logger.info(result.ratio_summary())
            logger.info("%s:\n%s", eval_set.title, format_metrics_table(result.metrics))
            prefix = "val" if not results else f"val_{eval_set.key}"
            for name, value in result.metrics.items():
                self.writer.add_scalar(f"{prefix}/{name}", value, self.step)
            results.append(result.metrics)
        self.set_train()
        return results[0]

    def validation_loss(self, epoch: int) -> dict:
        """The training losses on the same --val_batches batches of val_files.txt every epoch (rank 0).

        Networks in eval mode, no gradient; the random streams are restored afterwards, so training
        continues exactly as it would without validation. Logged under the training losses' names to
        tensorboard/val and to the log. Returns the mean of each loss over the batches ({} when off).
        """
        if self.val_dataset is None:
            return {}
        keys = [(index, sample_seed(self.run_seed, 0, index)) for index in self.val_indices()]
        generator = torch.Generator()
        generator.manual_seed(epoch_seed(self.run_seed, 0))
        loader = DataLoader(self.val_dataset, batch_size=self.opts.batch_size, sampler=keys,
                            num_workers=min(self.opts.num_workers, 4), worker_init_fn=seed_worker,
                            generator=generator)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        totals: dict[str, float] = {}
        samples = 0
        self.model.eval()
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            for batch in loader:
                inputs = self.model.prepare_inputs(batch, self.device)
                losses = self.model.losses(inputs, self.model(inputs))
                size = inputs[("color", 0, 0)].shape[0]
                for name, value in losses.items():
                    totals[name] = totals.get(name, 0.0) + float(value) * size
                samples += size
        self.set_train()
        # The total first, then each term.
        means = {name: totals[name] / samples for name in sorted(totals, key=lambda name: name != "loss")}
        for name, value in means.items():
            self.val_writer.add_scalar(name, value, self.step)
        logger.info("Validation loss at epoch %d (%d samples of %s): %s", epoch, samples,
                    self.val_dataset.split_name, " | ".join(f"{name}: {value:.4f}" for name, value in means.items()))
        return means

    # ------------------------------------------------------------------------------ checkpoints
    def weights_payload(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "model_spec": self.model_spec.to_dict(), **self.model.state_dicts()}

    def save_resume_checkpoint(self, epoch: int, batch_idx: int) -> None:
        """Everything needed to continue at batch ``batch_idx`` of ``epoch``, exactly.

        Called by every rank (their random states are gathered); rank 0 writes
        ``checkpoints/step{step}.pth`` atomically and keeps the --keep_last newest.
        """
        self.flush_finite_checks()
        rng_states = gather_to_all(capture_rng_state(), self.dist)
        if not self.dist.is_main:
            return
        payload = self.weights_payload()
        payload.update(optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                       epoch=epoch, batch_idx=batch_idx, step=self.step, run_seed=self.run_seed,
                       rng_states=rng_states)
        save_checkpoint(resume_checkpoint_path(self.run_dir, self.step), payload)
        prune_resume_checkpoints(self.run_dir, self.opts.keep_last)

    def save_epoch(self, epoch: int, metrics: dict, resume_at: tuple[int, int] | None = None) -> None:
        """The epoch's weights snapshot (what evaluation reads) and a resume checkpoint at ``resume_at``
        ((epoch, batch); default the start of the next epoch)."""
        self.flush_finite_checks()
        if self.dist.is_main:
            payload = self.weights_payload()
            payload.update(epoch=epoch, metrics=metrics)
            save_checkpoint(self.run_dir / "models" / f"model{epoch}.pth", payload)
        self.save_resume_checkpoint(*(resume_at or (epoch + 1, 0)))
