"""Released models by name: Monodepth2's nine and BDEdepth's four, fetched on first use and verified.

    python test_simple.py --image_path img.png --model_name mono_640x192

``fetch_zoo_model(name)`` returns a checkpoint of this toolkit (``<cache>/<name>.pth``). The first
time a name is used its archive is downloaded from the URL its authors published (`ZOO`) into the
cache folder (``$MONODEPTHKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/monodepthkit/models``, else
``~/.cache/monodepthkit/models``; ``--cache_dir`` on the command line), with a progress bar, to a
temporary file renamed only when complete. The archive is then verified:

- against the MD5 its authors published (Monodepth2's, from its ``download_model_if_doesnt_exist``),
  and its size when one is known;
- as a zip archive: every member's CRC (``ZipFile.testzip``), and the members the model needs;
- against the SHA-256 recorded when an archive of that name was first accepted
  (``<cache>/accepted.json``), so a file that changes later (upstream, on disk, or a copy put
  there by hand) is noticed even where no checksum is published (BDEdepth's);
- after conversion (`released_weights`), against the architecture the zoo lists: backbone, depth,
  decoder, input size and stereo training, and every tensor's shape against the network built
  from them.

It is converted once; later uses read the converted checkpoint, whose own checksum
`checkpoints.load_checkpoint` verifies. Offline, the error names the URL and the path to save the
archive to by hand. Nothing is ever executed from the files (`torch.load(weights_only=True)`).

BDEdepth publishes its weights as one shared Dropbox folder (no per-file link, no checksum): the
first BDEdepth name fetches that folder as one zip (``bdedepth_weights.zip``, all of its files) and
every BDEdepth name is converted from it.
"""

from __future__ import annotations

import datetime
import difflib
import hashlib
import json
import logging
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from run_folder import ATOMIC_TEMPORARY_MARKER
from utils import atomic_output

logger = logging.getLogger(__name__)

CACHE_ENV = "MONODEPTHKIT_CACHE_DIR"
ACCEPTED_FILE = "accepted.json"
MONODEPTH2_FILES = ("encoder.pth", "depth.pth", "pose_encoder.pth", "pose.pth")

MONODEPTH2_URL = "https://storage.googleapis.com/niantic-lon-static/research/monodepth2/"
BDEDEPTH_FOLDER_URL = "https://www.dropbox.com/scl/fo/0zeefm9e4kv0fzumqp490/h?rlkey=ev09rshvarnoyj9kr1qymkppl&dl=1"
BDEDEPTH_ARCHIVE = "bdedepth_weights.zip"

# Seconds without data before a download is abandoned (a stalled link fails instead of hanging).
DOWNLOAD_TIMEOUT_S = 60.0
CHUNK_BYTES = 1 << 20


class ZooError(OSError):
    """A released model that cannot be fetched, verified or converted; the message says what to do."""


@dataclass(frozen=True)
class ZooModel:
    """One released model: where it lives and what it must be.

    Attributes:
        name: the zoo name (``--model_name``).
        origin: ``monodepth2`` (a zip of a model folder) or ``bdedepth`` (one ``.pth`` in a folder archive).
        url: the archive's public URL.
        archive: the archive's file name in the cache (shared by every model of one archive).
        members: the files the model needs from the archive (matched by base name).
        optional_members: files taken too when present (Monodepth2's pose networks).
        md5: the checksum the authors published, or None.
        size: the archive's size in bytes when known, or None.
        architecture: ModelSpec fields the converted model must have.
    """

    name: str
    origin: str
    url: str
    archive: str
    members: tuple[str, ...]
    optional_members: tuple[str, ...] = ()
    md5: str | None = None
    size: int | None = None
    architecture: dict = field(default_factory=dict)


def _monodepth2(name: str, md5: str, width: int, height: int, stereo: bool) -> ZooModel:
    # Monodepth2's URLs escape the "+" of mono+stereo.
    return ZooModel(name, "monodepth2", MONODEPTH2_URL + name.replace("+", "%2B") + ".zip", f"{name}.zip",
                    MONODEPTH2_FILES[:2], MONODEPTH2_FILES[2:], md5=md5,
                    architecture={"backbone": "resnet", "num_layers": 18, "decoder": "monodepth2", "height": height,
                                  "width": width, "use_stereo": stereo, "scales": [0, 1, 2, 3]})


def _bdedepth(name: str, backbone: str, dataset: str, width: int) -> ZooModel:
    return ZooModel(name, "bdedepth", BDEDEPTH_FOLDER_URL, BDEDEPTH_ARCHIVE, (f"{name}.pth",),
                    architecture={"backbone": backbone, "num_layers": 18, "decoder": "bdedepth", "height": 192,
                                  "width": width, "use_stereo": False})


# Monodepth2's README table (MD5s from its utils.py) and BDEdepth's README "Weights" list.
ZOO: dict[str, ZooModel] = {model.name: model for model in (
    _monodepth2("mono_640x192", "a964b8356e08a02d009609d9e3928f7c", 640, 192, False),
    _monodepth2("stereo_640x192", "3dfb76bcff0786e4ec07ac00f658dd07", 640, 192, True),
    _monodepth2("mono+stereo_640x192", "c024d69012485ed05d7eaa9617a96b81", 640, 192, True),
    _monodepth2("mono_no_pt_640x192", "9c2f071e35027c895a4728358ffc913a", 640, 192, False),
    _monodepth2("stereo_no_pt_640x192", "41ec2de112905f85541ac33a854742d1", 640, 192, True),
    _monodepth2("mono+stereo_no_pt_640x192", "46c3b824f541d143a45c37df65fbab0a", 640, 192, True),
    _monodepth2("mono_1024x320", "0ab0766efdfeea89a0d9ea8ba90e1e63", 1024, 320, False),
    _monodepth2("stereo_1024x320", "afc2f2126d70cf3fdf26b550898b501a", 1024, 320, True),
    _monodepth2("mono+stereo_1024x320", "cdc5fc9b23513c07d5b19235d9ef08f7", 1024, 320, True),
    _bdedepth("kitti_hrnet18_640x192", "hrnet", "kitti", 640),
    _bdedepth("kitti_resnet18_640x192", "resnet", "kitti", 640),
    _bdedepth("cs_hrnet18_512x192", "hrnet", "cityscapes", 512),
    _bdedepth("cs_resnet18_512x192", "resnet", "cityscapes", 512),
)}


def default_cache_dir() -> Path:
    """``$MONODEPTHKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/monodepthkit/models``, else ``~/.cache/...``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "monodepthkit" / "models"


def zoo_name_of(value: str) -> str | None:
    """The zoo name ``value`` spells: the name itself, or a path ending in it (``pretrained/mono_640x192``,
    ``./kitti_hrnet18_640x192.pth``, ``mono_640x192.zip``); None when it names no released model."""
    if value in ZOO:
        return value
    name = Path(value).name
    for suffix in (".pth", ".zip"):
        name = name[:-len(suffix)] if name.endswith(suffix) else name
    return name if name in ZOO else None


def suggest_names(value: str) -> str:
    """``" (did you mean X?)"`` for a near miss of a zoo name, else an empty string."""
    close = difflib.get_close_matches(Path(value).stem, list(ZOO), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def describe_zoo() -> str:
    """The released names, one line per origin, for help texts and errors."""
    by_origin: dict[str, list[str]] = {}
    for model in ZOO.values():
        by_origin.setdefault(model.origin, []).append(model.name)
    return "; ".join(f"{origin}: {', '.join(names)}" for origin, names in by_origin.items())


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _by_hand(model: ZooModel, archive: Path) -> str:
    return (f"download {model.url} by hand (a browser works) and save it as {archive}; or pass the model's own "
            f"files with --pretrained_path")


def download(url: str, destination: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Stream ``url`` into the file ``destination`` with a progress bar (on a terminal).

    Raises:
        OSError, urllib.error.URLError: unreachable, interrupted, or shorter than announced.
    """
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        logger.info("Downloading %s%s", url, f" ({total / 1e6:.1f} MB)" if total else "")
        received = 0
        with open(destination, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc="download",
                                                 disable=None) as bar:
            for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
    if total is not None and received != total:
        raise OSError(f"the download stopped after {received} of {total} bytes")


def download_verified_archive(model: ZooModel, archive: Path, cache_dir: Path, timeout: float) -> dict[str, str]:
    """Download ``model``'s archive to a temporary file beside ``archive``, verify it, then rename it
    into place: a failed or rejected download leaves nothing behind. Returns `verify_archive`'s map.

    Raises:
        ZooError: unreachable (naming the URL and where to put the file by hand), or rejected.
    """
    archive.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=archive.parent, prefix=f".{archive.name}.", suffix=ATOMIC_TEMPORARY_MARKER)
    os.close(fd)
    temporary = Path(name)
    try:
        try:
            download(model.url, temporary, timeout)
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", None) or err
            raise ZooError(f"could not download the released model {model.name} from {model.url} ({reason}); "
                           f"{_by_hand(model, archive)}") from err
        members = verify_archive(model, temporary, cache_dir, archive.name)
        os.replace(temporary, archive)
        return members
    finally:
        temporary.unlink(missing_ok=True)


def _read_accepted(cache_dir: Path) -> dict:
    path = cache_dir / ACCEPTED_FILE
    try:
        accepted = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise ZooError(f"{path} is unreadable ({err}): it records the archives accepted so far; delete it to "
                       "accept the archives now in the cache afresh") from err
    return accepted if isinstance(accepted, dict) else {}


def verify_archive(model: ZooModel, archive: Path, cache_dir: Path, record_name: str | None = None) -> dict[str, str]:
    """Check ``archive`` (checksum, size, zip integrity, recorded SHA-256); return {file name: member}.

    The first archive accepted under its name (``record_name``, default the file's) has its SHA-256
    recorded in ``accepted.json``.

    Raises:
        ZooError: naming what failed and what to do.
    """
    record_name = record_name or archive.name
    destination = cache_dir / record_name
    label = destination if Path(archive) == destination else f"the download of {model.url}"
    fix = f"delete {destination} (if there) and run again to download it afresh, or {_by_hand(model, destination)}"
    if model.size is not None and archive.stat().st_size != model.size:
        raise ZooError(f"{label} is {archive.stat().st_size} bytes, {model.name}'s archive is {model.size}: {fix}")
    if model.md5 is not None and file_digest(archive, "md5") != model.md5:
        raise ZooError(f"{label} does not match the MD5 its authors published for {model.name} "
                       f"({model.md5}): it is damaged or not that file; {fix}")
    try:
        with zipfile.ZipFile(archive) as zf:
            damaged = zf.testzip()
            members = {Path(info.filename).name: info.filename for info in zf.infolist() if not info.is_dir()}
    except (zipfile.BadZipFile, OSError) as err:
        raise ZooError(f"{label} is not a readable zip archive ({err}): {fix}") from err
    if damaged is not None:
        raise ZooError(f"{label} is damaged: its member {damaged} fails its CRC check; {fix}")
    missing = [name for name in model.members if name not in members]
    if missing:
        raise ZooError(f"{label} lacks {', '.join(missing)} (it holds {', '.join(sorted(members)) or 'nothing'}): "
                       f"it is not {model.name}'s archive; {fix}")
    digest = file_digest(archive, "sha256")
    accepted = _read_accepted(cache_dir)
    record = accepted.get(record_name)
    if record is not None and record.get("sha256") != digest:
        raise ZooError(f"{destination} (SHA-256 {digest}) is not the archive accepted under that name on "
                       f"{record.get('accepted', '?')} (SHA-256 {record.get('sha256')}): the file changed upstream, "
                       f"on disk or in a copy. Check it, then delete its entry from {cache_dir / ACCEPTED_FILE} to "
                       "accept it, or delete the archive to download it again")
    if record is None:
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        accepted[record_name] = {"sha256": digest, "size": archive.stat().st_size, "url": model.url, "accepted": now}
        with atomic_output(cache_dir / ACCEPTED_FILE, suffix=".json") as tmp:
            tmp.write_text(json.dumps(accepted, indent=2, sort_keys=True))
        logger.info("Accepted %s (SHA-256 %s, recorded in %s)", destination, digest, cache_dir / ACCEPTED_FILE)
    return members


def check_architecture(model: ZooModel, payload: dict, source: str) -> None:
    """The converted model is what the zoo lists, and every tensor has the shape its network needs.

    Raises:
        ZooError: naming the first differing settings or tensors.
    """
    from checkpoints import spec_from_checkpoint
    from model import SelfSupervisedDepth, state_mismatches, summarize_mismatches

    spec = spec_from_checkpoint(payload, source)
    differ = [f"{key} {getattr(spec, key)!r} (expected {value!r})" for key, value in model.architecture.items()
              if getattr(spec, key) != value]
    if differ:
        raise ZooError(f"{source} is not {model.name}: its {', '.join(differ)}")
    built = SelfSupervisedDepth(spec, use_pose_network="pose" in payload)
    problems = [problem for name, module in built.checkpoint_modules().items()
                for problem in state_mismatches(module, payload.get(name, {}), f"{name}.")]
    if problems:
        raise ZooError(f"{source} does not fit {model.name}'s architecture ({summarize_mismatches(problems)})")


def convert_archive(model: ZooModel, archive: Path, members: dict[str, str], cache_dir: Path) -> dict:
    """The model's files taken out of the archive (by name, never by the archive's paths) and converted."""
    from checkpoints import load_checkpoint
    from released_weights import convert_bdedepth, load_monodepth2_folder

    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=f".{model.name}.") as folder:
        with zipfile.ZipFile(archive) as zf:
            for name in model.members + model.optional_members:
                if name in members:
                    (Path(folder) / name).write_bytes(zf.read(members[name]))
        source = f"{archive} ({model.name})"
        try:
            if model.origin == "monodepth2":
                return load_monodepth2_folder(folder)
            return convert_bdedepth(load_checkpoint(Path(folder) / model.members[0]), source)
        except (ValueError, FileNotFoundError) as err:
            raise ZooError(f"{source} cannot be converted: {err}") from err


def fetch_zoo_model(name: str, cache_dir: str | Path | None = None, registry: dict[str, ZooModel] | None = None,
                    timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """The checkpoint of released model ``name``, downloading, verifying and converting it on first use.

    Args:
        name: a key of the registry (`ZOO`).
        cache_dir: where archives and converted checkpoints live (default `default_cache_dir`).
        registry: the table of models (tests pass their own).
        timeout: seconds a download may stall.

    Raises:
        ZooError: unknown name, unreachable URL (the message names it and the path to save the file
            to by hand), or a file that fails verification.
    """
    registry = ZOO if registry is None else registry
    if name not in registry:
        raise ZooError(f"{name!r} is not a released model{suggest_names(name)}; the names are {describe_zoo()}")
    model = registry[name]
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    converted = cache / f"{name}.pth"
    if converted.is_file():
        return converted
    archive = cache / model.archive
    if archive.is_file():  # downloaded for another model of the archive, or put there by hand
        members = verify_archive(model, archive, cache)
    else:
        members = download_verified_archive(model, archive, cache, timeout)
    payload = convert_archive(model, archive, members, cache)
    check_architecture(model, payload, f"{archive} ({name})")
    payload["zoo"] = {"name": name, "url": model.url, "archive_sha256": _read_accepted(cache)[archive.name]["sha256"]}
    from checkpoints import save_checkpoint

    save_checkpoint(converted, payload)
    logger.info("Converted %s into %s", name, converted)
    return converted

