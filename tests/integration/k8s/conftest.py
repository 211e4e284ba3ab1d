"""Shared fixtures of the Kubernetes manifest tests: where deploy/kubernetes is, every overlay
rendered once, the validator, and `switchyard serve --help` (SWITCHYARD_BIN; ctest sets it)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import k8s_schemas  # noqa: E402
import kustomize_lite  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if p.is_dir())
# The oldest Kubernetes the manifests support (preStop `sleep` is on by default from 1.30) and the
# newest whose schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]


@pytest.fixture(scope="session")
def rendered():
    """{overlay name: [objects]}."""
    return {name: kustomize_lite.render(DEPLOY / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="session")
def validator():
    return k8s_schemas.Validator(REPO / "tests" / "data" / "crds", KUBERNETES_VERSIONS)


@pytest.fixture(scope="session")
def serve_help():
    binary = os.environ.get("SWITCHYARD_BIN", str(REPO / "build" / "server" / "switchyard"))
    if not Path(binary).exists():
        pytest.skip(f"no switchyard binary at {binary} (set SWITCHYARD_BIN)")
    out = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def find(objects, kind, name="switchyard"):
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def pod_specs(objects):
    """(description, pod spec, pod labels) of every pod template in `objects`."""
    specs = []
    for o in objects:
        if o["kind"] == "Deployment":
            t = o["spec"]["template"]
            specs.append((f"Deployment/{o['metadata']['name']}", t["spec"], t["metadata"]["labels"]))
        elif o["kind"] == "LeaderWorkerSet":
            # The labels LWS adds to every pod it creates: the leader is worker 0 of its group.
            lwt = o["spec"]["leaderWorkerTemplate"]
            for role, index in (("leaderTemplate", "0"), ("workerTemplate", "1")):
                t = lwt[role]
                labels = {**t["metadata"]["labels"],
                          "leaderworkerset.sigs.k8s.io/name": o["metadata"]["name"],
                          "leaderworkerset.sigs.k8s.io/worker-index": index}
                specs.append((f"LeaderWorkerSet/{o['metadata']['name']} {role}", t["spec"],
                              labels))
    return specs
