"""Multi-process training: the process group, the epoch sampler, and the few collectives we use.

Launch with torchrun (one process per GPU, or several CPU processes with gloo)::

    torchrun --nproc_per_node 4 train.py ...
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500 --nproc_per_node 8 train.py ...

Ranks come from the environment the launcher sets (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``); the deprecated ``python -m torch.distributed.launch`` sets
the same variables and may also pass ``--local_rank``. Without them training runs in one process.

Every collective here is called by all ranks at the same point of the loop (log steps, saves,
epoch ends), never once per iteration: DDP's gradient all-reduce is the only per-step traffic.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job. A single-process run has rank 0 of 1."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs, tensorboard events and checkpoints."""
        return self.rank == 0


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer; it is set by "
                         "torchrun / torch.distributed.launch and should not be edited") from None


def context_from_environment(local_rank_flag: int | None = None) -> DistributedContext:
    """Read the launcher's environment; ``--local_rank`` is used only when LOCAL_RANK is absent."""
    world_size = _env_int("WORLD_SIZE") or 1
    if world_size == 1:
        return DistributedContext()
    rank = _env_int("RANK")
    if rank is None:
        raise ValueError("WORLD_SIZE is set but RANK is not: launch with torchrun "
                         "(or python -m torch.distributed.launch), which sets both")
    local_rank = _env_int("LOCAL_RANK")
    if local_rank is None:
        local_rank = local_rank_flag if local_rank_flag is not None else rank
    return DistributedContext(rank=rank, local_rank=local_rank, world_size=world_size)


def setup_process_group(context: DistributedContext, device: torch.device,
                        timeout_seconds: float) -> torch.device:
    """Join the job's process group; return this process's device.

    CUDA processes take ``cuda:LOCAL_RANK`` and NCCL; CPU processes use gloo. ``timeout_seconds``
    bounds how long a collective waits for a process that died or hangs, so one failed rank
    ends the job with an error rather than leaving the others blocked forever.
    """
    if not context.is_distributed:
        return device
    if device.type == "cuda":
        if context.local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {context.local_rank} but only {torch.cuda.device_count()} "
                             "CUDA devices are visible: lower --nproc_per_node or fix CUDA_VISIBLE_DEVICES")
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", rank=context.rank,
                                world_size=context.world_size,
                                timeout=datetime.timedelta(seconds=timeout_seconds))
    logger.debug("rank %d/%d joined the %s process group on %s", context.rank, context.world_size,
                 backend, device)
    return device


def cleanup_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def epoch_seed(run_seed: int, epoch: int) -> int:
    """One seed per (run seed, epoch): the epoch's permutation and augmentation seeds derive from it."""
    return run_seed * 1_000_003 + epoch


def epoch_sample_order(num_samples: int, seed: int, epoch: int, rank: int = 0,
                       world_size: int = 1) -> torch.Tensor:
    """This rank's share of the epoch's shuffled sample indices.

    The permutation is a pure function of (seed, epoch): every rank draws the same one, drops
    the last ``num_samples % world_size`` entries so the shares are equal, and takes every
    ``world_size``-th entry from position ``rank``. Batch i of the ranks together is therefore
    the same set of samples as batch i of one process with ``world_size`` times the batch size.

    Returns:
        int64 tensor of num_samples // world_size indices.
    """
    generator = torch.Generator()
    generator.manual_seed(epoch_seed(seed, epoch))
    order = torch.randperm(num_samples, generator=generator)
    usable = num_samples - num_samples % world_size
    return order[:usable][rank::world_size]


def sample_seed(run_seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of sample ``index`` in ``epoch``: distinct for every (epoch, index)."""
    return epoch_seed(run_seed, epoch) * 2**32 + index


def mean_over_ranks(values: dict[str, torch.Tensor], context: DistributedContext) -> dict[str, float]:
    """Average scalar tensors over all ranks (one all-reduce) and return them as floats."""
    names = list(values)
    stacked = torch.stack([values[name].detach().float().reshape(()) for name in names])
    if context.is_distributed:
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        stacked /= context.world_size
    return dict(zip(names, stacked.tolist()))


def gather_to_all(obj, context: DistributedContext) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not context.is_distributed:
        return [obj]
    gathered = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_from_main(obj, context: DistributedContext):
    """Rank 0's ``obj`` on every rank."""
    if not context.is_distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier(context: DistributedContext) -> None:
    if context.is_distributed:
        dist.barrier()
