"""Generic fixtures shared by the test modules (helpers live in tests/helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))


@pytest.fixture(scope="session")
def signing_key():
    """A fixed Ed25519 private key (deterministic signatures, RFC 8032)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(bytes(range(200, 232)))


# -- isolation of the verifier's config directory (trust store, client key, replay attestations) -------------
# Test provers reuse loopback ports with fresh keys, so a shared trust store would see "the key of
# 127.0.0.1:PORT changed" across tests. Every test (and every module, for module-scoped fixtures) gets its own
# XDG_CONFIG_HOME, inherited by the processes tests/procs.py starts. The client key (which signs replay
# attestations) is the same for the whole run, so a model trained in a module fixture is still attested
# under the key `predict` checks in a test.
_SESSION_KEY: Path | None = None


def pytest_configure(config):
    import os
    import tempfile

    from protocol.keys import generate_key_file

    global _SESSION_KEY
    base = Path(tempfile.mkdtemp(prefix="vtrain-test-config-"))
    _SESSION_KEY = base / "client_key.pem"
    generate_key_file(str(_SESSION_KEY))
    os.environ["XDG_CONFIG_HOME"] = str(base / "unused")  # nothing runs outside the fixtures below


def _fresh_config(path: Path) -> str:
    import shutil

    (path / "vtrain").mkdir(parents=True, exist_ok=True)
    shutil.copy2(_SESSION_KEY, path / "vtrain" / "client_key.pem")
    return str(path)


@pytest.fixture(autouse=True, scope="module")
def _module_config_home(tmp_path_factory):
    import os

    old = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = _fresh_config(tmp_path_factory.mktemp("config-module"))
    yield
    if old is None:
        os.environ.pop("XDG_CONFIG_HOME", None)
    else:
        os.environ["XDG_CONFIG_HOME"] = old


@pytest.fixture(autouse=True)
def _test_config_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", _fresh_config(tmp_path_factory.mktemp("config")))
