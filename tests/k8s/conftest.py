"""The session's Kubernetes control plane (tests/k8s/envtest.py), started once on first use.

Missing binaries fail the tests that need them, with the command that builds them: a machine
without them must not pass by skipping.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.k8s.controller import Cluster
from tests.k8s.envtest import ControlPlane, MissingBinaries


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    try:
        plane = ControlPlane()
    except MissingBinaries as e:
        pytest.fail(str(e), pytrace=False)
    with plane:
        yield plane


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> ControlPlane:
    """The control plane with config/crd installed and Established."""
    control_plane.install_crds()
    return control_plane


@pytest.fixture
def cluster(crds: ControlPlane, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A fresh namespace of its own (the cluster is shared by the session), admin access."""
    name = f"t{time.monotonic_ns() % 10**9}"
    crds.kubectl("create", "namespace", name)
    access = Cluster(crds, name)
    yield access
    access.close()
    crds.kubectl("delete", "namespace", name, "--wait=false")
