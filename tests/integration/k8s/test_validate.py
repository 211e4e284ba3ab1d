"""Every rendered object, and every example, validates: built-in kinds against the Kubernetes
OpenAPI schemas (strict: unknown fields fail), custom resources against their published CRDs.
The negative cases show that the validator rejects what the API server would."""

import copy

import pytest
import yaml

import k8s_schemas
from conftest import DEPLOY, OVERLAYS, REPO, find

CUSTOM_KINDS = {"LeaderWorkerSet", "ServiceMonitor", "ScaledObject", "InferencePool"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_objects_validate(rendered, validator, overlay):
    for obj in rendered[overlay]:
        validator.validate(obj)


def test_examples_validate(validator):
    examples = sorted((DEPLOY / "examples").glob("*.yaml"))
    assert examples
    for path in examples:
        for obj in yaml.safe_load_all(path.read_text()):
            validator.validate(obj)


def test_every_custom_kind_used_has_a_crd_and_a_licence(rendered, validator):
    used = {o["kind"] for objects in rendered.values() for o in objects} & CUSTOM_KINDS
    assert used == CUSTOM_KINDS
    assert CUSTOM_KINDS <= validator.custom_kinds()
    assert "Apache License" in (REPO / "tests" / "data" / "crds" / "LICENSE").read_text()


def broken(obj, path, value):
    obj = copy.deepcopy(obj)
    node = obj
    for name in path[:-1]:
        node = node[name]
    node[path[-1]] = value
    return obj


@pytest.mark.parametrize("overlay, kind, path, value, message", [
    # An unknown field in a built-in object (a typo of livenessProbe).
    ("cpu", "Deployment", ("spec", "template", "spec", "containers", 0, "livenesProbe"), {},
     "Additional properties"),
    ("cpu", "Service", ("spec", "ports", 0, "port"), "http", "is not of type"),
    # Custom resources: a wrong enum, an unknown field, a missing required field.
    ("multinode-ep", "LeaderWorkerSet", ("spec", "leaderWorkerTemplate", "restartPolicy"),
     "RecreateGroup", "is not one of"),
    ("monitoring", "ServiceMonitor", ("spec", "endpoints", 0, "portName"), "http",
     "Additional properties"),
    ("autoscaling-keda", "ScaledObject", ("spec", "scaleTargetRef", "name"), 3, "is not of type"),
    ("inference-pool", "InferencePool", ("spec", "targetPorts"), [], "should be non-empty"),
])
def test_invalid_objects_are_rejected(rendered, validator, overlay, kind, path, value, message):
    obj = broken(find(rendered[overlay], kind), path, value)
    with pytest.raises(k8s_schemas.SchemaError, match=message):
        validator.validate(obj)


def test_lws_pod_templates_are_checked_as_pod_templates(rendered, validator):
    lws = find(rendered["multinode-ep"], "LeaderWorkerSet")
    path = ("spec", "leaderWorkerTemplate", "workerTemplate", "spec", "containers", 0, "imag")
    with pytest.raises(k8s_schemas.SchemaError, match="workerTemplate.*Additional properties"):
        validator.validate(broken(lws, path, "x"))


def test_an_unknown_kind_is_an_error(validator):
    obj = {"apiVersion": "example.com/v1", "kind": "Nothing", "metadata": {"name": "x"}}
    with pytest.raises(k8s_schemas.SchemaError, match="no schema"):
        validator.validate(obj)
