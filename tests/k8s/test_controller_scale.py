"""The scale run's code path at a small size (load/controller_scale.py): every graph becomes
Ready and the report is complete. No timing assertions: the figures are only reported."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.k8s.envtest import REPO, ControlPlane

GRAPHS = 30
TIMEOUT = 180.0  # seconds; about 20 on an idle 2-core machine


def test_scale_run_small(crds: ControlPlane, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "controller_scale", REPO / "load" / "controller_scale.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        result = module.run_scale(crds, GRAPHS, 4, tmp_path, TIMEOUT)
    finally:
        crds.kubectl("delete", "namespace", module.NAMESPACE, "--wait=false")
    assert result["graphs"] == GRAPHS
    assert result["controller_exit"] == 0
    # Each owner needs at least a Deployment and a Service applied and its status written.
    assert result["applies"] >= 4 * GRAPHS
    assert result["status_writes"] >= 2 * GRAPHS
    assert result["reconciles"] >= 2 * GRAPHS
    # Read from /proc while it ran: a controller that died early would show no figure.
    assert 20 < result["controller_peak_rss_mib"] < 1024
