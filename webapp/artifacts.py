"""The one artifact store: dataset files and trained models, behind fsspec.

``ARTIFACT_STORE_URL`` names the store's root: a folder in the instance path by
default, or any fsspec URL (``s3://bucket/prefix``, ``gs://...``, ``memory://...``).
Records keep the full URL of each artifact, so an artifact stays readable when
the setting later points somewhere else.
"""
from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

import fsspec
from flask import current_app
from fsspec.core import url_to_fs


class ArtifactTooLarge(Exception):
    """The stream went past the size the caller allowed; nothing was kept."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"larger than {max_bytes:,} bytes")
        self.max_bytes = max_bytes


@dataclass(frozen=True)
class StoredArtifact:
    uri: str
    size_bytes: int
    sha256: str


def new_key(*parts: str, suffix: str = "") -> str:
    """A fresh key under ``parts`` that no other write can take, e.g. datasets/7/<uuid>.jsonl."""
    return "/".join((*parts, uuid.uuid4().hex + suffix))


def write_stream(key: str, chunks: Iterable[bytes], max_bytes: int | None = None) -> StoredArtifact:
    """Write ``chunks`` under ``key``, hashing and counting on the way.

    Past ``max_bytes`` the partial file is removed and ArtifactTooLarge raised,
    so a refused upload leaves no bytes behind; so does any other failure.
    """
    fs, root = url_to_fs(current_app.config["ARTIFACT_STORE_URL"])
    path = f"{root.rstrip('/')}/{key}"
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    digest, size = hashlib.sha256(), 0
    try:
        with fs.open(path, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise ArtifactTooLarge(max_bytes)
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        _remove(fs, path)
        raise
    return StoredArtifact(uri=fs.unstrip_protocol(path), size_bytes=size, sha256=digest.hexdigest())


def is_stored_here(uri: str) -> bool:
    """Whether ``uri`` is inside the configured store: only such files were written by the console itself."""
    fs, root = url_to_fs(current_app.config["ARTIFACT_STORE_URL"])
    return uri.startswith(fs.unstrip_protocol(root.rstrip("/")) + "/")


def open_artifact(uri: str, mode: str = "rb") -> IO:
    """The artifact at ``uri`` as an open file (use it in a ``with``)."""
    return fsspec.open(uri, mode).open()


def delete_artifact(uri: str) -> None:
    """Remove the artifact at ``uri``; one that is already gone is not an error."""
    fs, path = url_to_fs(uri)
    _remove(fs, path)


def artifact_exists(uri: str) -> bool:
    fs, path = url_to_fs(uri)
    return fs.exists(path)


def _remove(fs, path: str) -> None:
    if fs.exists(path):
        fs.rm(path)
