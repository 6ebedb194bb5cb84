"""Build the cluster's images here, without a registry or a container daemon.

    python -m tools.cluster.images --bin-dir DIR [--out ARCHIVE]   -> prints the archive's path

Every image is a Debian bookworm root filesystem from Debian's packages (debootstrap: python3.11
and its venv module) plus layers of ours, packed by tools/cluster/oci.py into one OCI archive
that `ctr -n k8s.io images import` loads into containerd. Names are the ones the manifests
reference (graph_controller/controller/render.py, config/runtimes, config/manager), so the
kubelet finds them locally (`IfNotPresent`, the default for a tag other than `latest`):

  docker.io/infergraph/router:0.1.0        the Dockerfile's behaviour: a venv with the project,
                                           `python -m router`, user 10001; the controller too
  docker.io/kserve/sklearnserver:v0.15.0   the project with [models]; serves
                                           graph_controller.model_servers.sklearn
  docker.io/infergraph/custom-model:latest the same venv, graph_controller.model_servers.custom
  docker.io/kserve/storage-initializer:<render.STORAGE_INITIALIZER_IMAGE's tag>
                                           tools/cluster/storage_initializer.py, plus the
                                           examples' trained models under /models/<example>/
  localhost/infergraph/pause:<k8s version> Kubernetes' pause (tools/cluster/build.sh), the CRI
                                           sandbox image

Each venv is installed in a chroot on an overlay of the base (so the layer is exactly what the
install added) from wheels built on the host with the project's own venv. Cached in
~/.cache/infergraph/cluster: the base root filesystem and its layer once; each venv layer until
its wheels change; the small layers and the archive every run.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

from graph_controller.controller import render
from tools.cluster.oci import Image, Layer, write_archive

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("INFERGRAPH_CACHE", Path.home() / ".cache/infergraph")) / "cluster"
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
# python3.11-venv's own dependencies, which debootstrap does not resolve.
BASE_PACKAGES = "python3.11,python3.11-venv,python3-distutils,python3-lib2to3,ca-certificates"
K8S_VERSION = "1.31.4"
PAUSE_IMAGE = f"localhost/infergraph/pause:{K8S_VERSION}"
ROUTER_IMAGE = "docker.io/infergraph/router:0.1.0"
SKLEARN_IMAGE = "docker.io/kserve/sklearnserver:v0.15.0"
CUSTOM_IMAGE = "docker.io/infergraph/custom-model:latest"
# The controller's own name for it, so the two cannot drift apart (a pod would wait in
# ImagePullBackOff: nothing here can pull).
STORAGE_INITIALIZER_IMAGE = f"docker.io/{render.STORAGE_INITIALIZER_IMAGE}"
APP_USER = "10001:10001"  # the Dockerfile's numeric user, so runAsNonRoot can check it
KSERVE_USER = "1000"  # KServe's server and storage-initializer images run as uid 1000
PATH = "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PYTHON_ENV = [f"PATH={PATH}", "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"]
# The model servers bind 127.0.0.1 unless told otherwise (`infergraph up` stays on loopback); in
# a pod they must listen on the pod's address, as KServe's own server images do.
SERVER = ("python", "-m")
ALL_INTERFACES = ("--bind_host", "0.0.0.0")
MODEL_STORE = "/models"  # where the storage-initializer image holds examples/<name>/models/*


def log(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


def run(*argv: str | Path, cwd: Path | None = None) -> None:
    subprocess.run([str(a) for a in argv], check=True, cwd=cwd, stdout=sys.stderr)


def base_rootfs() -> Path:
    """Debian bookworm with python3.11 and venv, from Debian's packages; built once."""
    rootfs = CACHE / f"rootfs-{SUITE}-python3.11"
    if _stamp(rootfs).exists():
        return rootfs
    partial = rootfs.with_name(rootfs.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    log(f"debootstrap {SUITE} into {partial} (a few minutes, once)")
    run("debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE, partial, MIRROR)
    # The package cache is not part of an image.
    for leftover in (partial / "var/cache/apt/archives").glob("*.deb"):
        leftover.unlink()
    shutil.rmtree(rootfs, ignore_errors=True)
    partial.rename(rootfs)
    _stamp(rootfs).touch()
    return rootfs


def _stamp(rootfs: Path) -> Path:
    """Marks a finished debootstrap; beside the tree, so it is not in the image."""
    return rootfs.with_name(rootfs.name + ".complete")


def cached_layer(name: str, source: Path, stamp: Path) -> Layer:
    """A layer of `source`, rebuilt only when `stamp` is newer than it."""
    out = CACHE / "layers" / f"{name}.tar.gz"
    meta = _meta(out)
    if out.exists() and meta.exists() and meta.stat().st_mtime >= stamp.stat().st_mtime:
        return _load(out)
    log(f"packing layer {name}")
    return _save(Layer.from_dir(source, out))


def _meta(out: Path) -> Path:
    return out.with_name(out.name + ".digests")


def _load(out: Path) -> Layer:
    digest, diff_id, size, _key = (*_meta(out).read_text().split(), "")[:4]
    return Layer(out, digest, diff_id, int(size))


def _save(layer: Layer, key: str = "") -> Layer:
    _meta(layer.path).write_text(f"{layer.digest} {layer.diff_id} {layer.size} {key}\n")
    return layer


def _cached_key(out: Path) -> str:
    meta = _meta(out)
    if not (out.exists() and meta.exists()):
        return ""
    fields = meta.read_text().split()
    return fields[3] if len(fields) == 4 else ""


def venv_key(wheelhouse: Path, requirement: str, base: Layer) -> str:
    """What a venv layer is made of: the wheels' contents, the requirement, the base layer and
    this recipe. A wheel counts by its members' names, sizes and CRCs, not its bytes: a wheel
    built again from unchanged sources differs only in its timestamps."""
    sha = hashlib.sha256(f"{requirement}\n{base.digest}\n".encode())
    sha.update(Path(__file__).read_bytes())
    for wheel in sorted(wheelhouse.glob("*.whl")):
        sha.update(wheel.name.encode())
        with zipfile.ZipFile(wheel) as archive:
            for member in sorted(archive.infolist(), key=lambda m: m.filename):
                sha.update(f"{member.filename} {member.file_size} {member.CRC}\n".encode())
    return sha.hexdigest()


def base_layer(rootfs: Path) -> Layer:
    return cached_layer("base", rootfs, _stamp(rootfs))


@contextlib.contextmanager
def overlay(lower: Path, work: Path) -> Iterator[tuple[Path, Path]]:
    """An overlay of `lower` mounted at work/merged; yields (merged, upper)."""
    shutil.rmtree(work, ignore_errors=True)
    upper, scratch, merged = work / "upper", work / "work", work / "merged"
    for d in (upper, scratch, merged):
        d.mkdir(parents=True)
    run(
        "mount",
        "-t",
        "overlay",
        "overlay",
        "-o",
        f"lowerdir={lower},upperdir={upper},workdir={scratch}",
        merged,
    )
    try:
        yield merged, upper
    finally:
        run("umount", merged)


def wheels() -> Path:
    """The project and its dependencies as wheels, built with the project's venv and pip cache."""
    directory = CACHE / "wheels"
    shutil.rmtree(directory, ignore_errors=True)
    log("building wheels of the project and its dependencies")
    run(REPO / ".venv/bin/pip", "wheel", "-q", "-w", directory, f"{REPO}[models]", cwd=REPO)
    return directory


def venv_layer(name: str, rootfs: Path, base: Layer, wheelhouse: Path, requirement: str) -> Layer:
    """/opt/venv with `requirement` installed offline from `wheelhouse`, and the app user."""
    out = CACHE / "layers" / f"{name}.tar.gz"
    key = venv_key(wheelhouse, requirement, base)
    if _cached_key(out) == key:
        log(f"layer {name}: unchanged")
        return _load(out)
    with overlay(rootfs, CACHE / "work" / name) as (merged, upper):
        shutil.copytree(wheelhouse, merged / "tmp/wheels")
        chroot = ("chroot", merged)
        run(*chroot, "python3.11", "-m", "venv", "/opt/venv")
        run(
            *chroot,
            "/opt/venv/bin/pip",
            "install",
            "-q",
            "--no-cache-dir",
            "--no-index",
            "--find-links",
            "/tmp/wheels",
            requirement,
        )
        # Compiled here because the controller runs with a read-only root filesystem.
        run(*chroot, "/opt/venv/bin/python", "-m", "compileall", "-q", "/opt/venv")
        run(*chroot, "groupadd", "--system", "--gid", "10001", "infergraph")
        run(
            *chroot,
            "useradd",
            "--system",
            "--uid",
            "10001",
            "--gid",
            "infergraph",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "infergraph",
        )
        shutil.rmtree(merged / "tmp/wheels")
    log(f"packing layer {name}")
    return _save(Layer.from_dir(upper, out, overlay_upper=True), key)


def model_store_layer() -> Layer:
    """The storage initializer's entrypoint and every example's trained models."""
    tree = CACHE / "work" / "storage-initializer"
    shutil.rmtree(tree, ignore_errors=True)
    scripts = tree / "storage-initializer/scripts"
    scripts.mkdir(parents=True)
    entrypoint = scripts / "initializer-entrypoint"
    shutil.copy(REPO / "tools/cluster/storage_initializer.py", entrypoint)
    entrypoint.chmod(0o755)
    found = 0
    for models in sorted((REPO / "examples").glob("*/models")):
        target = tree / MODEL_STORE.lstrip("/") / models.parent.name / "models"
        shutil.copytree(models, target)
        found += 1
    if found == 0:
        raise SystemExit("images: no examples/*/models; run `python examples/train.py` first")
    return Layer.from_dir(tree, CACHE / "layers" / "storage-initializer.tar.gz")


def pause_layer(bin_dir: Path) -> Layer:
    tree = CACHE / "work" / "pause"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    shutil.copy(bin_dir / "pause", tree / "pause")
    return Layer.from_dir(tree, CACHE / "layers" / "pause.tar.gz")


def build(bin_dir: Path, out: Path) -> Path:
    rootfs = base_rootfs()
    base = base_layer(rootfs)
    wheelhouse = wheels()
    router_venv = venv_layer("venv-router", rootfs, base, wheelhouse, "infergraph")
    models_venv = venv_layer("venv-models", rootfs, base, wheelhouse, "infergraph[models]")
    store = model_store_layer()
    python_server = {"Env": PYTHON_ENV, "ExposedPorts": {"8080/tcp": {}}}
    images = [
        Image(
            ROUTER_IMAGE,
            [base, router_venv],
            {**python_server, "Entrypoint": ["python", "-m", "router"], "User": APP_USER},
        ),
        Image(
            SKLEARN_IMAGE,
            [base, models_venv],
            {
                **python_server,
                "Entrypoint": [*SERVER, "graph_controller.model_servers.sklearn", *ALL_INTERFACES],
                "User": KSERVE_USER,
            },
        ),
        Image(
            CUSTOM_IMAGE,
            [base, models_venv],
            {
                **python_server,
                "Entrypoint": [*SERVER, "graph_controller.model_servers.custom", *ALL_INTERFACES],
                "User": KSERVE_USER,
            },
        ),
        Image(
            STORAGE_INITIALIZER_IMAGE,
            [base, store],
            {
                "Env": PYTHON_ENV,
                "Entrypoint": ["python3.11", "/storage-initializer/scripts/initializer-entrypoint"],
                "User": KSERVE_USER,
            },
        ),
        Image(
            PAUSE_IMAGE,
            [pause_layer(bin_dir)],
            {"Entrypoint": ["/pause"], "User": "65535:65535"},
        ),
    ]
    log(f"writing {out}")
    write_archive(images, out, CACHE / "work" / "oci-layout")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", type=Path, required=True, help="tools/cluster/build.sh's")
    parser.add_argument("--out", type=Path, default=CACHE / "images.tar")
    args = parser.parse_args()
    print(build(args.bin_dir, args.out))


if __name__ == "__main__":
    main()
