"""Convert released Monodepth2 folders and BDEdepth files into self-describing checkpoints.

    python convert_weights.py --input models/mono_640x192 --output mono_640x192.pth

Every script already reads the released formats through ``--pretrained_path``; converting once
records the architecture and the depth range (which released files do not store) in the file.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from config_files import parse_args_with_config

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> Path:
    """Convert; return the written checkpoint's path."""
    from checkpoints import load_checkpoint, save_checkpoint, spec_from_checkpoint
    from model import SelfSupervisedDepth
    from released_weights import convert_bdedepth, load_monodepth2_folder

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description="Convert Monodepth2/BDEdepth weights to our checkpoint.")
    parser.add_argument("--input", required=True, help="a Monodepth2 model folder or a BDEdepth .pth")
    parser.add_argument("--output", required=True, help="the checkpoint to write")
    parser.add_argument("--min_depth", type=float, default=0.1, help="depth range the model was trained with")
    parser.add_argument("--max_depth", type=float, default=100.0, help="(released files do not store it)")
    opts = parse_args_with_config(parser, argv)
    source = Path(opts.input)
    if source.is_dir():
        payload = load_monodepth2_folder(source, opts.min_depth, opts.max_depth)
    else:
        payload = load_checkpoint(source)
        if "model_spec" not in payload:
            payload = convert_bdedepth(payload, str(source), opts.min_depth, opts.max_depth)
    # Refuse to write weights that do not load.
    SelfSupervisedDepth.for_inference(spec_from_checkpoint(payload, source)).load_state_dicts(payload, str(source))
    save_checkpoint(opts.output, payload)
    logger.info("wrote %s (%s)", opts.output, payload["model_spec"])
    return Path(opts.output)


if __name__ == "__main__":
    main()
