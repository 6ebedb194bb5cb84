"""The session's one-node cluster with real containers (tests/cluster/node.py).

These tests need root, Debian's containerd/runc/CNI plugins, the binaries of
tools/cluster/build.sh and the image archive of tools/cluster/images.py: `make cluster-e2e`
provides all of them and sets INFERGRAPH_CLUSTER_IMAGES. Without it (as in `make test`) the
tests marked `cluster` are skipped, said so in the summary; the rest of tests/cluster (the
packer and the storage initializer) runs everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.node import Cluster
from tests.k8s.envtest import bin_dir_from_env

IMAGES_ENV = "INFERGRAPH_CLUSTER_IMAGES"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get(IMAGES_ENV):
        return
    skip = pytest.mark.skip(reason=f"needs `make cluster-e2e` ({IMAGES_ENV} unset)")
    for item in items:
        if item.get_closest_marker("cluster"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    images = Path(os.environ[IMAGES_ENV])
    with Cluster(bin_dir_from_env(), images) as running:
        yield running
