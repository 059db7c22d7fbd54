"""The artifact store writes through fsspec: a local folder by default, any fsspec URL otherwise."""
from __future__ import annotations

import hashlib

import fsspec
import pytest
from flask import Flask, current_app

from webapp.artifacts import (
    ArtifactTooLarge, artifact_exists, delete_artifact, new_key, open_artifact, write_stream,
)


@pytest.fixture(params=["folder", "memory"])
def store(request, tmp_path):
    app = Flask(__name__)
    app.config["ARTIFACT_STORE_URL"] = str(tmp_path / "artifacts") if request.param == "folder" else "memory://store"
    with app.app_context():
        yield request.param
    if request.param == "memory":
        fsspec.filesystem("memory").rm("/store", recursive=True)


def test_a_stream_is_stored_with_its_size_and_checksum(store):
    chunks = [b"hello ", b"artifact ", b"store"]
    stored = write_stream(new_key("datasets", "7", suffix=".jsonl"), chunks)
    assert stored.uri.startswith("file://" if store == "folder" else "memory://")
    assert stored.uri.endswith(".jsonl")
    assert stored.size_bytes == 20
    assert stored.sha256 == hashlib.sha256(b"hello artifact store").hexdigest()
    with open_artifact(stored.uri) as fh:
        assert fh.read() == b"hello artifact store"
    delete_artifact(stored.uri)
    assert not artifact_exists(stored.uri)
    delete_artifact(stored.uri)  # already gone is fine


def test_past_the_limit_nothing_is_kept(store):
    key = new_key("datasets", "7")
    with pytest.raises(ArtifactTooLarge):
        write_stream(key, iter([b"x" * 600, b"y" * 600]), max_bytes=1000)
    fs, root = fsspec.core.url_to_fs(current_app.config["ARTIFACT_STORE_URL"])
    assert not fs.exists(f"{root}/{key}")


def test_a_failing_source_leaves_no_partial_file(store):
    def chunks():
        yield b"first part"
        raise OSError("client went away")

    key = new_key("datasets", "8")
    with pytest.raises(OSError):
        write_stream(key, chunks())
    fs, root = fsspec.core.url_to_fs(current_app.config["ARTIFACT_STORE_URL"])
    assert not fs.exists(f"{root}/{key}")


def test_keys_never_collide():
    assert new_key("a") != new_key("a")
