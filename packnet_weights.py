"""PackNet-SfM / All4Depth ``.ckpt`` files as our checkpoint payload, read without running pickled code.

A PackNet-SfM checkpoint (methods spec 1.8) is ``torch.save`` of
``{"config": yacs CfgNode, "epoch", "state_dict", "optimizer", "scheduler"}``; the state dict is
the ModelWrapper's, so its keys read ``model.depth_net.<PackNet01 key>`` and
``model.pose_net.<PoseNet key>``. Legacy ``.pth.tar`` files name the networks ``disp_network`` and
``pose_network`` (with ``model.model.`` prefixes) and keep the dropout wrapper's ``conv3.0.``
shortcut names; both are renamed as PackNet's ``backwards_state_dict`` does.

Reading. The file is first read with ``torch.load(weights_only=True)`` (`checkpoints.load_checkpoint`).
That refuses the pickled ``CfgNode``, so a ``.ckpt``/``.pth.tar`` it refuses is read again, without
torch.load, by `restricted_load`: it opens the zip archive itself and unpickles ``data.pkl`` with
`RestrictedUnpickler`, which rebuilds tensors (from the archive's raw storage records),
``OrderedDict`` and builtin containers, and turns every other pickled class or function into an
`InertObject`, a plain dict that records the name, arguments and state it was given and is never
called, imported or executed. The config therefore arrives as nested dicts of plain values (its
input size can be read), and a malicious ``__reduce__`` only produces an inert record of the call
it wanted. It reads both of torch.save's
formats (the zip archive, and the legacy stream of torch before 1.6). Should a file defeat that
reader, the error gives `TRUSTED_EXTRACTION_RECIPE`: extract ``state_dict`` once where the
file is trusted; the extracted file loads with ``weights_only=True``.

Mapping. The depth tensors go onto `networks.packnet.PackNet01` or ``PackNetSlim01`` (told apart
by ``pre_calc``'s width), the pose tensors onto ``PackNetStackedPose``; every tensor that does
not load is named (`PackNetTensorReport`): a missing or misshapen depth tensor is an error, pose
or other leftovers are left out with a warning, never silently.
"""

from __future__ import annotations

import collections
import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from checkpoints import CHECKPOINT_FORMAT, ModelSpec, load_checkpoint
from kitti_utils import MAX_EVAL_DEPTH
from released_layouts import meta_state_shapes

logger = logging.getLogger(__name__)

# PackNet-SfM's own checkpoint suffixes (its parse_test_file accepts exactly these): only they are
# worth a second, restricted read when weights_only loading refuses them.
PACKNET_SUFFIXES = (".ckpt", ".pth.tar")

# Where the networks' tensors live in a state dict, by the name PackNet gives the network (current
# names first, then the legacy .pth.tar ones).
DEPTH_PREFIXES = ("depth_net.", "disp_network.")
POSE_PREFIXES = ("pose_net.", "pose_network.")

# Our PackNet backbones by the width of pre_calc (ni, spec 1.2): PackNet01 64, PackNetSlim01 32.
BACKBONE_BY_STEM_WIDTH = {64: "packnet", 32: "packnet_slim"}
PACKNET_CLASS_NAMES = {"packnet": "PackNet01", "packnet_slim": "PackNetSlim01"}

# Used when the file's config cannot be read: the size every released KITTI model was trained at
# (configs/train_kitti.yaml). Give --image_shape to convert_weights.py (or test_simple.py) otherwise.
DEFAULT_IMAGE_SHAPE = (192, 640)

TRUSTED_EXTRACTION_RECIPE = (
    "    import torch\n"
    "    checkpoint = torch.load('MODEL.ckpt', map_location='cpu', weights_only=False)  # trusted files only\n"
    "    torch.save(checkpoint['state_dict'], 'MODEL_state_dict.pth')")


# --------------------------------------------------------------------------------------------
# Reading without executing
# --------------------------------------------------------------------------------------------


class InertObject(dict):
    """What a pickled object of a class we never import becomes: a dict, plus what it was given.

    Its items are what pickle stored into it (a yacs ``CfgNode`` is a dict, so a config's keys
    land here), ``call_args`` the arguments a ``__reduce__`` would have called the class or
    function with, ``state`` what ``__setstate__`` would have received. Nothing is called with
    them. ``pickled_global`` names the class or function ("yacs.config.CfgNode", "io.open").
    """

    pickled_global = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.call_args = (args, kwargs)
        self.state = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<inert {self.pickled_global} {dict.__repr__(self)}>"


# torch.save names a storage by its legacy typed class (GLOBAL torch.FloatStorage, ...); the bytes
# in the archive are that dtype's, in the byte order the archive records.
STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128, "UntypedStorage": torch.uint8,
}


@dataclass(frozen=True)
class _StorageType:
    """What a pickled ``torch.<X>Storage`` global stands for here: only its dtype."""

    dtype: torch.dtype


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *ignored: Any) -> torch.Tensor | None:
    """A tensor viewing a storage read out of the archive (``torch._utils._rebuild_tensor_v2``'s data part).

    ``requires_grad``, backward hooks and metadata are dropped: weights need none of them, and
    hooks are objects the file chose. ``as_strided`` refuses a view outside the storage; views of
    one storage share it, as with ``torch.load``.
    """
    if storage is None:  # the first pass over a legacy file builds no tensor
        return None
    if not isinstance(storage, torch.Tensor) or storage.dim() != 1:
        raise pickle.UnpicklingError(f"a tensor whose storage is a {type(storage).__name__}, not a storage")
    if not (isinstance(storage_offset, int) and all(isinstance(v, int) for v in (*size, *stride))):
        raise pickle.UnpicklingError("a tensor whose offset, size or stride is not made of integers")
    return torch.as_strided(storage, tuple(size), tuple(stride), storage_offset)


def _rebuild_parameter(data: Any, *ignored: Any) -> Any:
    """An ``nn.Parameter`` as its plain tensor (its hooks are dropped, as for tensors)."""
    return data


# Globals rebuilt for real: tensors, and containers whose constructors only build data.
_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch", "Size"): torch.Size,
    # Protocol 2 pickles sets and the like by calling their type; these only build data.
    **{("builtins", kind.__name__): kind for kind in (set, frozenset, tuple, list, dict, int, float, complex,
                                                       bool, str)},
    **{("torch", name): _StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds tensors and plain containers of a torch file; every other global is inert.

    `find_class` returns the real object only for ``_ALLOWED_GLOBALS`` and dtypes
    (``torch.float32``); any other class or function becomes a fresh `InertObject` subclass
    carrying its name, so ``REDUCE``/``NEWOBJ``/``BUILD`` opcodes only fill a dict. A storage
    (persistent id ``("storage", <X>Storage, key, location, numel[, view])``) is whatever
    ``storage_for(dtype, key, rest of the id)`` returns: a 1-D tensor of that dtype read from
    the file, or None in a first pass that only finds where a pickle ends.

    Args:
        file: the pickle stream.
        storage_for: (dtype, key, (location, numel, ...)) -> 1-D tensor or None.
    """

    def __init__(self, file, storage_for: Callable[[torch.dtype, str, tuple], torch.Tensor | None]) -> None:
        super().__init__(file)
        self._storage_for = storage_for

    def find_class(self, module: str, name: str) -> Any:
        # torch.save writes protocol 2, which spells builtins with Python 2's module name.
        module = "builtins" if module == "__builtin__" else module
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is not None:
            return allowed
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return type(str(name), (InertObject,), {"pickled_global": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> torch.Tensor | None:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] in ("storage", b"storage")
                and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        return self._storage_for(pid[1].dtype, str(pid[2]), pid[3:])


def _storage_from_bytes(raw: bytes, dtype: torch.dtype, key: str) -> torch.Tensor:
    """A 1-D tensor over ``raw`` (little-endian values of ``dtype``); the bytes are not copied again."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    if len(raw) % itemsize:
        raise pickle.UnpicklingError(f"storage {key} holds {len(raw)} bytes, not whole {dtype} values")
    return torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)


def _unreadable(path: str | Path, why: str) -> ValueError:
    return ValueError(f"{path} could not be read with the restricted reader (which never runs pickled code): "
                      f"{why}. If the file comes from a source you trust, extract its weights once with\n"
                      f"{TRUSTED_EXTRACTION_RECIPE}\nand pass the extracted file instead")


# What a file in torch's legacy format (torch.save before 1.6, or _use_new_zipfile_serialization=False)
# starts with: three small pickles, the magic number, the format version and a dict of system facts.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
_LEGACY_SIZE_BYTES = 8  # each storage's element count precedes its bytes as a little-endian int64
_READ_ERRORS = (pickle.UnpicklingError, KeyError, RuntimeError, TypeError, ValueError, EOFError, IndexError)


def _load_zip(path: str | Path) -> Any:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
        if len(pickles) != 1:
            raise _unreadable(path, f"expected one data.pkl in the archive, found {len(pickles)}")
        prefix = pickles[0][:-len("data.pkl")]
        if f"{prefix}byteorder" in archive.namelist() and archive.read(f"{prefix}byteorder") != b"little":
            raise _unreadable(path, "its tensors are stored big-endian")
        storages: dict[str, torch.Tensor] = {}

        def storage_for(dtype: torch.dtype, key: str, rest: tuple) -> torch.Tensor:
            if key not in storages:
                storages[key] = _storage_from_bytes(archive.read(f"{prefix}data/{key}"), dtype, key)
            return storages[key]

        with archive.open(pickles[0]) as stream:
            return RestrictedUnpickler(stream, storage_for).load()


def _load_legacy(path: str | Path) -> Any:
    """torch's legacy format: header pickles, the object pickle, the storage keys, then raw storages.

    The object pickle refers to storages that follow it, so it is read twice: once to record each
    storage's dtype and find where the pickle ends (tensors are not built), then for real.
    """
    import io

    stream = io.BytesIO(Path(path).read_bytes())

    def plain_pickle() -> Any:  # the header and key-list pickles hold no storage
        return RestrictedUnpickler(stream, lambda *ignored: None).load()

    if plain_pickle() != LEGACY_MAGIC_NUMBER or plain_pickle() != LEGACY_PROTOCOL_VERSION:
        raise _unreadable(path, "it is neither a zip archive nor a torch file of the legacy format")
    system = plain_pickle()
    if not isinstance(system, dict) or system.get("little_endian") is not True:
        raise _unreadable(path, "its tensors are stored big-endian")
    start = stream.tell()
    dtypes: dict[str, torch.dtype] = {}

    def record(dtype: torch.dtype, key: str, rest: tuple) -> None:
        dtypes[key] = dtype

    RestrictedUnpickler(stream, record).load()
    keys = plain_pickle()
    if not isinstance(keys, list) or set(map(str, keys)) != set(dtypes):
        raise _unreadable(path, "its storage list does not match the storages its tensors use")
    roots: dict[str, torch.Tensor] = {}
    for key in map(str, keys):
        count = int.from_bytes(stream.read(_LEGACY_SIZE_BYTES), "little", signed=True)
        nbytes = count * torch.empty((), dtype=dtypes[key]).element_size()
        raw = stream.read(nbytes) if count >= 0 else b""
        if count < 0 or len(raw) != nbytes:
            raise _unreadable(path, f"storage {key} is truncated")
        roots[key] = _storage_from_bytes(raw, dtypes[key], key)

    def storage_for(dtype: torch.dtype, key: str, rest: tuple) -> torch.Tensor:
        root = roots[key]
        view = rest[2] if len(rest) > 2 else None  # (view key, offset, size) in elements, old torch
        if view is None:
            return root
        _, offset, size = view
        if not (isinstance(offset, int) and isinstance(size, int) and 0 <= offset <= offset + size <= len(root)):
            raise pickle.UnpicklingError(f"storage view {view!r:.80} outside storage {key}")
        return root[offset:offset + size]

    stream.seek(start)
    return RestrictedUnpickler(stream, storage_for).load()


def restricted_load(path: str | Path) -> Any:
    """Read a torch file with `RestrictedUnpickler`, onto the CPU, never through torch.load.

    Both of torch.save's formats: the zip archive (torch 1.6 on) and the legacy stream.

    Raises:
        ValueError: neither format, big-endian data, truncated storages, or a pickle the
            restricted reader cannot rebuild; the message gives the trusted-extraction recipe.
    """
    import zipfile

    try:
        return _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    except _READ_ERRORS as err:
        raise _unreadable(path, f"{type(err).__name__}: {err}") from err


def has_packnet_suffix(path: str | Path) -> bool:
    return str(path).endswith(PACKNET_SUFFIXES)


def _starts_like_a_pickle(path: str | Path) -> bool:
    with open(path, "rb") as f:
        return f.read(1) == pickle.PROTO


def load_packnet_file(path: str | Path) -> dict:
    """The dict stored in a PackNet ``.ckpt`` / ``.pth.tar``: ``weights_only`` first, else restricted.

    Raises:
        ValueError: unreadable either way (the message gives the trusted-extraction recipe), or
            not a dict.
    """
    try:
        raw = load_checkpoint(path)
    except ValueError as err:
        legacy = "does not start like one" in str(err) and _starts_like_a_pickle(path)
        if not legacy and "holds Python objects other than tensors" not in str(err):
            raise
        # PackNet's pickled config, or torch's legacy format (which load_checkpoint does not read).
        logger.info("%s holds pickled objects (PackNet's config) or is in torch's legacy format; reading it "
                    "with the restricted unpickler, which rebuilds only tensors and plain values", path)
        raw = restricted_load(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path} does not hold a dict (PackNet checkpoints hold 'state_dict' and 'config')")
    return raw


# --------------------------------------------------------------------------------------------
# Mapping onto our networks
# --------------------------------------------------------------------------------------------


@dataclass
class PackNetTensorReport:
    """What happened to every tensor of a PackNet state dict.

    Attributes:
        loaded: {"depth": n, "pose": n} tensors mapped onto our networks.
        expected: {"depth": n, "pose": n} tensors our networks have.
        left_out: names of tensors of the file that were not loaded (other networks, a pose net
            that does not fit), with the reason.
        renamed: legacy names that were renamed (old -> new).
    """

    loaded: dict = field(default_factory=dict)
    expected: dict = field(default_factory=dict)
    left_out: dict = field(default_factory=dict)
    renamed: dict = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{name} {self.loaded.get(name, 0)}/{self.expected[name]} tensors" for name in self.expected]
        text = "loaded " + ", ".join(parts)
        if self.left_out:
            text += f"; {len(self.left_out)} tensor(s) left out: " + ", ".join(
                f"{k} ({why})" for k, why in sorted(self.left_out.items()))
        return text


def packnet_state_dict(raw: dict) -> dict | None:
    """The ModelWrapper state dict of a PackNet file (``raw["state_dict"]`` or ``raw`` itself), or None."""
    state = raw.get("state_dict", raw)
    if isinstance(state, dict) and any(_network_of(k)[0] == "depth" for k in state if isinstance(k, str)):
        return state
    return None


def _network_of(key: str) -> tuple[str | None, str]:
    """("depth" | "pose" | None, the key inside that network) of a ModelWrapper key."""
    for network, prefixes in (("depth", DEPTH_PREFIXES), ("pose", POSE_PREFIXES)):
        for prefix in prefixes:
            index = key.find(prefix)
            if index == 0 or (index > 0 and key[index - 1] == "."):
                return network, key[index + len(prefix):]
    return None, key


def _legacy_depth_name(key: str) -> str:
    """PackNet's dropout wrapper named a residual shortcut ``conv3.0.*``; ours (no dropout) ``conv3.*``."""
    return re.sub(r"(^|\.)conv3\.0\.(weight|bias)$", r"\1conv3.\2", key)


def _config_value(config: Any, *keys: str) -> Any:
    """``config[k1][k2]...`` of a config read as nested dicts, or None when any level is missing."""
    for key in keys:
        if not isinstance(config, dict) or key not in config:
            return None
        config = config[key]
    return config


def image_shape_from_config(config: Any, source: str) -> tuple[int, int] | None:
    """``config.datasets.augmentation.image_shape`` as (H, W), when it is two positive integers."""
    shape = _config_value(config, "datasets", "augmentation", "image_shape")
    if shape is None:
        return None
    if (isinstance(shape, (list, tuple)) and len(shape) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
        return int(shape[0]), int(shape[1])
    logger.warning("%s: config.datasets.augmentation.image_shape is %r, not (H, W); ignoring it", source, shape)
    return None


def _split_state(state: dict, source: str, report: PackNetTensorReport) -> tuple[dict, dict]:
    """Depth and pose tensors under our names; everything else recorded as left out."""
    depth, pose = {}, {}
    for key, value in state.items():
        network, inner = _network_of(str(key))
        if network is None:
            report.left_out[str(key)] = "not the depth or pose network"
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{source}: {key} holds a {getattr(value, 'pickled_global', type(value).__name__)} "
                             "object where a tensor should be; refusing the file")
        if network == "depth":
            renamed = _legacy_depth_name(inner)
            if renamed != inner:
                report.renamed[inner] = renamed
            if renamed in depth:
                raise ValueError(f"{source}: two depth tensors map onto {renamed}")
            depth[renamed] = value
        else:
            pose[inner] = value
    return depth, pose


def _check_depth(depth: dict, source: str, report: PackNetTensorReport) -> str:
    """The backbone ("packnet" / "packnet_slim") the depth tensors fit exactly; raises otherwise."""
    from networks.packnet import PackNet01, PackNetSlim01

    stem = depth.get("pre_calc.conv_base.weight")
    if stem is None:
        raise ValueError(f"{source}: no depth_net.pre_calc.conv_base.weight: not a PackNet01/PackNetSlim01 "
                         "depth network")
    backbone = BACKBONE_BY_STEM_WIDTH.get(int(stem.shape[0]))
    if backbone is None:
        raise ValueError(f"{source}: pre_calc has {stem.shape[0]} channels; PackNet01 has 64 and PackNetSlim01 32")
    expected = meta_state_shapes(PackNet01 if backbone == "packnet" else PackNetSlim01)
    name = PACKNET_CLASS_NAMES[backbone]
    missing = sorted(set(expected) - set(depth))
    unexpected = sorted(set(depth) - set(expected))
    misshapen = sorted(f"{k} {tuple(depth[k].shape)} (ours {tuple(expected[k])})"
                       for k in set(depth) & set(expected) if depth[k].shape != expected[k])
    if missing or unexpected or misshapen:
        hint = ""
        if any(k.startswith("unpack5.") for k in misshapen):
            hint = f" (a version '1B' {name}, which adds skips, is not supported: only '1A')"
        problems = [f"{len(v)} {what}: {', '.join(v[:12])}{' ...' if len(v) > 12 else ''}"
                    for what, v in (("missing", missing), ("unexpected", unexpected),
                                    ("with another shape", misshapen)) if v]
        raise ValueError(f"{source}: the depth tensors do not fit {name}{hint}: " + "; ".join(problems))
    report.loaded["depth"] = report.expected["depth"] = len(expected)
    return backbone


def _frame_ids(config: Any, num_contexts: int) -> list[int] | None:
    """Target then contexts: the config's back/forward context when it agrees, else -1, 1 for two."""
    back = _config_value(config, "datasets", "train", "back_context")
    forward = _config_value(config, "datasets", "train", "forward_context")
    if isinstance(back, int) and isinstance(forward, int) and back + forward == num_contexts:
        return [0] + [-i for i in range(1, back + 1)] + list(range(1, forward + 1))
    if num_contexts == 2:
        return [0, -1, 1]
    return None


def _check_pose(pose: dict, config: Any, source: str, report: PackNetTensorReport) -> tuple[dict, list[int]] | None:
    """The pose tensors and frame ids when they fit ``PackNetStackedPose`` exactly; else None (named)."""
    from networks.packnet import PackNetStackedPose

    if not pose:
        return None
    first = pose.get("conv1.0.weight")
    num_contexts = int(first.shape[1]) // 3 - 1 if first is not None and first.dim() == 4 else 0
    frame_ids = _frame_ids(config, num_contexts) if num_contexts >= 1 else None
    problem = None
    if frame_ids is None:
        problem = f"a pose net for {num_contexts} context frames whose order the config does not give"
    else:
        expected = meta_state_shapes(lambda: PackNetStackedPose(num_contexts))
        report.expected["pose"] = len(expected)
        missing = sorted(set(expected) - set(pose))
        unexpected = sorted(set(pose) - set(expected))
        misshapen = sorted(k for k in set(pose) & set(expected) if pose[k].shape != expected[k])
        if missing or unexpected or misshapen:
            problem = (f"it does not fit PackNet's PoseNet (missing {missing}, unexpected {unexpected}, "
                       f"other shapes {misshapen})")
    if problem:
        logger.warning("%s: the pose network is left out: %s", source, problem)
        for key in pose:
            report.left_out[f"pose_net.{key}"] = "pose net left out"
        report.loaded["pose"] = 0
        return None
    report.loaded["pose"] = len(pose)
    return pose, frame_ids


def convert_packnet_checkpoint(raw: dict, source: str, image_shape: tuple[int, int] | None = None
                               ) -> tuple[dict, PackNetTensorReport]:
    """A PackNet checkpoint's contents (or its bare state dict) as our payload, with the tensor report.

    Args:
        raw: what `load_packnet_file` returned.
        source: the file, for messages.
        image_shape: (H, W) the model runs at; None: the config's ``image_shape``, else
            ``DEFAULT_IMAGE_SHAPE`` (with a warning).

    Returns:
        (payload, report): ``{"format", "model_spec", "depth", ["pose"]}`` ready for
        `model.SelfSupervisedDepth.load_state_dicts`, and what loaded.

    Raises:
        ValueError: no PackNet depth network, a depth tensor missing, extra or misshapen, or a
            non-tensor where a tensor should be (each named).
    """
    state = packnet_state_dict(raw)
    if state is None:
        raise ValueError(f"{source} holds no PackNet state dict (no model.depth_net.* tensors)")
    config = raw.get("config") if state is not raw else None
    report = PackNetTensorReport()
    depth, pose = _split_state(state, source, report)
    backbone = _check_depth(depth, source, report)
    configured = _config_value(config, "model", "depth_net", "name")
    if isinstance(configured, str) and configured and configured != PACKNET_CLASS_NAMES[backbone]:
        logger.warning("%s: the config names depth network %s, the tensors are %s's", source, configured,
                       PACKNET_CLASS_NAMES[backbone])
    if image_shape is None:
        image_shape = image_shape_from_config(config, source)
        if image_shape is None:
            image_shape = DEFAULT_IMAGE_SHAPE
            logger.warning("%s: no readable config.datasets.augmentation.image_shape; assuming %d x %d (give "
                           "--image_shape H W to convert_weights.py or test_simple.py otherwise)", source,
                           *image_shape)
    pose_part = _check_pose(pose, config, source, report)
    from networks.packnet import MIN_DEPTH

    # The heads' own bound (0.5 m, no upper cap), and PackNet's evaluation cap as max_depth.
    spec = ModelSpec(backbone=backbone, decoder="packnet", height=int(image_shape[0]), width=int(image_shape[1]),
                     min_depth=MIN_DEPTH, max_depth=MAX_EVAL_DEPTH, scales=[0, 1, 2, 3],
                     pose_model_type="packnet", pose_model_input="all")
    payload = {"format": CHECKPOINT_FORMAT, "depth": depth}
    if pose_part is not None:
        payload["pose"], spec.frame_ids = pose_part
    payload["model_spec"] = spec.to_dict()
    (logger.warning if report.left_out else logger.info)("%s: %s", source, report.summary())
    return payload, report


def load_packnet_checkpoint(path: str | Path, image_shape: tuple[int, int] | None = None) -> dict:
    """A PackNet-SfM ``.ckpt`` / ``.pth.tar`` (or its extracted state dict) as our payload."""
    payload, _ = convert_packnet_checkpoint(load_packnet_file(path), str(path), image_shape)
    return payload
