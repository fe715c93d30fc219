"""Small helpers shared by the scripts: files, splits, devices, seeding, colour maps."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import math
import os
import random
import sys
import tempfile
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

# Temporaries are named by run_folder's rule, so leftovers of killed writes can be found there.
from run_folder import ATOMIC_TEMPORARY_MARKER, check_writable

REPO_ROOT = Path(__file__).resolve().parent


class UserError(Exception):
    """A mistake the user can fix (a flag, a file, nothing to process); the message says how.

    Scripts raise it, or a ValueError / OSError naming the flag or file, and `run_main` prints it
    as one clean line instead of a traceback.
    """


class _CurrentStreamHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` (or ``sys.stderr``) is when a record is emitted.

    A plain StreamHandler keeps the stream it was built with; when a script's ``main`` runs
    in-process (tests, notebooks) that stream may be a capture that is closed by the next call.
    """

    def __init__(self, stream_name: str):
        super().__init__()
        self._stream_name = stream_name

    @property
    def stream(self):
        return getattr(sys, self._stream_name)

    @stream.setter
    def stream(self, _value) -> None:
        pass  # set by StreamHandler.__init__; the live stream is always looked up instead


def configure_logging(stream_name: str = "stdout") -> None:
    """Scripts' log setup: INFO messages, bare text, on the current ``sys.<stream_name>``.

    Like ``logging.basicConfig`` it does nothing when the root logger already has handlers (the
    caller configured logging: pytest, an application embedding us).
    """
    root = logging.getLogger()
    if root.handlers:
        return
    handler = _CurrentStreamHandler(stream_name)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


# What `run_main` reports as a message, not a traceback: errors whose text names the flag, the file
# and the fix. FloatingPointError is a run stopped by non-finite values (its text says what to
# change); ModuleNotFoundError an optional package that is not installed.
USER_ERRORS = (UserError, ValueError, OSError, FloatingPointError, ModuleNotFoundError)
DEBUG_FLAG = "--debug"
INTERRUPTED_STATUS = 130  # the shell's status for a process ended by Ctrl-C (128 + SIGINT)


def run_main(main: Callable[[Sequence[str]], object], argv: Sequence[str] | None = None) -> int:
    """Run a script's ``main(argv)`` and return its exit status; every script starts with
    ``sys.exit(run_main(main))``.

    A user error (`USER_ERRORS`) prints ``<script>: error: <message>`` on stderr and returns 1;
    ``--debug`` anywhere in ``argv`` (removed before ``main`` sees it) prints the exception with its
    traceback instead. Ctrl-C returns 130 with one line. Other exceptions are bugs and keep their
    traceback. ``argv`` defaults to ``sys.argv[1:]``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args
    args = [arg for arg in args if arg != DEBUG_FLAG]
    script = Path(sys.argv[0]).name or "python"
    try:
        main(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{script}: interrupted", file=sys.stderr)
        return INTERRUPTED_STATUS
    except USER_ERRORS as err:
        if debug:
            traceback.print_exc()
            return 1
        message = str(err) or type(err).__name__
        if isinstance(err, OSError) and err.filename and str(err.filename) not in message:
            message = f"{message}: {err.filename}"
        print(f"{script}: error: {message} ({DEBUG_FLAG} shows the traceback)", file=sys.stderr)
        return 1
    return 0


def positive_int(text: str) -> int:
    """argparse ``type=``: an integer >= 1 (batch sizes, counts); the error names the value."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {value})")
    return value


def non_negative_int(text: str) -> int:
    """argparse ``type=``: an integer >= 0 (worker counts, where 0 means the main process)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (got {value})")
    return value


def image_extension(text: str) -> str:
    """argparse ``type=`` of ``--ext``: ``png``, ``.PNG`` -> ``.png``."""
    return "." + text.strip().lstrip(".").lower()


def readlines(path: str | os.PathLike) -> list[str]:
    """Return the lines of a text file without line endings (carriage returns dropped too)."""
    with open(path, encoding="utf-8") as f:
        return f.read().replace("\r", "").splitlines()


def _folder_is_full(folder: Path) -> bool:
    """True when no block is left for an unprivileged writer on ``folder``'s file system."""
    try:
        return os.statvfs(folder).f_bavail == 0
    except (OSError, AttributeError):  # statvfs is POSIX-only
        return False


def describe_write_error(err: BaseException, path: Path, temporary: Path | None = None) -> OSError | None:
    """One clear OSError naming ``path`` (never a temporary) and the cause; None if not a write error.

    A write error is an OSError with an errno about ``path``, ``temporary`` or no file at all,
    found along the exception's chain of causes (writers wrap the OS's error in their own:
    torch raises RuntimeError "unexpected pos" while handling an ENOSPC), or a RuntimeError
    while the file system has no space left. Errors about other files (an input that could not
    be read inside the block) and messages without an errno are not write errors.
    The returned error keeps the errno, so it is a PermissionError, FileNotFoundError, ... as
    the original was.
    """
    chain, cause = [], err
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    ours = {None, str(path), str(temporary) if temporary else None}
    os_error = next((e for e in chain if isinstance(e, OSError) and e.errno), None)
    if os_error is not None and os_error.filename not in ours:
        return None
    code = os_error.errno if os_error is not None else None
    full = code in (errno.ENOSPC, errno.EDQUOT) or (
        code is None and isinstance(err, RuntimeError) and _folder_is_full(path.parent))
    if full:
        return OSError(errno.ENOSPC, f"no space left on the device of {path.parent} (disk full or quota "
                                     f"reached): {path} was not written and the previous version, if "
                                     "any, is unchanged; free some space or write elsewhere")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OSError(code, f"cannot write {path}: the folder {path.parent} is not writable "
                             f"({os.strerror(code)}); fix its permissions or choose another folder")
    if code is not None:
        return OSError(code, f"could not write {path}: {os_error.strerror or os_error}")
    return None


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Readers therefore see either the old file or the complete new one, never a half-written
    file, and a failure leaves nothing behind. The data is fsynced before the rename.
    ``suffix`` keeps the extension for writers that insist on it (``np.savez`` adds ``.npz``).

    Raises:
        OSError: the folder cannot be created or written, the disk is full, or the write failed;
            the message names ``path`` (not the hidden temporary) and the cause. Errors of the
            block that are not write errors pass through unchanged.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=ATOMIC_TEMPORARY_MARKER + suffix,
                                        dir=path.parent)
    except OSError as err:  # every file named here (the folder, the temporary) is part of the write
        raise (describe_write_error(err, path, err.filename and Path(err.filename)) or err) from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp creates files readable by their owner only; give the result the permissions
        # a plain open() would have (0666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except Exception as err:
        clear = describe_write_error(err, path, tmp)
        if clear is None:
            raise
        raise clear from err
    finally:
        if tmp.exists():
            tmp.unlink()


def check_output_folders(folders: Sequence[Path], flag: str = "--output_dir") -> None:
    """Create each output folder and prove it writable before any prediction is made.

    Raises:
        OSError: naming the folder that cannot be created or written.
    """
    for folder in sorted(set(folders)):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise type(err)(err.errno, f"cannot create the output folder {folder}: {err.strerror or err}; "
                                       f"choose another {flag}") from err
        check_writable(folder, flag)


def non_finite_entries(data, where: str = "") -> list[str]:
    """Paths (``sequences/09/ate_mean``, ``metrics[2]``) of every NaN or infinite float in nested data."""
    if isinstance(data, float):
        return [] if math.isfinite(data) else [where or "<value>"]
    if isinstance(data, dict):
        return [p for key, value in data.items() for p in non_finite_entries(value, f"{where}/{key}".lstrip("/"))]
    if isinstance(data, (list, tuple)):
        return [p for i, value in enumerate(data) for p in non_finite_entries(value, f"{where}[{i}]")]
    return []


def write_json(path: str | os.PathLike, data) -> None:
    """Write ``data`` as strict JSON, atomically; NaN and infinity are refused, not written as invalid JSON.

    Raises:
        ValueError: naming ``path`` and every non-finite entry (nothing is written).
    """
    bad = non_finite_entries(data)
    if bad:
        raise ValueError(f"refusing to write {path}: non-finite values at {', '.join(bad[:10])}"
                         f"{' ...' if len(bad) > 10 else ''} (JSON has no NaN or infinity)")
    import json

    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, allow_nan=False))


class UnreadableImageError(OSError):
    """An image file that is missing, truncated or not an image (the message names it)."""


JPEG_START_OF_SCAN = b"\xff\xda"
JPEG_END_OF_IMAGE = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The IEND chunk with its fixed CRC: the last 8 bytes of every complete PNG.
PNG_END_CHUNK = b"IEND\xaeB`\x82"


def check_image_complete(data: bytes, path: str | os.PathLike) -> None:
    """Raise UnreadableImageError when a JPEG or PNG file was cut short.

    OpenCV decodes a truncated JPEG as far as it goes and fills the rest with grey, with only a
    warning on stderr. A complete JPEG has its end-of-image marker after the last start-of-scan
    marker (entropy-coded data escapes 0xFF, so neither occurs inside it, and an EXIF thumbnail's
    markers come before the main image's scan); a complete PNG has the IEND chunk. Other formats
    are left to the decoder.
    """
    if data[:2] == b"\xff\xd8":
        last_scan = data.rfind(JPEG_START_OF_SCAN)
        if last_scan < 0 or data.find(JPEG_END_OF_IMAGE, last_scan) < 0:
            raise UnreadableImageError(f"image {path} is a truncated JPEG (no end-of-image marker after its "
                                       "last scan): re-copy or re-extract it")
    elif data[:8] == PNG_SIGNATURE:
        if data.rfind(PNG_END_CHUNK) < 0:
            raise UnreadableImageError(f"image {path} is a truncated PNG (no IEND chunk): re-copy or "
                                       "re-extract it")


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file as H x W x 3 uint8 RGB (greyscale expanded to three channels).

    Raises:
        UnreadableImageError (an OSError) naming the file when it is missing, truncated (JPEG
        and PNG are checked for their end markers) or not an image.
    """
    import cv2

    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise UnreadableImageError(f"could not read image {path}: {err.strerror or err}") from err
    check_image_complete(data, path)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise UnreadableImageError(f"could not read image {path} (corrupt or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def resize_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` (H x W x C) at height x width, contiguous, by area averaging.

    INTER_AREA is a box filter: it anti-aliases a downscale like the reference's PIL LANCZOS at
    a fraction of the cost. The training loader, the test sets and inference all resize this way.
    """
    import cv2

    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 3 x H x W uint8 tensor (contiguous), the layout of ``("color_uint8", f, 0)``."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()


def select_device(name: str = "auto") -> torch.device:
    """Resolve ``--device``: ``auto`` picks CUDA, then Apple MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) with one value."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict:
    """The state of every global random generator, in types a weights-only load accepts."""
    version, mt_state, gauss_next = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [version, list(mt_state), gauss_next],
        "numpy": {"kind": np_kind, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Undo ``capture_rng_state``: later random draws repeat those that followed the capture."""
    version, mt_state, gauss_next = state["python"]
    random.setstate((version, tuple(mt_state), gauss_next))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive Python and NumPy seeds from the worker's torch seed.

    torch seeds each worker from the loader's generator; Python's ``random`` and NumPy would
    otherwise repeat the same stream in every worker (and every epoch with forked workers).
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    # PyTorch already runs its workers on one intra-op thread. OpenCV's thread count is left
    # alone: cv2.setNumThreads in a forked worker deadlocked the loader (the learning test hung
    # with both workers waiting on a futex), so the loader's threads are not tuned here.


def colorize_disparity(disp: np.ndarray, cmap: str = "magma", vmax_percentile: float = 95.0) -> np.ndarray:
    """Colour-map a disparity map for display.

    Args:
        disp: H x W disparity (any positive scale).
        cmap: matplotlib colour map name.
        vmax_percentile: the upper end of the normalisation, as in monodepth2 (the minimum is
            the map's minimum), so a few very near pixels do not wash out the rest.

    Returns:
        H x W x 3 uint8 RGB image.
    """
    import matplotlib

    disp = np.asarray(disp, dtype=np.float64)
    vmin = float(disp.min())
    vmax = float(np.percentile(disp, vmax_percentile))
    if vmax <= vmin:
        vmax = vmin + 1e-6
    normalized = np.clip((disp - vmin) / (vmax - vmin), 0.0, 1.0)
    rgba = matplotlib.colormaps[cmap](normalized)
    return (rgba[..., :3] * 255).astype(np.uint8)


def format_hms(seconds: float) -> str:
    """Format seconds as ``HHhMMmSSs`` (the reference's progress-line style)."""
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:02d}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


class StepClock:
    """Seconds per optimiser step, samples/s and time left, from the mean of the last ``window`` steps.

    The duration of a step is the wall-clock time between two `tick` calls (loading, forward,
    backward, logging: everything the run waits for), so one slow or fast batch moves the
    estimate by 1/window of its difference instead of replacing it. `restart` forgets the time
    since the last tick (an epoch's evaluation is not a step), keeping the window.
    """

    def __init__(self, window: int = 50, clock: Callable[[], float] = time.perf_counter):
        self.durations: deque[float] = deque(maxlen=window)
        self.clock = clock
        self.last: float | None = None

    def restart(self) -> None:
        self.last = self.clock()

    def tick(self) -> None:
        now = self.clock()
        if self.last is not None:
            self.durations.append(now - self.last)
        self.last = now

    def seconds_per_step(self) -> float | None:
        """The window's mean step duration, or None before the first complete step."""
        return sum(self.durations) / len(self.durations) if self.durations else None

    def samples_per_second(self, samples_per_step: int) -> float:
        seconds = self.seconds_per_step()
        return samples_per_step / seconds if seconds else 0.0

    def time_left(self, steps_left: int) -> float:
        """Seconds for ``steps_left`` more steps at the window's mean pace (0 before any step)."""
        seconds = self.seconds_per_step()
        return max(steps_left, 0) * seconds if seconds else 0.0
