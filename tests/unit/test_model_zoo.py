"""The model zoo against a local HTTP server serving archives built here in the released layouts."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path

import pytest
import torch

import model_zoo
from checkpoints import load_checkpoint
from model import load_model
from model_zoo import ZOO, ZooError, fetch_zoo_model
from networks import build_depth_network
from released_weights import to_checkpoint_payload
from tests.unit.test_released_weights import md2_depth_shapes, md2_encoder, random_state

MONODEPTH2_NAMES = ["mono_640x192", "stereo_640x192", "mono+stereo_640x192", "mono_no_pt_640x192",
                    "stereo_no_pt_640x192", "mono+stereo_no_pt_640x192", "mono_1024x320", "stereo_1024x320",
                    "mono+stereo_1024x320"]
BDEDEPTH_NAMES = ["kitti_hrnet18_640x192", "kitti_resnet18_640x192", "cs_hrnet18_512x192", "cs_resnet18_512x192"]


def write_md2_depth_folder(folder: Path, seed: int = 0, use_stereo: bool = False) -> Path:
    """A Monodepth2 model folder without its pose networks (half the bytes; they are optional)."""
    folder.mkdir(parents=True)
    torch.save({**md2_encoder(1, seed), "height": 192, "width": 640, "use_stereo": use_stereo}, folder / "encoder.pth")
    torch.save(random_state(md2_depth_shapes(), seed + 1), folder / "depth.pth")
    return folder


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> bytes:
    """Zip every file of ``folder`` (stored, as the released archives' .pth files gain nothing from deflate)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, prefix + path.name)
    return archive.read_bytes()


@pytest.fixture(scope="module")
def md2_release(tmp_path_factory):
    """(the model folder, its zip's bytes) in Monodepth2's released layout."""
    root = tmp_path_factory.mktemp("md2_release")
    folder = write_md2_depth_folder(root / "mono_640x192")
    return folder, zip_folder(folder, root / "mono_640x192.zip")


def served_entry(base: str, www: Path, data: bytes, name: str = "mono_640x192", md5: str | None = "published",
                 **changes) -> dict:
    """A one-model registry: ``name`` as the zoo lists it, its archive served from ``www``."""
    (www / f"{name}.zip").write_bytes(data)
    md5 = hashlib.md5(data).hexdigest() if md5 == "published" else md5
    return {name: dataclasses.replace(ZOO[name], url=f"{base}{name}.zip", md5=md5, **changes)}


def disparity(path) -> torch.Tensor:
    with torch.no_grad():
        return load_model(path).networks["depth"](torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))[
            ("disp", 0)]


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.name.startswith("."))


def test_the_zoo_lists_monodepth2s_nine_models_and_bdedepths_four():
    assert [name for name, model in ZOO.items() if model.origin == "monodepth2"] == MONODEPTH2_NAMES
    assert [name for name, model in ZOO.items() if model.origin == "bdedepth"] == BDEDEPTH_NAMES
    assert ZOO["mono+stereo_640x192"].url == \
        "https://storage.googleapis.com/niantic-lon-static/research/monodepth2/mono%2Bstereo_640x192.zip"
    assert ZOO["mono_640x192"].md5 == "a964b8356e08a02d009609d9e3928f7c"
    assert ZOO["mono+stereo_1024x320"].md5 == "cdc5fc9b23513c07d5b19235d9ef08f7"
    assert [(ZOO[n].architecture["width"], ZOO[n].architecture["height"], ZOO[n].architecture["use_stereo"])
            for n in ("mono_1024x320", "stereo_640x192", "mono+stereo_no_pt_640x192")] == \
        [(1024, 320, False), (640, 192, True), (640, 192, True)]
    assert {ZOO[n].archive for n in BDEDEPTH_NAMES} == {"bdedepth_weights.zip"}
    assert ZOO["cs_hrnet18_512x192"].architecture == {"backbone": "hrnet", "num_layers": 18, "decoder": "bdedepth",
                                                     "height": 192, "width": 512, "use_stereo": False}
    assert model_zoo.zoo_name_of("pretrained/mono_640x192") == "mono_640x192"
    assert model_zoo.zoo_name_of("./kitti_hrnet18_640x192.pth") == "kitti_hrnet18_640x192"
    assert model_zoo.zoo_name_of("runs/model19.pth") is None


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(model_zoo.CACHE_ENV, str(tmp_path / "zoo"))
    assert model_zoo.default_cache_dir() == tmp_path / "zoo"
    monkeypatch.delenv(model_zoo.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert model_zoo.default_cache_dir() == tmp_path / "xdg" / "monodepthkit" / "models"


@pytest.mark.slow
def test_first_use_downloads_verifies_and_converts_once(http_server, md2_release, tmp_path):
    folder, data = md2_release
    base, www = http_server
    registry = served_entry(base, www, data)
    cache = tmp_path / "cache"
    path = fetch_zoo_model("mono_640x192", cache, registry)
    assert path == cache / "mono_640x192.pth"
    assert (cache / "mono_640x192.zip").read_bytes() == data
    record = json.loads((cache / "accepted.json").read_text())["mono_640x192.zip"]
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["size"] == len(data)
    payload = load_checkpoint(path)  # our format, with its own checksum
    assert payload["zoo"] == {"name": "mono_640x192", "url": registry["mono_640x192"].url,
                              "archive_sha256": record["sha256"]}
    assert payload["model_spec"]["width"] == 640 and not payload["model_spec"]["use_stereo"]
    assert torch.equal(disparity(path), disparity(folder))
    # Converted once: the server's copy is gone, the cache answers.
    (www / "mono_640x192.zip").unlink()
    assert fetch_zoo_model("mono_640x192", cache, registry) == path
    assert leftovers(cache) == []


def test_a_checksum_mismatch_keeps_nothing(http_server, md2_release, tmp_path):
    base, www = http_server
    registry = served_entry(base, www, md2_release[1], md5="0" * 32)
    cache = tmp_path / "cache"
    with pytest.raises(ZooError, match=r"the download of .*mono_640x192.zip does not match the MD5 its authors "
                                       r"published for mono_640x192 \(0{32}\)"):
        fetch_zoo_model("mono_640x192", cache, registry)
    assert sorted(p.name for p in cache.iterdir()) == []


def test_offline_one_message_names_the_url_and_where_to_put_the_file(http_server, md2_release, tmp_path):
    base, www = http_server
    cache = tmp_path / "cache"
    registry = served_entry(base, www, md2_release[1])
    (www / "mono_640x192.zip").unlink()  # HTTP 404
    with pytest.raises(ZooError, match=rf"could not download the released model mono_640x192 from "
                                       rf"{base}mono_640x192.zip \(File not found\); download .* by hand .* "
                                       rf"and save it as "
                                       rf"{cache}/mono_640x192.zip"):
        fetch_zoo_model("mono_640x192", cache, registry)
    closed = {"mono_640x192": dataclasses.replace(registry["mono_640x192"], url="http://127.0.0.1:9/m.zip")}
    with pytest.raises(ZooError, match=r"from http://127.0.0.1:9/m.zip \(.*refused.*\); download http://127.0.0.1:9/"):
        fetch_zoo_model("mono_640x192", cache, closed, timeout=5)
    assert leftovers(cache) == []


@pytest.mark.slow
def test_an_archive_put_by_hand_is_used_and_a_later_change_is_noticed(md2_release, tmp_path):
    folder, data = md2_release
    cache = tmp_path / "cache"
    cache.mkdir()
    # As BDEdepth's: no published checksum, so the first accepted archive's SHA-256 is the reference.
    registry = {"mono_640x192": dataclasses.replace(ZOO["mono_640x192"], url="http://127.0.0.1:9/none", md5=None)}
    (cache / "mono_640x192.zip").write_bytes(data)
    path = fetch_zoo_model("mono_640x192", cache, registry)
    assert torch.equal(disparity(path), disparity(folder))
    other = write_md2_depth_folder(tmp_path / "other", seed=5)
    zip_folder(other, cache / "mono_640x192.zip")
    path.unlink()
    with pytest.raises(ZooError, match=r"mono_640x192.zip \(SHA-256 [0-9a-f]{64}\) is not the archive accepted under "
                                       r"that name on .*: the file changed upstream, on disk or in a copy"):
        fetch_zoo_model("mono_640x192", cache, registry)


def test_damaged_foreign_and_misfitting_archives_are_refused(md2_release, tmp_path):
    folder, data = md2_release
    entry = dataclasses.replace(ZOO["mono_640x192"], md5=None)

    def fetch_by_hand(content: bytes, model=entry) -> None:
        cache = tmp_path / f"cache{len(list(tmp_path.iterdir()))}"
        cache.mkdir()
        (cache / "mono_640x192.zip").write_bytes(content)
        fetch_zoo_model("mono_640x192", cache, {"mono_640x192": model})

    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF  # inside encoder.pth's stored bytes
    with pytest.raises(ZooError, match=r"mono_640x192.zip is damaged: its member encoder.pth fails its CRC check"):
        fetch_by_hand(bytes(damaged))
    with pytest.raises(ZooError, match="is not a readable zip archive"):
        fetch_by_hand(b"<html>Sign in to continue</html>")
    encoder_only = tmp_path / "encoder_only.zip"
    with zipfile.ZipFile(encoder_only, "w") as zf:
        zf.write(folder / "encoder.pth", "encoder.pth")
    with pytest.raises(ZooError, match=r"lacks depth.pth \(it holds encoder.pth\): it is not mono_640x192's archive"):
        fetch_by_hand(encoder_only.read_bytes())
    wider = dataclasses.replace(entry, architecture={**entry.architecture, "width": 1024})
    with pytest.raises(ZooError, match=r"is not mono_640x192: its width 640 \(expected 1024\)"):
        fetch_by_hand(data, wider)


def test_every_tensor_is_checked_against_the_architecture(md2_release):
    payload = to_checkpoint_payload(md2_release[0])
    model_zoo.check_architecture(ZOO["mono_640x192"], payload, "archive")
    payload["depth"]["convs.dispconv_0.conv.weight"] = torch.zeros(1, 16, 1, 1)
    payload["depth"]["convs.extra.weight"] = torch.zeros(1)
    with pytest.raises(ZooError, match=r"does not fit mono_640x192's architecture \(2 tensor\(s\): "
                                       r"depth.convs.extra.weight is unexpected; depth.convs.dispconv_0.conv.weight "
                                       r"has shape \(1, 16, 1, 1\), expected \(1, 16, 3, 3\)"):
        model_zoo.check_architecture(ZOO["mono_640x192"], payload, "archive")


@pytest.mark.slow
def test_bdedepth_models_come_out_of_the_one_shared_folder_archive(http_server, tmp_path):
    base, www = http_server
    folder = tmp_path / "dropbox"
    folder.mkdir()
    for name, width in (("kitti_resnet18_640x192", 640), ("cs_resnet18_512x192", 512)):
        torch.manual_seed(width)
        net = build_depth_network("resnet", 18, "bdedepth", scales=(0,))
        torch.save({"encoder": net.encoder.state_dict(), "depth": net.decoder.state_dict(), "height": 192,
                    "width": width, "use_stereo": False}, folder / f"{name}.pth")
    (folder / "README.txt").write_text("not a model")
    data = zip_folder(folder, www / "folder.zip", prefix="weights/")
    registry = {name: dataclasses.replace(ZOO[name], url=f"{base}folder.zip")
                for name in ("kitti_resnet18_640x192", "cs_resnet18_512x192")}
    cache = tmp_path / "cache"
    kitti = fetch_zoo_model("kitti_resnet18_640x192", cache, registry)
    assert (cache / "bdedepth_weights.zip").read_bytes() == data
    (www / "folder.zip").unlink()  # the second model comes out of the archive already there
    cityscapes = fetch_zoo_model("cs_resnet18_512x192", cache, registry)
    spec = load_checkpoint(cityscapes)["model_spec"]
    assert (spec["backbone"], spec["decoder"], spec["width"]) == ("resnet", "bdedepth", 512)
    assert torch.equal(disparity(kitti), disparity(folder / "kitti_resnet18_640x192.pth"))


def test_an_unknown_name_suggests_the_nearest(tmp_path):
    with pytest.raises(ZooError, match=r"'mono_640x129' is not a released model \(did you mean mono_640x192\?\); the "
                                       r"names are monodepth2: mono_640x192, "):
        fetch_zoo_model("mono_640x129", tmp_path)


def test_a_remaining_tensor_mismatch_names_a_few_tensors_not_torchs_dump(md2_release):
    from checkpoints import spec_from_checkpoint
    from model import SelfSupervisedDepth

    payload = to_checkpoint_payload(md2_release[0])
    model = SelfSupervisedDepth.for_inference(spec_from_checkpoint(payload))
    payload["depth"]["convs.dispconv_0.conv.weight"] = torch.zeros(1, 16, 1, 1)
    with pytest.raises(ValueError, match=r"^weights: the 'depth' weights do not fit the resnet/monodepth2 network of "
                                         r"this configuration: 1 tensor\(s\): convs.dispconv_0.conv.weight has shape "
                                         r"\(1, 16, 1, 1\), expected \(1, 16, 3, 3\)$"):
        model.load_state_dicts(payload, "weights")
