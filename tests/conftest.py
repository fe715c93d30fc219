"""Shared fixtures: the device under test, TF32 off, the repository on sys.path, real-data paths, a
local HTTP server (for the files the toolkit downloads)."""

from __future__ import annotations

import http.server
import os
import sys
import threading
from functools import partial
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Real KITTI samples live beside the checkout; tests that use them skip when they are absent.
REALDATA = REPO_ROOT.parent / "shared" / "realdata"

# TF32 matmuls would make exact-value geometry tests flaky on Ampere-class GPUs.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


@pytest.fixture(scope="session")
def device() -> torch.device:
    """Device for tests: ``$DEVICE`` (e.g. ``DEVICE=cuda pytest``), CPU by default."""
    name = os.environ.get("DEVICE", "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("DEVICE asks for CUDA but none is available")
    return torch.device(name)


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real sample data not found at {REALDATA}")
    return REALDATA


def pytest_collection_modifyitems(config, items):
    """End-to-end tests belong to the slow tier (``-m "not slow"`` is the fast one); GPU tests
    are skipped where no CUDA device is present."""
    skip_gpu = None if torch.cuda.is_available() else pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "e2e" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.slow)
        if skip_gpu is not None and "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture()
def unwritable_probes(monkeypatch):
    """Every folder looks read-only to `run_folder.check_writable`: writing its probe file fails."""
    real_write_bytes = Path.write_bytes

    def read_only(self, data):
        if self.name.startswith(".write-probe-"):
            raise PermissionError(13, "Permission denied", str(self))
        return real_write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", read_only)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def http_server(tmp_path):
    """Serve the folder tmp_path/www on 127.0.0.1; yields (its base URL ending in "/", the folder)."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    httpd.shutdown()
    httpd.server_close()
