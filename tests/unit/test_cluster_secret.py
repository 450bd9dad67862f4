"""--cluster-secret and --cluster-secret-file: read once, never shown, and
given to every document's presence."""

import os

import pytest

from mrmd_monitor.config import ConfigError, Config, describe, load_config
from mrmd_monitor.options import cluster_secret
from mrmd_monitor.sync import SyncThread
from tests.unit.test_sync import NoPool

URL = "ws://127.0.0.1:4444"
SECRET = "c1uster s3cret/ü"


def test_the_secret_from_the_option_the_environment_or_a_file(tmp_path):
    assert cluster_secret(load_config([URL], env={})) is None
    assert cluster_secret(load_config([URL, "--cluster-secret", SECRET], env={})) == SECRET
    env = {"MRMD_MONITOR_CLUSTER_SECRET": SECRET}
    assert cluster_secret(load_config([URL], env=env)) == SECRET
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    os.chmod(path, 0o600)
    assert cluster_secret(load_config([URL, "--cluster-secret-file", str(path)], env={})) == SECRET


@pytest.mark.parametrize("content", [None, "", "\n"])
def test_a_missing_or_empty_secret_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "secret"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match="cluster-secret-file"):
        load_config([URL, "--cluster-secret-file", str(path)], env={})


def test_the_secret_is_never_shown(tmp_path):
    path = tmp_path / "secret"
    path.write_text(SECRET)
    for args in (["--cluster-secret", SECRET], ["--cluster-secret-file", str(path)]):
        line = describe(load_config([URL, *args], env={}))
        assert SECRET not in line and "c1uster" not in line, line


def test_every_document_proves_its_member_with_it():
    cfg = Config(sync_url=URL, docs=("doc",), cluster_secret=SECRET)
    sync = SyncThread(config=cfg, doc_name="doc", pool=NoPool(), member_id="m-1")
    assert "sig" in sync.presence.state()["monitor"]
    plain = SyncThread(config=Config(sync_url=URL, docs=("doc",)), doc_name="doc", pool=NoPool())
    assert "sig" not in plain.presence.state()["monitor"]
