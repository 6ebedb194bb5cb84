"""A small OCI image packer: directories in, an OCI image-layout archive out (no daemon).

`Layer.from_dir` turns a directory into a gzip layer blob (digest of the compressed bytes) with
its diff_id (digest of the tar), converting overlayfs whiteouts to OCI ones; `write_archive`
writes an OCI image layout (oci-layout, index.json, blobs/sha256/...) as one tar holding every
image, each named by the `io.containerd.image.name` annotation, which is what
`ctr images import` reads. Used by tools/cluster/images.py; stdlib only.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
# Level 1: layers are built on every change and read once by the import; size matters little.
GZIP_LEVEL = 1
OVERLAY_OPAQUE = "trusted.overlay.opaque"


class OCIError(RuntimeError):
    """A directory cannot be packed; the message names the path."""


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class _Hashing:
    """A write-only file that digests and counts what passes through it."""

    def __init__(self, sink: _Sink | None) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        if self.sink is not None:
            self.sink.write(data)
        return len(data)

    def flush(self) -> None:
        if self.sink is not None:
            self.sink.flush()

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha.hexdigest()}"


@dataclass(frozen=True, slots=True)
class Layer:
    path: Path  # the gzip blob
    digest: str  # of the compressed blob: what the manifest names
    diff_id: str  # of the uncompressed tar: what the config's rootfs names
    size: int

    @classmethod
    def from_dir(cls, root: Path, out: Path, *, overlay_upper: bool = False) -> Layer:
        """Pack everything under `root` (not `root` itself) as a layer at `out`.

        With `overlay_upper`, `root` is an overlayfs upper directory: its whiteouts (character
        devices 0:0) become OCI `.wh.` files; an opaque directory cannot be expressed and fails.
        """
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("wb") as raw:
            compressed = _Hashing(raw)
            # gzip and tarfile only call write (and flush) on their fileobj; their stubs ask for
            # more of a file than that, hence the casts.
            with gzip.GzipFile(
                fileobj=cast(Any, compressed), mode="wb", compresslevel=GZIP_LEVEL, mtime=0
            ) as gz:
                plain = _Hashing(gz)
                with tarfile.open(
                    fileobj=cast(Any, plain), mode="w|", format=tarfile.PAX_FORMAT
                ) as tar:
                    _add_tree(tar, root, overlay_upper)
        return cls(out, compressed.digest, plain.digest, compressed.size)


def _add_tree(tar: tarfile.TarFile, root: Path, overlay_upper: bool) -> None:
    # Sorted, so the same tree gives the same tar; hard links are tracked by tarfile itself.
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted([*dirnames, *filenames]):
            path = base / name
            arcname = str(path.relative_to(root))
            info = path.lstat()
            if overlay_upper and stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                whiteout = tarfile.TarInfo(str(Path(arcname).parent / f".wh.{name}"))
                tar.addfile(whiteout)
                continue
            if overlay_upper and stat.S_ISDIR(info.st_mode) and _opaque(path):
                raise OCIError(f"{path}: an opaque overlay directory; pack it without overlay")
            tar.add(path, arcname=arcname, recursive=False)


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OVERLAY_OPAQUE) == b"y"
    except OSError:
        return False


@dataclass(frozen=True, slots=True)
class Image:
    """An image to write: a full reference (`docker.io/kserve/sklearnserver:v0.15.0`), its layers
    bottom first, and the runtime config (OCI `config` keys: Entrypoint, Cmd, Env, User, ...)."""

    name: str
    layers: Sequence[Layer]
    config: dict[str, Any] = field(default_factory=dict)


def _blob(directory: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    (directory / digest).write_bytes(data)
    return f"sha256:{digest}", len(data)


def write_archive(images: Sequence[Image], out: Path, work: Path) -> None:
    """Write every image into one OCI image-layout tar at `out`, using `work` as scratch."""
    if work.exists():
        shutil.rmtree(work)
    blobs = work / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (work / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    manifests = []
    for image in images:
        for layer in image.layers:
            target = blobs / layer.digest.removeprefix("sha256:")
            if not target.exists():
                os.link(layer.path, target)
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": image.config,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in image.layers]},
            "history": [{"created_by": "tools/cluster/images.py"} for _ in image.layers],
        }
        config_digest, config_size = _blob(blobs, json.dumps(config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": CONFIG_MEDIA_TYPE,
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [
                {"mediaType": LAYER_MEDIA_TYPE, "digest": layer.digest, "size": layer.size}
                for layer in image.layers
            ],
        }
        digest, size = _blob(blobs, json.dumps(manifest, sort_keys=True).encode())
        tag = image.name.rpartition(":")[2]
        manifests.append(
            {
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": digest,
                "size": size,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": image.name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        )
    index = {"schemaVersion": 2, "manifests": manifests}
    (work / "index.json").write_text(json.dumps(index, sort_keys=True))
    with tarfile.open(out, "w") as tar:
        for entry in ("oci-layout", "index.json", "blobs"):
            tar.add(work / entry, arcname=entry)
