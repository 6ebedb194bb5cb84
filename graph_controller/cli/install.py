"""`infergraph install`: put InferGraph on a cluster in one of two modes, never over KServe's CRDs.

standalone: config/crd (our KServe-compatible serving.kserve.io CRDs and our infergraph.dev
CRD), then config/default. alongside-kserve: config/crd/infergraph, then
config/alongside-kserve. Before applying, it asks the API server which serving.kserve.io CRDs
exist: standalone refuses to replace one that InferGraph did not install (KServe's, most
likely) unless `--force-crds`; alongside-kserve refuses when KServe's InferenceService CRD is
missing (its controller reads them). Thin shell over kubectl (server-side apply: the
InferenceService CRD is too big for client-side apply's annotation).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from graph_controller.controller.settings import MODES
from schemas.crd import KSERVE_DIR, PART_OF, all_crds

CONFIG = Path(__file__).resolve().parents[2] / "config"
KSERVE_ISVC_CRD = "inferenceservices.serving.kserve.io"
# kubectl calls against an API server: a CRD apply and its Established wait take seconds.
KUBECTL_TIMEOUT = 120.0
# `kubectl wait` fails at once on a CRD whose status has no conditions yet (just created);
# so many tries, half a second apart, cover the API server's usual second.
ESTABLISHED_TRIES = 20
FIELD_MANAGER = "infergraph-install"


class InstallError(Exception):
    """A reason not to install, worded for the user."""


@dataclass(frozen=True, slots=True)
class Kubectl:
    binary: str
    kubeconfig: str | None

    def __call__(self, *args: str) -> str:
        argv = [self.binary, *([f"--kubeconfig={self.kubeconfig}"] if self.kubeconfig else [])]
        try:
            done = subprocess.run(
                [*argv, *args], capture_output=True, text=True, timeout=KUBECTL_TIMEOUT
            )
        except FileNotFoundError as error:
            raise InstallError(f"kubectl not found: {self.binary!r} (--kubectl PATH)") from error
        except subprocess.TimeoutExpired as error:
            raise InstallError(
                f"kubectl {' '.join(args)}: no answer in {KUBECTL_TIMEOUT:.0f}s"
            ) from error
        if done.returncode != 0:
            raise InstallError(f"kubectl {' '.join(args)} failed:\n{done.stderr.strip()}")
        return done.stdout


def kserve_group_crds() -> list[str]:
    """The serving.kserve.io CRD names the standalone install applies."""
    return sorted(
        doc["metadata"]["name"] for path, doc in all_crds().items() if path.startswith(KSERVE_DIR)
    )


def foreign_crds(kubectl: Kubectl, names: Sequence[str]) -> list[str]:
    """Those of `names` that exist on the cluster without our label (KServe's, or anyone's)."""
    listed = json.loads(kubectl("get", "crd", *names, "--ignore-not-found", "-o", "json") or "{}")
    items = listed.get(
        "items", [listed] if listed.get("kind") == "CustomResourceDefinition" else []
    )
    foreign = []
    for item in items:
        labels = item.get("metadata", {}).get("labels") or {}
        if any(labels.get(key) != value for key, value in PART_OF.items()):
            foreign.append(item["metadata"]["name"])
    return sorted(foreign)


def install(kubectl: Kubectl, mode: str, force_crds: bool, config: Path = CONFIG) -> list[str]:
    """Check, then apply; returns kubectl's lines of what it applied."""
    if mode == "standalone":
        foreign = foreign_crds(kubectl, kserve_group_crds())
        if foreign and not force_crds:
            raise InstallError(
                f"these serving.kserve.io CRDs exist and were not installed by InferGraph "
                f"(KServe's?): {', '.join(foreign)}. Replacing them could change what KServe "
                "stores. Use --mode alongside-kserve to run beside KServe, or --force-crds to "
                "replace them with InferGraph's KServe-compatible ones"
            )
        crds, rest = config / "crd", config / "default"
    else:
        if not json.loads(
            kubectl("get", "crd", KSERVE_ISVC_CRD, "--ignore-not-found", "-o", "json") or "{}"
        ):
            raise InstallError(
                f"--mode alongside-kserve needs KServe's CRDs, but {KSERVE_ISVC_CRD} does not "
                "exist: install KServe first, or use --mode standalone"
            )
        crds, rest = config / "crd" / "infergraph", config / "alongside-kserve"
    apply = ("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-o", "name")
    # --force-conflicts: our field manager takes the fields of an earlier owner (KServe's
    # installer) only when the user said --force-crds, or for our own CRDs on an upgrade.
    forced = ("--force-conflicts",) if force_crds or mode != "standalone" else ()
    applied = kubectl(*apply, *forced, "-k", str(crds)).split()
    _wait_established(kubectl, applied)
    applied += kubectl(*apply, "--force-conflicts", "-k", str(rest)).split()
    return applied


def _wait_established(kubectl: Kubectl, names: Sequence[str]) -> None:
    for attempt in range(ESTABLISHED_TRIES):
        try:
            kubectl("wait", "--for=condition=Established", "--timeout=30s", *names)
            return
        except InstallError:
            if attempt == ESTABLISHED_TRIES - 1:
                raise
            time.sleep(0.5)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "install",
        help="install CRDs, RBAC and the controller on a cluster (standalone or beside KServe)",
    )
    p.add_argument("--mode", choices=MODES, default="standalone")
    p.add_argument(
        "--force-crds",
        action="store_true",
        help="standalone: replace serving.kserve.io CRDs InferGraph did not install",
    )
    p.add_argument("--kubectl", default="kubectl", help="the kubectl to run")
    p.add_argument("--kubeconfig", default=None)
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the config/ kustomize tree (default: the repository's config/)",
    )
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    kubectl = Kubectl(args.kubectl, args.kubeconfig)
    try:
        applied = install(kubectl, args.mode, args.force_crds, args.config or CONFIG)
    except InstallError as error:
        print(f"infergraph install: {error}", file=sys.stderr)
        return 1
    for name in applied:
        print(name)
    return 0
