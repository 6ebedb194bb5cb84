"""The storage-initializer image's entrypoint: `initializer-entrypoint SRC_URI DEST_DIR`.

KServe's controller runs its storage-initializer as an init container with these two args and
an emptyDir at DEST_DIR (/mnt/models) that the serving container mounts too. This one copies
what the serving container can read:

- `file:///path` and plain paths: the folder's files (or the one file) are COPIED. KServe's
  `kserve_storage.Storage.download` symlinks local files instead, which dangles in the serving
  container, whose root filesystem is another image; so that code does not fit here.
- `pvc://<claim>/<path>`: KServe's webhook mounts the claim at /mnt/pvc and rewrites the URI to
  /mnt/pvc/<path>; the same rewrite here, copied likewise. Without that mount, an error.
Any other scheme is refused with the list of supported ones. Stdlib only: it runs in the image
under the image's python3.11 (tools/cluster/images.py copies it in).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

PVC_MOUNT = Path("/mnt/pvc")  # where KServe's webhook mounts a pvc:// claim


class StorageError(RuntimeError):
    pass


def source_path(uri: str) -> Path:
    """The local path a storageUri names inside this container."""
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    if uri.startswith("pvc://"):
        claim, _, path = uri.removeprefix("pvc://").partition("/")
        if not claim:
            raise StorageError(f"storageUri '{uri}': expected pvc://<claim>/<path>")
        return PVC_MOUNT / path
    if "://" in uri:
        scheme = uri.partition("://")[0]
        raise StorageError(
            f"storageUri '{uri}': scheme '{scheme}' is not supported by this storage "
            "initializer; supported: file://, pvc://, a plain path"
        )
    return Path(uri)


def copy_model(uri: str, destination: Path) -> list[Path]:
    """Copy the model `uri` names into `destination`; return the top-level entries copied."""
    source = source_path(uri)
    if not source.exists():
        raise StorageError(f"storageUri '{uri}': {source} does not exist in the initializer")
    destination.mkdir(parents=True, exist_ok=True)
    entries = sorted(source.iterdir()) if source.is_dir() else [source]
    if not entries:
        raise StorageError(f"storageUri '{uri}': {source} is empty")
    copied = []
    for entry in entries:
        target = destination / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target, symlinks=False, dirs_exist_ok=True)
        else:
            shutil.copy2(entry, target)
        copied.append(target)
    return copied


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: initializer-entrypoint SRC_URI DEST_DIR", file=sys.stderr)
        return 2
    uri, destination = argv
    try:
        copied = copy_model(uri, Path(destination))
    except (StorageError, OSError) as error:
        print(f"storage-initializer: {error}", file=sys.stderr)
        return 1
    for path in copied:
        print(f"storage-initializer: copied {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
