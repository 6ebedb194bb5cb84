"""The fast parts of the cluster tooling, run everywhere: the OCI packer
(tools/cluster/oci.py) checked against the image-layout spec's rules, and the storage
initializer (tools/cluster/storage_initializer.py) copying models as the serving container needs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from tools.cluster.images import venv_key
from tools.cluster.oci import Image, Layer, OCIError, write_archive
from tools.cluster.storage_initializer import StorageError, copy_model, main, source_path


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_text("#!/bin/sh\n")
    (root / "usr/bin/tool").chmod(0o755)
    os.link(root / "usr/bin/tool", root / "usr/bin/tool-again")
    (root / "usr/bin/alias").symlink_to("tool")
    return root


def test_a_layer_names_its_gzip_by_digest_and_its_tar_by_diff_id(
    tree: Path, tmp_path: Path
) -> None:
    layer = Layer.from_dir(tree, tmp_path / "layer.tar.gz")
    blob = layer.path.read_bytes()
    assert (layer.digest, layer.size) == (sha256(blob), len(blob))
    plain = gzip.decompress(blob)
    assert layer.diff_id == sha256(plain)
    with tarfile.open(fileobj=io.BytesIO(plain)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == [
        "usr",
        "usr/bin",
        "usr/bin/alias",
        "usr/bin/tool",
        "usr/bin/tool-again",
    ]
    assert members["usr/bin/alias"].issym()
    assert members["usr/bin/alias"].linkname == "tool"
    assert members["usr/bin/tool-again"].islnk()
    assert members["usr/bin/tool"].mode & 0o777 == 0o755


def test_the_same_tree_packs_to_the_same_digest(tree: Path, tmp_path: Path) -> None:
    first = Layer.from_dir(tree, tmp_path / "a.tar.gz")
    second = Layer.from_dir(tree, tmp_path / "b.tar.gz")
    assert (first.digest, first.diff_id) == (second.digest, second.diff_id)


def test_an_overlay_whiteout_becomes_an_oci_whiteout(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("a whiteout is a 0:0 character device, which only root can make")
    os.mknod(upper / "etc/removed", 0o600 | 0o020000, os.makedev(0, 0))
    layer = Layer.from_dir(upper, tmp_path / "l.tar.gz", overlay_upper=True)
    with tarfile.open(layer.path) as tar:
        names = tar.getnames()
    assert names == ["etc", "etc/.wh.removed"]


def test_an_opaque_overlay_directory_is_refused(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "var").mkdir(parents=True)
    try:
        os.setxattr(upper / "var", "trusted.overlay.opaque", b"y")
    except OSError:
        pytest.skip("trusted.* xattrs need root")
    with pytest.raises(OCIError, match="var: an opaque overlay directory"):
        Layer.from_dir(upper, tmp_path / "l.tar.gz", overlay_upper=True)


def test_the_archive_is_an_oci_layout_naming_each_image(tree: Path, tmp_path: Path) -> None:
    layer = Layer.from_dir(tree, tmp_path / "layer.tar.gz")
    images = [
        Image("docker.io/example/a:1", [layer], {"Entrypoint": ["/usr/bin/tool"]}),
        Image("docker.io/example/b:2", [layer], {"User": "10001:10001"}),
    ]
    write_archive(images, tmp_path / "images.tar", tmp_path / "work")
    with tarfile.open(tmp_path / "images.tar") as tar:
        files = {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}

    def blob(digest: str) -> bytes:
        data = files[f"blobs/sha256/{digest.removeprefix('sha256:')}"]
        assert sha256(data) == digest  # every blob is stored under its own digest
        return data

    index = json.loads(files["index.json"])
    named = {m["annotations"]["io.containerd.image.name"]: m for m in index["manifests"]}
    assert sorted(named) == ["docker.io/example/a:1", "docker.io/example/b:2"]
    for image in images:
        descriptor = named[image.name]
        assert descriptor["platform"] == {"architecture": "amd64", "os": "linux"}
        manifest = json.loads(blob(descriptor["digest"]))
        assert descriptor["size"] == len(blob(descriptor["digest"]))
        assert [entry["digest"] for entry in manifest["layers"]] == [layer.digest]
        blob(layer.digest)
        config = json.loads(blob(manifest["config"]["digest"]))
        assert config["rootfs"] == {"type": "layers", "diff_ids": [layer.diff_id]}
        assert config["config"] == image.config


def write_wheel(path: Path, members: dict[str, bytes], year: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, (year, 1, 1, 0, 0, 0)), data)


def test_a_venv_layer_is_reused_for_rebuilt_wheels_and_rebuilt_for_changed_ones(
    tree: Path, tmp_path: Path
) -> None:
    base = Layer.from_dir(tree, tmp_path / "base.tar.gz")
    members = {"pkg/__init__.py": b"x = 1\n", "pkg-0.1.dist-info/METADATA": b"Name: pkg\n"}
    write_wheel(tmp_path / "a/pkg-0.1-py3-none-any.whl", members, 2020)
    write_wheel(tmp_path / "b/pkg-0.1-py3-none-any.whl", members, 2024)  # rebuilt, same code
    changed = {**members, "pkg/__init__.py": b"x = 2\n"}
    write_wheel(tmp_path / "c/pkg-0.1-py3-none-any.whl", changed, 2020)
    key = venv_key(tmp_path / "a", "pkg", base)
    assert venv_key(tmp_path / "b", "pkg", base) == key
    assert venv_key(tmp_path / "c", "pkg", base) != key
    assert venv_key(tmp_path / "a", "pkg[extra]", base) != key


# --- storage initializer --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        pytest.param("file:///models/iris/m", "/models/iris/m", id="file"),
        pytest.param("/models/iris/m", "/models/iris/m", id="absolute-path"),
        pytest.param("pvc://claim/iris/m", "/mnt/pvc/iris/m", id="pvc-as-kserve-mounts-it"),
    ],
)
def test_source_path(uri: str, path: str) -> None:
    assert source_path(uri) == Path(path)


def test_other_schemes_are_refused_with_the_supported_ones() -> None:
    with pytest.raises(StorageError, match=r"scheme 's3' is not supported.*file://, pvc://"):
        source_path("s3://bucket/model")


def test_a_folder_is_copied_not_linked(tmp_path: Path) -> None:
    source = tmp_path / "store/iris"
    (source / "sub").mkdir(parents=True)
    (source / "model.joblib").write_bytes(b"weights")
    (source / "sub/extra.txt").write_text("x")
    out = tmp_path / "mnt/models"
    copied = copy_model(f"file://{source}", out)
    assert copied == [out / "model.joblib", out / "sub"]
    assert not (out / "model.joblib").is_symlink()
    assert (out / "model.joblib").read_bytes() == b"weights"
    assert (out / "sub/extra.txt").read_text() == "x"


def test_a_missing_source_fails_with_the_uri(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([f"file://{tmp_path}/nothing", str(tmp_path / "out")]) == 1
    assert f"storageUri 'file://{tmp_path}/nothing'" in capsys.readouterr().err
