"""Export the depth network of any weights as ONNX and/or TorchScript, for deployment.

    python export_model.py --pretrained_path RUN/models/model19.pth --format onnx torchscript --dynamic_batch

Reads every format `model.load_model` reads (a checkpoint of this toolkit, a released Monodepth2
or SQLdepth folder, a BDEdepth file, a PackNet-SfM ``.ckpt``) and writes
``<weights name>_<depth|inverse_depth>_<H>x<W>.onnx`` and/or ``.torchscript.pt`` into
``--output_dir`` (default: the folder holding the weights).

The exported model takes one input, ``image``: B x 3 x H x W float32 RGB in [0, 1] at the size it
was exported at (the checkpoint's, or ``--height/--width``), and returns one tensor, ``depth``
(or ``inverse_depth`` with ``--inverse_depth``): B x 1 x H x W float32 in the model's units,
exactly `SelfSupervisedDepth.predict`'s conversion of the network's full-resolution output. For a
stereo-trained model, depth x 5.4 is metres on KITTI (the log says which factor applies); a
monocular model's depth is up to scale. ``--dynamic_batch`` makes the batch size free; otherwise
it is ``--batch_size``.

ONNX goes through the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)`` where
the keyword exists, i.e. torch 2.5+; it is the only exporter on torch 2.1): the network's output is
a dict with tuple keys, which only tracing (not ``torch.export``) reduces to the single tensor the
wrapper returns. That exporter needs the ``onnx`` package (torch 2.14 refuses without it:
"Module onnx is not installed!"). After writing, each file is run once on a random batch (ONNX
with onnxruntime when it is installed) and the largest relative difference from PyTorch is logged.

Files are written atomically (a temporary beside the target, then a rename): an interrupted export
never leaves a half-written model under the final name.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import logging
import sys
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from config_files import parse_args_with_config
from utils import UserError, atomic_output, check_output_folders, configure_logging, positive_int
from weights import add_weights_arguments, chosen_weights, resolve_weights

logger = logging.getLogger(__name__)

FORMAT_SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
INPUT_NAME = "image"
# Opset 17 is the newest the TorchScript-based exporter of torch 2.1 writes, and covers every
# operator the depth networks use (Resize, Pad, Conv, attention's MatMul/Softmax).
DEFAULT_OPSET = 17
# A verification difference above this is reported as a warning (float32 kernels differ by ~1e-6).
VERIFY_RELATIVE_TOLERANCE = 1e-4


class ExportError(UserError, RuntimeError):
    """An export that cannot be done as asked (the message names the flag and the fix)."""


class DepthExportModule(nn.Module):
    """One-tensor view of a depth model, for tracing: images -> depth (or inverse depth).

    The depth network returns a dict with tuple keys (``("disp", 0)``), which tracers refuse as an
    output; this wrapper returns `SelfSupervisedDepth.predict`'s conversion of the full-resolution
    map instead, so the exported graph computes exactly what inference in PyTorch computes.

    Args:
        model: a `model.SelfSupervisedDepth` (as `model.load_model` returns it).
        inverse: return the inverse depth (the scaled disparity for Monodepth2-style networks).
    """

    def __init__(self, model: nn.Module, inverse: bool = False) -> None:
        super().__init__()
        self.model = model
        self.inverse = inverse
        # In eval mode from the start: torch.onnx.export restores the wrapper's own mode after
        # exporting, and a fresh module's default (training) would put every BatchNorm of the
        # network into training mode, so that later PyTorch predictions drift from the file's.
        self.eval()

    @property
    def output_name(self) -> str:
        return "inverse_depth" if self.inverse else "depth"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W RGB in [0, 1] -> B x 1 x H x W float32 depth (or inverse depth), model units."""
        inverse_depth, depth = self.model.predict(images)
        return inverse_depth if self.inverse else depth


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Export a depth network as ONNX and/or TorchScript.")
    add_weights_arguments(parser, architecture_flags=False)  # --height/--width here set the export size
    parser.add_argument("--format", nargs="+", choices=list(FORMAT_SUFFIXES), default=["onnx"],
                        help="what to write: onnx (.onnx), torchscript (.torchscript.pt), or both")
    parser.add_argument("--output_dir", default=None, help="where to write (default: the folder of the weights)")
    parser.add_argument("--height", type=positive_int, default=None,
                        help="input height (default: the checkpoint's; a multiple of 32, at least 64)")
    parser.add_argument("--width", type=positive_int, default=None,
                        help="input width (default: the checkpoint's; a multiple of 32, at least 64)")
    parser.add_argument("--inverse_depth", action="store_true",
                        help="output the inverse depth (the scaled disparity) instead of the depth")
    parser.add_argument("--dynamic_batch", action="store_true",
                        help="let the batch size vary at run time (ONNX: a symbolic batch axis)")
    parser.add_argument("--batch_size", type=positive_int, default=1,
                        help="the batch size of the exported input when not --dynamic_batch")
    parser.add_argument("--opset", type=positive_int, default=DEFAULT_OPSET, help="ONNX opset version")
    parser.add_argument("--no_verify", dest="verify", action="store_false",
                        help="skip running the exported files once against PyTorch")
    return parser


def export_size(spec, height: int | None, width: int | None) -> tuple[int, int]:
    """The input size to export at: ``--height/--width`` where given, else the checkpoint's.

    Raises:
        ValueError: naming ``--height``/``--width`` when the network cannot take the size.
    """
    from test_simple import check_image_shape

    size = (height or spec.height, width or spec.width)
    check_image_shape(spec, *size, size_flags="--height {height} --width {width}")
    return size


def legacy_onnx_export_kwargs() -> dict:
    """``dynamo=False`` where torch.onnx.export has the keyword (torch 2.5+; the default turned to
    True in 2.9), nothing on older torch, whose only exporter is the TorchScript-based one."""
    return {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def check_onnx_available() -> None:
    """Refuse ``--format onnx`` before any work when the ``onnx`` package is missing.

    Raises:
        ExportError: naming the package and the alternatives.
    """
    if importlib.util.find_spec("onnx") is None:
        raise ExportError("--format onnx needs the 'onnx' package (torch's ONNX exporter builds the file with it): "
                          "install it with '.venv/bin/pip install onnx', or export --format torchscript only")


def export_onnx(module: DepthExportModule, example: torch.Tensor, path: Path, dynamic_batch: bool,
                opset: int = DEFAULT_OPSET) -> Path:
    """Write ``module`` traced on ``example`` (B x 3 x H x W) as ONNX to ``path``, atomically."""
    dynamic_axes = {INPUT_NAME: {0: "batch"}, module.output_name: {0: "batch"}} if dynamic_batch else None
    with atomic_output(path, suffix=".onnx") as tmp, torch.no_grad(), warnings.catch_warnings():
        # The TorchScript-based exporter announces its own deprecation on torch 2.9+.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        torch.onnx.export(module, (example,), str(tmp), input_names=[INPUT_NAME], output_names=[module.output_name],
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True,
                          **legacy_onnx_export_kwargs())
    return path


def export_torchscript(module: DepthExportModule, example: torch.Tensor, path: Path) -> Path:
    """Write ``module`` traced on ``example`` as TorchScript to ``path``, atomically.

    The traced graph has no shape-dependent branch left, so another batch size runs too.
    """
    with torch.no_grad(), warnings.catch_warnings():
        # torch.jit.trace and torch.jit.save announce their deprecation on torch 2.9+; TorchScript
        # is still what C++ (libtorch) deployments load.
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        traced = torch.jit.trace(module, example)
        with atomic_output(path, suffix=".pt") as tmp:
            torch.jit.save(traced, str(tmp))
    return path


def run_onnx(path: Path, images: np.ndarray) -> np.ndarray:
    """The exported ONNX model's output on B x 3 x H x W float32 ``images``, through onnxruntime (CPU).

    Raises:
        ImportError: onnxruntime is not installed (an optional dependency).
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})[0]


def run_torchscript(path: Path, images: torch.Tensor) -> torch.Tensor:
    """The exported TorchScript model's output on ``images``, loaded back with ``torch.jit.load`` (CPU)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # deprecated on torch 2.9+, still works
        loaded = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return loaded(images.cpu())


def max_relative_difference(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / |expected| over elements (the maps are positive depths)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"shape {actual.shape} differs from PyTorch's {expected.shape}")
    return float(np.max(np.abs(actual - expected) / np.maximum(np.abs(expected), np.finfo(np.float32).tiny)))


def verify_export(path: Path, file_format: str, module: DepthExportModule, images: torch.Tensor) -> float | None:
    """Run the written file on ``images`` and return its largest relative difference from PyTorch.

    None when the runtime is missing (ONNX without onnxruntime, which is optional).
    """
    with torch.no_grad():
        expected = module(images).cpu().numpy()
    if file_format == "onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            logger.info("onnxruntime is not installed: %s was not run (pip install onnxruntime to check it)", path)
            return None
        actual = run_onnx(path, images.cpu().numpy())
    else:
        actual = run_torchscript(path, images).numpy()
    return max_relative_difference(actual, expected)


def main(argv: Sequence[str] | None = None) -> list[Path]:
    """Export as the flags say; return the paths written.

    Raises:
        FileNotFoundError: ``--pretrained_path`` does not exist.
        OSError: ``--output_dir`` cannot be created or written (checked before the export).
        ValueError: the weights are not readable, or ``--height/--width`` do not fit the network.
        ExportError: ``--format onnx`` without the ``onnx`` package.
    """
    configure_logging()
    parser = build_parser()
    opts = parse_args_with_config(parser, argv)
    formats = list(dict.fromkeys(opts.format))  # "--format onnx onnx" exports once
    if "onnx" in formats:
        check_onnx_available()
    weights = resolve_weights(chosen_weights(opts, parser), opts.cache_dir)
    from model import load_model

    # Exported on the CPU: the files are device-independent, and tracing needs no accelerator.
    model = load_model(str(weights), "cpu")
    height, width = export_size(model.spec, opts.height, opts.width)
    output_dir = Path(opts.output_dir) if opts.output_dir else weights.resolve().parent
    check_output_folders([output_dir])  # before tracing, which is the slow part
    module = DepthExportModule(model, inverse=opts.inverse_depth)
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(opts.batch_size, 3, height, width, generator=generator)
    stem = f"{weights.stem}_{module.output_name}_{height}x{width}"
    written = []
    for file_format in formats:
        path = output_dir / f"{stem}{FORMAT_SUFFIXES[file_format]}"
        if file_format == "onnx":
            export_onnx(module, example, path, opts.dynamic_batch, opts.opset)
        else:
            export_torchscript(module, example, path)
        written.append(path)
        logger.info("Wrote %s: %s -> %s (B x 1 x %d x %d, batch %s)", path, INPUT_NAME, module.output_name, height,
                    width, "dynamic" if opts.dynamic_batch else opts.batch_size)
        if opts.verify:
            # Another batch size than the traced one, when it may vary, proves the axis is free.
            batch = opts.batch_size + 1 if opts.dynamic_batch else opts.batch_size
            difference = verify_export(path, file_format, module,
                                       torch.rand(batch, 3, height, width, generator=generator))
            if difference is not None:
                log = logger.warning if difference > VERIFY_RELATIVE_TOLERANCE else logger.info
                log("%s vs PyTorch on a random batch of %d: largest relative difference %.2e", path.name, batch,
                    difference)
    factor = model.spec.metric_depth_scale
    if factor is not None:
        logger.info("This model was trained on stereo pairs: its depth x %g (inverse depth / %g) is metres "
                    "(KITTI's baseline)", factor, factor)
    else:
        logger.info("This model was trained monocularly: its depth is up to scale")
    return written


if __name__ == "__main__":
    from utils import run_main

    sys.exit(run_main(main))
