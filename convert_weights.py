"""Convert released Monodepth2 and SQLdepth folders, BDEdepth files and PackNet-SfM .ckpt files into
self-describing checkpoints.

    python convert_weights.py --input models/mono_640x192 --output mono_640x192.pth
    python convert_weights.py --input SQLdepth/KITTI_R50_640x192/weights_19 --sql_variant resnet50_640x192 \
        --output sqldepth_r50_640x192.pth
    python convert_weights.py --input PackNet01_MR_selfsup_K.ckpt --output packnet01_kitti.pth
    python convert_weights.py --input featdepth/epoch_40.pth --image_shape 320 1024 --output featdepth_ms.pth

Every script already reads the released formats through ``--pretrained_path``; converting once
records the architecture and the depth range (which released files do not store) in the file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from config_files import parse_args_with_config

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> Path:
    """Convert; return the written checkpoint's path."""
    from checkpoints import load_checkpoint, save_checkpoint, spec_from_checkpoint
    from featdepth_weights import convert_featdepth_checkpoint, featdepth_state_dict
    from model import AutoencoderTraining, SelfSupervisedDepth
    from networks.sqldepth import SQLDEPTH_VARIANTS
    from packnet_weights import convert_packnet_checkpoint, has_packnet_suffix, load_packnet_file, packnet_state_dict
    from released_weights import DEFAULT_DEPTH_RANGE, convert_bdedepth, load_released_folder
    from utils import configure_logging

    configure_logging("stderr")
    parser = argparse.ArgumentParser(description="Convert Monodepth2/SQLdepth/BDEdepth weights to our checkpoint.")
    parser.add_argument("--input", required=True,
                        help="a Monodepth2 or SQLdepth model folder, a BDEdepth .pth, a PackNet-SfM .ckpt or a "
                             "FeatDepth mmcv .pth")
    parser.add_argument("--output", required=True, help="the checkpoint to write")
    parser.add_argument("--min_depth", type=float, default=None,
                        help="depth range the model was trained with (released files do not store it; default "
                             "0.1-100 for Monodepth2/BDEdepth, the published variant's for SQLdepth)")
    parser.add_argument("--max_depth", type=float, default=None, help="see --min_depth")
    parser.add_argument("--sql_variant", choices=sorted(SQLDEPTH_VARIANTS), default=None,
                        help="the published SQLdepth model the folder holds (its depth range; checked against "
                             "the tensors' sizes)")
    parser.add_argument("--image_shape", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="PackNet .ckpt or FeatDepth .pth: the input size to record (default: a PackNet "
                             "config's image_shape, else 192 640; FeatDepth 320 1024, its autoencoder 256 800)")
    opts = parse_args_with_config(parser, argv)
    if (opts.min_depth is None) != (opts.max_depth is None):
        parser.error("give both --min_depth and --max_depth, or neither")
    source = Path(opts.input)
    if source.is_dir():
        if opts.image_shape is not None:
            parser.error(f"--image_shape applies to PackNet checkpoints; {source} is a folder")
        payload = load_released_folder(source, opts.sql_variant, (opts.min_depth, opts.max_depth))
    else:
        if opts.sql_variant is not None:
            parser.error(f"--sql_variant applies to SQLdepth model folders; {source} is a file")
        payload = load_packnet_file(source) if has_packnet_suffix(source) else load_checkpoint(source)
        if "model_spec" not in payload and packnet_state_dict(payload) is not None:
            payload, _ = convert_packnet_checkpoint(payload, str(source), opts.image_shape)
        elif "model_spec" not in payload and featdepth_state_dict(payload) is not None:
            payload, _ = convert_featdepth_checkpoint(payload, str(source), opts.image_shape)
        elif opts.image_shape is not None:
            parser.error(f"--image_shape applies to PackNet and FeatDepth checkpoints; {source} is neither")
        if "model_spec" not in payload:
            depth_range = DEFAULT_DEPTH_RANGE if opts.min_depth is None else (opts.min_depth, opts.max_depth)
            payload = convert_bdedepth(payload, str(source), *depth_range)
    # Refuse to write weights that do not load.
    spec = spec_from_checkpoint(payload, source)
    model = AutoencoderTraining(spec) if spec.method == "autoencoder" else SelfSupervisedDepth.for_inference(spec)
    model.load_state_dicts(payload, str(source))
    save_checkpoint(opts.output, payload)
    logger.info("wrote %s (%s)", opts.output, payload["model_spec"])
    return Path(opts.output)


if __name__ == "__main__":
    from utils import run_main

    sys.exit(run_main(main))
