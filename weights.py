"""One loading path for weights, shared by every script's command line.

Every script takes its weights through ``--pretrained_path`` (aliases ``--load_weights_folder``,
Monodepth2's spelling, and ``--load_weights``): a checkpoint of this toolkit, a released Monodepth2
or SQLdepth folder, a BDEdepth ``.pth``, a PackNet-SfM ``.ckpt`` (`released_weights.read_weights`),
or the name of a released model (`model_zoo.ZOO`), fetched into the cache on first use. The
inference and evaluation scripts also take ``--model_name NAME`` as Monodepth2's ``test_simple.py``
does (on ``train.py``, ``--model_name`` is Monodepth2's run name, so the zoo is reached through
``--pretrained_path NAME``). A path that does not exist but ends in a released name
(``pretrained/mono_640x192``, ``./kitti_hrnet18_640x192.pth``) is that released model.

BDEdepth's inference and evaluation flags (``--backbone --num_layers --height --width --min_depth
--max_depth``) are accepted and checked against what the weights record: agreeing values are fine,
a disagreeing one is an error naming what the weights are. Released Monodepth2/BDEdepth/SQLdepth
files record no depth range, so for them ``--min_depth/--max_depth`` set it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Iterable

logger = logging.getLogger(__name__)

WEIGHTS_HELP = ("a checkpoint written by train.py, a released Monodepth2 or SQLdepth folder, a BDEdepth .pth, a "
                "PackNet-SfM .ckpt, or the name of a released model (downloaded once into --cache_dir)")
# ModelSpec fields the BDEdepth-style flags of the inference and evaluation scripts name.
REQUESTED_FIELDS = ("backbone", "num_layers", "height", "width", "min_depth", "max_depth")
# ModelSpec fields that decide the networks' tensors, with the training flag that sets each
# (``scales`` is written as --num_scales N).
ARCHITECTURE_FLAGS = {"backbone": "--backbone", "num_layers": "--num_layers", "decoder": "--decoder",
                      "scales": "--num_scales", "sql_patch_size": "--sql_patch_size",
                      "sql_num_queries": "--sql_num_queries", "sql_num_bins": "--sql_num_bins",
                      "sql_model_dim": "--sql_model_dim", "sql_dim_feedforward": "--sql_dim_feedforward",
                      "sql_num_features": "--sql_num_features"}
POSE_ARCHITECTURE_FLAGS = {"pose_model_type": "--pose_model_type", "pose_layers": "--pose_num_layers",
                           "pose_model_input": "--pose_model_input"}


def add_weights_arguments(parser: argparse.ArgumentParser, zoo_flag: bool = True,
                          architecture_flags: bool = True) -> argparse._ArgumentGroup:
    """``--pretrained_path`` (and aliases), ``--model_name`` (``zoo_flag``), ``--cache_dir`` and BDEdepth's
    architecture flags (``architecture_flags``), in one group; `chosen_weights` reads them."""
    from model_zoo import CACHE_ENV, default_cache_dir, describe_zoo

    group = parser.add_argument_group("weights")
    group.add_argument("--pretrained_path", "--load_weights_folder", "--load_weights", dest="pretrained_path",
                       default=None, help=WEIGHTS_HELP)
    if zoo_flag:
        group.add_argument("--model_name", default=None, metavar="NAME",
                           help=f"a released model, downloaded and converted on first use ({describe_zoo()})")
    group.add_argument("--cache_dir", default=None,
                       help=f"where released models are kept (default: ${CACHE_ENV}, else {default_cache_dir()})")
    if architecture_flags:
        add_architecture_check_arguments(group)
    return group


def add_architecture_check_arguments(group) -> None:
    """BDEdepth's model flags, checked against the weights instead of building the network."""
    from networks import depth_backbone_choices

    check = "checked against the weights, which record it"
    group.add_argument("--backbone", default=None, choices=depth_backbone_choices(), help=f"depth encoder ({check})")
    group.add_argument("--num_layers", type=int, default=None, help=f"encoder depth ({check})")
    group.add_argument("--height", type=int, default=None, help=f"input height the model was trained at ({check})")
    group.add_argument("--width", type=int, default=None, help=f"input width the model was trained at ({check})")
    group.add_argument("--min_depth", type=float, default=None,
                       help="depth range of the model: checked against weights that record one; sets it for released "
                            "Monodepth2/BDEdepth/SQLdepth files, which do not (default 0.1-100)")
    group.add_argument("--max_depth", type=float, default=None, help="see --min_depth")


def chosen_weights(opts: argparse.Namespace, parser: argparse.ArgumentParser, required: bool = True) -> str | None:
    """The weights the command names: ``--pretrained_path`` (or an alias) or ``--model_name``.

    Exits through ``parser.error`` when both name different weights, or none does and ``required``.
    """
    from model_zoo import describe_zoo

    given = [(flag, value) for flag, value in (("--pretrained_path", opts.pretrained_path),
                                               ("--model_name", getattr(opts, "model_name", None))) if value]
    if len({value for _, value in given}) > 1:
        parser.error(f"{given[0][0]} {given[0][1]} and {given[1][0]} {given[1][1]} name different weights: give one")
    if not given:
        if required:
            parser.error(f"give the weights: --pretrained_path PATH (alias --load_weights_folder) or --model_name NAME "
                         f"(released models: {describe_zoo()})")
        return None
    if (getattr(opts, "min_depth", None) is None) != (getattr(opts, "max_depth", None) is None):
        parser.error("give both --min_depth and --max_depth, or neither")
    return given[0][1]


def resolve_weights(value: str, cache_dir: str | Path | None = None) -> Path:
    """The file or folder ``value`` names: an existing path, else the released model it names (fetched).

    Raises:
        FileNotFoundError: neither a path nor a released name (near misses are suggested).
        model_zoo.ZooError: the released model cannot be fetched or verified.
    """
    from model_zoo import describe_zoo, fetch_zoo_model, suggest_names, zoo_name_of

    path = Path(value).expanduser()
    if path.exists():
        return path
    name = zoo_name_of(value)
    if name is None:
        raise FileNotFoundError(f"--pretrained_path {value} does not exist and is not a released model's name"
                                f"{suggest_names(value)}; released models: {describe_zoo()}")
    if name != value:
        logger.info("%s does not exist: using the released model %s", value, name)
    return fetch_zoo_model(name, cache_dir)


def depth_range_flags(opts: argparse.Namespace) -> tuple[float | None, float | None]:
    return getattr(opts, "min_depth", None), getattr(opts, "max_depth", None)


def check_requested_architecture(opts: argparse.Namespace, spec, source: str | Path) -> None:
    """BDEdepth-style flags that were given must agree with the weights.

    Raises:
        ValueError: naming each disagreeing flag, the weights' value, and the fix.
    """
    differ = [(name, getattr(opts, name), getattr(spec, name)) for name in REQUESTED_FIELDS
              if getattr(opts, name, None) is not None and getattr(opts, name) != getattr(spec, name)]
    if not differ:
        return
    given = " ".join(f"--{name} {value:g}" if isinstance(value, float) else f"--{name} {value}"
                     for name, value, _ in differ)
    recorded = " ".join(f"--{name} {value:g}" if isinstance(value, float) else f"--{name} {value}"
                        for name, _, value in differ)
    size_hint = " (test_simple.py --image_shape H W runs it at another size)" if any(
        name in ("height", "width") for name, _, _ in differ) else ""
    raise ValueError(f"{given} disagrees with {source}, which records {recorded}: drop these flags (the weights "
                     f"describe their own architecture) or give the weights that were trained so{size_hint}")


def load_requested_model(opts: argparse.Namespace, parser: argparse.ArgumentParser, device, required: bool = True):
    """The inference model the command names, checked against its BDEdepth-style flags; None when no
    weights are named and ``required`` is False.

    Raises:
        FileNotFoundError, ValueError, model_zoo.ZooError: named weights missing, unusable or disagreeing.
    """
    from model import load_model

    value = chosen_weights(opts, parser, required)
    if value is None:
        return None
    path = resolve_weights(value, getattr(opts, "cache_dir", None))
    return load_model(path, device, depth_range=depth_range_flags(opts),
                      check=lambda spec: check_requested_architecture(opts, spec, path))


def spec_flags(spec, fields: Iterable[str]) -> str:
    """The training flags that build ``spec``'s networks, e.g. ``--backbone resnet --num_scales 4``."""
    flags = []
    for name in fields:
        value = getattr(spec, name)
        if name == "scales":
            value = len(value)
        flags.append(f"{(ARCHITECTURE_FLAGS | POSE_ARCHITECTURE_FLAGS)[name]} {value}")
    return " ".join(flags)


def check_weights_fit(saved, wanted, networks: Iterable[str], source: str | Path) -> None:
    """Refuse initial weights whose architecture differs from the run's, naming the flags that match them.

    Args:
        saved: the ModelSpec the weights record.
        wanted: the run's ModelSpec.
        networks: the checkpoint names being loaded (``encoder``, ``depth``, ``pose_encoder``, ``pose``, ...).

    Raises:
        ValueError: naming the differing flags and the values that would fit the weights.
    """
    networks = set(networks)
    fields = []
    if networks & {"encoder", "depth"}:
        fields += [name for name in ARCHITECTURE_FLAGS
                   if not (name.startswith("sql_") and saved.decoder != "sql" and wanted.decoder != "sql")]
    if networks & {"pose_encoder", "pose"}:
        fields += list(POSE_ARCHITECTURE_FLAGS)
    differ = [name for name in fields if getattr(saved, name) != getattr(wanted, name)]
    if ("num_layers" in differ and "pose_layers" in differ and wanted.pose_num_layers is None
            and saved.pose_layers == saved.num_layers):
        differ.remove("pose_layers")  # --num_layers sets both, as it did for these weights
    if differ:
        raise ValueError(f"{source} holds a {spec_flags(saved, differ)} network, this run asks for "
                         f"{spec_flags(wanted, differ)}: pass {spec_flags(saved, differ)} to fine-tune these weights "
                         "(or --models_to_load to take only some of its networks)")
