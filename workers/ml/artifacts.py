"""Artifact directories: atomic writing, manifests, and verified, pickle-free loading.

An artifact directory holds ``manifest.json`` plus the files it names (``model.onnx``,
optionally ``model.int8.onnx``, ``weights.pt``, ``memory_bank.npy``). The database keeps
the sha256 of every file; loading re-hashes each file and refuses any mismatch.

Security contract of the readers here:
- every file is opened with ``O_NOFOLLOW`` and must be a regular file with one link, so
  a symlink or hardlink to a file outside the directory is refused before it is read;
- a file's bytes are hashed and then parsed from that same in-memory copy, so the file
  cannot change between check and use;
- nothing is unpickled: torch weights go through ``torch.load(weights_only=True)``,
  numpy arrays through ``np.load(allow_pickle=False)``;
- ONNX external data is resolved by this module, never by ONNX or ONNX Runtime: a
  location that is absolute, contains ``..`` or leaves the directory is refused, and
  accepted data is inlined so the runtime gets bytes, not paths.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from workers.ml.errors import ArtifactIntegrityError, UnsafeArtifactError

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1


def sha256_bytes(payload: bytes) -> str:
    """Hex sha256 of ``payload``."""
    return hashlib.sha256(payload).hexdigest()


def _check_file_name(name: str) -> None:
    """Artifact file names are plain names: no directories, no traversal, no hidden files."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name or "\x00" in name or name.startswith("."):
        raise UnsafeArtifactError(f"artifact file name {name!r} is not a plain file name")


def read_artifact_file(directory: Path, name: str) -> bytes:
    """Read ``directory/name`` without following symlinks; refuse hardlinks and non-files.

    Raises ``UnsafeArtifactError`` for a symlink, a hardlink (link count > 1) or a
    non-regular file, ``ArtifactIntegrityError`` when the file is missing.
    """
    _check_file_name(name)
    path = directory / name
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise UnsafeArtifactError(f"artifact file {name!r} is a symlink")
    except FileNotFoundError as error:
        raise ArtifactIntegrityError(f"artifact file {name!r} is missing") from error
    # O_NOFOLLOW again at open time: the check above and the open are not atomic.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError as error:
        raise ArtifactIntegrityError(f"artifact file {name!r} is missing") from error
    except OSError as error:
        # ELOOP: O_NOFOLLOW met a symlink.
        raise UnsafeArtifactError(f"artifact file {name!r} cannot be opened safely: {error.strerror}") from error
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeArtifactError(f"artifact file {name!r} is not a regular file")
        if info.st_nlink != 1:
            # A hardlink is indistinguishable from its other names; it may point anywhere.
            raise UnsafeArtifactError(f"artifact file {name!r} has {info.st_nlink} hard links")
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(descriptor)


class VerifiedArtifact:
    """The bytes of an artifact directory whose files all matched the expected sha256.

    Construction reads every file named in ``expected_sha256`` (which must include
    ``manifest.json`` and every file the manifest lists) and keeps their bytes.
    """

    def __init__(self, directory: Path, expected_sha256: Mapping[str, str]) -> None:
        self.directory = Path(directory)
        if MANIFEST_NAME not in expected_sha256:
            raise ArtifactIntegrityError("expected hashes do not cover manifest.json")
        self._files: dict[str, bytes] = {}
        for name, expected in expected_sha256.items():
            payload = read_artifact_file(self.directory, name)
            actual = sha256_bytes(payload)
            if actual != expected.lower():
                raise ArtifactIntegrityError(f"sha256 mismatch for {name!r}: expected {expected}, got {actual}")
            self._files[name] = payload
        try:
            self.manifest: dict[str, Any] = json.loads(self._files[MANIFEST_NAME])
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ArtifactIntegrityError("manifest.json is not valid JSON") from error
        if self.manifest.get("format") != MANIFEST_FORMAT:
            raise ArtifactIntegrityError(f"unsupported manifest format {self.manifest.get('format')!r}")
        listed = self.manifest.get("files", {})
        for name, digest in listed.items():
            if self._files.get(name) is None:
                raise ArtifactIntegrityError(f"manifest lists {name!r} but no expected hash was given for it")
            if sha256_bytes(self._files[name]) != digest:
                raise ArtifactIntegrityError(f"manifest hash of {name!r} disagrees with the file")

    def has(self, name: str) -> bool:
        return name in self._files

    def read(self, name: str) -> bytes:
        """Verified bytes of ``name``; ``ArtifactIntegrityError`` if it was not verified."""
        if name not in self._files:
            raise ArtifactIntegrityError(f"artifact file {name!r} was not among the verified files")
        return self._files[name]

    def load_state_dict(self, name: str) -> dict[str, Any]:
        """A torch state_dict via ``torch.load(weights_only=True)``; a pickle with code is refused."""
        import pickle

        import torch

        try:
            state = torch.load(io.BytesIO(self.read(name)), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, AttributeError) as error:
            raise UnsafeArtifactError(f"{name!r} is not a plain tensor state_dict: {error}") from error
        if not isinstance(state, dict):
            raise UnsafeArtifactError(f"{name!r} does not hold a state_dict")
        return state

    def load_array(self, name: str) -> np.ndarray:
        """A ``.npy`` array via ``np.load(allow_pickle=False)``; object arrays are refused."""
        try:
            array = np.load(io.BytesIO(self.read(name)), allow_pickle=False)
        except ValueError as error:
            raise UnsafeArtifactError(f"{name!r} is not a plain numeric array: {error}") from error
        if not isinstance(array, np.ndarray):
            raise UnsafeArtifactError(f"{name!r} does not hold one array")
        return array

    def load_onnx_bytes(self, name: str) -> bytes:
        """Serialized ONNX model ``name`` with any external data checked and inlined.

        External data must be a plain relative location inside the directory, be
        among the verified files, and lie within that file's bounds.
        """
        import onnx
        from onnx.external_data_helper import uses_external_data

        payload = self.read(name)
        try:
            model = onnx.load_model_from_string(payload)
        except Exception as error:
            raise ArtifactIntegrityError(f"{name!r} is not an ONNX model") from error
        external = [tensor for tensor in _all_tensors(model) if uses_external_data(tensor)]
        if not external:
            return payload
        for tensor in external:
            entries = {entry.key: entry.value for entry in tensor.external_data}
            location = entries.get("location", "")
            _check_external_location(self.directory, location)
            blob = self.read(location)
            offset = int(entries.get("offset", "0") or 0)
            length = int(entries["length"]) if entries.get("length") else len(blob) - offset
            if offset < 0 or length < 0 or offset + length > len(blob):
                raise UnsafeArtifactError(f"external data of {tensor.name!r} lies outside {location!r}")
            tensor.raw_data = blob[offset : offset + length]
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
        return bytes(model.SerializeToString())


def _all_tensors(model: Any) -> Iterator[Any]:
    """Every TensorProto of a model: initializers and attribute tensors, subgraphs included."""
    from onnx.external_data_helper import _get_all_tensors

    yield from _get_all_tensors(model)


def _check_external_location(directory: Path, location: str) -> None:
    """Refuse an external-data location that could read outside ``directory``."""
    if not location:
        raise UnsafeArtifactError("external data without a location")
    posix = PurePosixPath(location.replace("\\", "/"))
    if posix.is_absolute() or os.path.isabs(location) or location.startswith(("/", "\\")) or ":" in location:
        raise UnsafeArtifactError(f"external data location {location!r} is absolute")
    if ".." in posix.parts:
        raise UnsafeArtifactError(f"external data location {location!r} contains '..'")
    if len(posix.parts) != 1:
        raise UnsafeArtifactError(f"external data location {location!r} is not a file of the model directory")
    candidate = directory / location
    if candidate.is_symlink():
        raise UnsafeArtifactError(f"external data location {location!r} is a symlink")
    root = directory.resolve()
    if candidate.resolve().parent != root:
        raise UnsafeArtifactError(f"external data location {location!r} resolves outside the model directory")


# --- writing -----------------------------------------------------------------------


@contextmanager
def staging_directory(out_dir: Path) -> Iterator[Path]:
    """Yield a fresh sibling temp directory; on clean exit it becomes ``out_dir``.

    ``out_dir`` must not exist or be empty. On any exception (cancellation included) the
    temp directory is removed and ``out_dir`` is left as it was, so readers never see a
    half-written artifact. A process killed mid-run leaves only a hidden
    ``.<name>.partial-*`` sibling, never a partial ``out_dir``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"output directory {out_dir} is not empty")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        yield staging
        for child in staging.iterdir():
            with open(child, "rb") as handle:
                os.fsync(handle.fileno())
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> dict[str, str]:
    """Hash every file in ``directory``, write ``manifest.json`` listing them, return all hashes.

    The returned mapping (file name -> sha256, manifest.json included) is what the caller
    stores and later passes to ``VerifiedArtifact``.
    """
    hashes = {path.name: sha256_bytes(path.read_bytes()) for path in sorted(directory.iterdir()) if path.is_file()}
    hashes.pop(MANIFEST_NAME, None)
    body = {"format": MANIFEST_FORMAT, **manifest, "files": hashes}
    encoded = json.dumps(body, indent=2, sort_keys=True).encode()
    tmp = directory / f".{MANIFEST_NAME}.{uuid.uuid4().hex}"
    tmp.write_bytes(encoded)
    os.replace(tmp, directory / MANIFEST_NAME)
    return {**hashes, MANIFEST_NAME: sha256_bytes(encoded)}
