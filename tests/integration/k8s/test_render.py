"""Every overlay renders; our renderer agrees with kustomize itself where kubectl is installed;
and the renderer's strategic merge does what kustomize's does on hand-made cases."""

import shutil
import subprocess

import pytest
import yaml

import kustomize_lite
from conftest import DEPLOY, OVERLAYS, find

EXPECTED_KINDS = {
    "cpu": {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"},
    "gpu": {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"},
    "multinode-ep": {"ConfigMap", "LeaderWorkerSet", "Service", "PodDisruptionBudget"},
    "monitoring": {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor"},
    "autoscaling": {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor",
                    "HorizontalPodAutoscaler"},
    "autoscaling-keda": {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
                         "ServiceMonitor", "ScaledObject"},
    "inference-pool": {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
                       "InferencePool"},
}


def test_every_overlay_is_covered():
    assert set(OVERLAYS) == set(EXPECTED_KINDS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_expected_objects(rendered, overlay):
    kinds = [o["kind"] for o in rendered[overlay]]
    assert sorted(kinds) == sorted(EXPECTED_KINDS[overlay])


def test_overlays_patch_what_they_say(rendered):
    gpu = find(rendered["gpu"], "Deployment")["spec"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert find(rendered["gpu"], "ConfigMap", "switchyard-config")["data"]["SERVE_DEVICE"] == "cuda"
    # The gpu patch resized one volume and kept the others.
    volumes = {v["name"]: v for v in gpu["volumes"]}
    assert volumes["dshm"]["emptyDir"]["sizeLimit"] == "8Gi"
    assert set(volumes) == {"models", "dshm", "tmp"}
    assert find(rendered["cpu"], "Deployment")["spec"]["replicas"] == 2
    service = find(rendered["multinode-ep"], "Service")
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "switchyard",
                                           "leaderworkerset.sigs.k8s.io/worker-index": "0"}


def canonical(objects):
    return sorted((yaml.safe_dump(o, sort_keys=True) for o in objects))


def kubectl_kustomize_works():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return False
    probe = subprocess.run([kubectl, "kustomize", str(DEPLOY / "base")], capture_output=True,
                           timeout=60)
    return probe.returncode == 0


@pytest.mark.skipif(not kubectl_kustomize_works(), reason="no kubectl with kustomize here")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_same_output_as_kubectl_kustomize(rendered, overlay):
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    theirs = [d for d in yaml.safe_load_all(out) if d]
    assert canonical(rendered[overlay]) == canonical(theirs)


def write(tmp_path, name, text):
    (tmp_path / name).write_text(text)


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  template:
    spec:
      tolerations: [{key: a, operator: Exists}]
      containers:
      - name: c
        args: [x, y]
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
        ports: [{name: http, containerPort: 80}]
"""


def test_strategic_merge_keys_and_replaced_lists(tmp_path):
    write(tmp_path, "d.yaml", DEPLOYMENT)
    write(tmp_path, "p.yaml", """
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  template:
    spec:
      tolerations: [{key: b, operator: Exists}]
      containers:
      - name: c
        args: [z]
        env: [{name: B, value: "3"}, {name: C, value: "4"}]
        ports: [{containerPort: 80, protocol: TCP}]
""")
    write(tmp_path, "kustomization.yaml", "resources: [d.yaml]\npatches:\n- path: p.yaml\n")
    [d] = kustomize_lite.render(tmp_path)
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["z"]  # no merge key: replaced
    # kustomize's order: the patch's items first, then the others.
    assert c["env"] == [{"name": "B", "value": "3"}, {"name": "C", "value": "4"},
                        {"name": "A", "value": "1"}]
    assert c["ports"] == [{"name": "http", "containerPort": 80, "protocol": "TCP"}]
    assert d["spec"]["template"]["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]


def test_patch_delete_and_null(tmp_path):
    write(tmp_path, "d.yaml", DEPLOYMENT + "---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
          "spec: {selector: {a: b, c: d}}\n")
    write(tmp_path, "del.yaml", "$patch: delete\napiVersion: apps/v1\nkind: Deployment\n"
          "metadata: {name: d}\n")
    write(tmp_path, "null.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n"
          "spec: {selector: {a: null}}\n")
    write(tmp_path, "kustomization.yaml",
          "resources: [d.yaml]\npatches:\n- path: del.yaml\n- path: null.yaml\n")
    [s] = kustomize_lite.render(tmp_path)
    assert s["kind"] == "Service" and s["spec"]["selector"] == {"c": "d"}


def test_custom_resource_lists_are_replaced(tmp_path):
    write(tmp_path, "x.yaml", "apiVersion: example.com/v1\nkind: X\nmetadata: {name: x}\n"
          "spec: {containers: [{name: a, image: i}]}\n")
    write(tmp_path, "p.yaml", "apiVersion: example.com/v1\nkind: X\nmetadata: {name: x}\n"
          "spec: {containers: [{name: a}]}\n")
    write(tmp_path, "kustomization.yaml", "resources: [x.yaml]\npatches:\n- path: p.yaml\n")
    [x] = kustomize_lite.render(tmp_path)
    assert x["spec"]["containers"] == [{"name": "a"}]


@pytest.mark.parametrize("kustomization, error", [
    ("resources: [d.yaml]\nnamePrefix: x-\n", "unsupported fields"),
    ("resources: [missing.yaml]\n", "does not exist"),
    ("resources: [d.yaml, d.yaml]\n", "defined twice"),
    ("resources: [d.yaml]\npatches:\n- path: d.yaml\n  target: {kind: Deployment}\n",
     "only `patches: - path:`"),
])
def test_what_it_does_not_support_is_an_error(tmp_path, kustomization, error):
    write(tmp_path, "d.yaml", DEPLOYMENT)
    write(tmp_path, "kustomization.yaml", kustomization)
    with pytest.raises(kustomize_lite.KustomizeError, match=error):
        kustomize_lite.render(tmp_path)


def test_a_patch_that_matches_nothing_is_an_error(tmp_path):
    write(tmp_path, "d.yaml", DEPLOYMENT)
    write(tmp_path, "p.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: other}\n")
    write(tmp_path, "kustomization.yaml", "resources: [d.yaml]\npatches:\n- path: p.yaml\n")
    with pytest.raises(kustomize_lite.KustomizeError, match="matches 0 resources"):
        kustomize_lite.render(tmp_path)
