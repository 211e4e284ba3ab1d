"""Validation of rendered Kubernetes objects, as strict as `kubectl apply --validate=strict`:
built-in kinds against the Kubernetes OpenAPI schemas that kubernetes-validate ships (the
"-strict" variants, which refuse unknown fields), custom resources against the openAPIV3Schema
of their published CRDs kept in tests/data/crds (README.md there says where each comes from).

A CRD schema is turned into a JSON schema the way the API server reads it: an object schema with
`properties` and neither `additionalProperties` nor x-kubernetes-preserve-unknown-fields accepts
no other field (strict field validation), and `x-kubernetes-int-or-string` accepts both types.
CEL rules (x-kubernetes-validations) are not evaluated. The abridged LeaderWorkerSet CRD marks
its two pod templates with `x-switchyard-pod-template-spec`: those subtrees are validated as
core/v1 PodTemplateSpec (wrapped in a PodTemplate) with kubernetes-validate.
"""

import copy
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

POD_TEMPLATE_MARK = "x-switchyard-pod-template-spec"


class SchemaError(Exception):
    pass


def load_crd_schemas(crd_dir):
    """{(group, version, kind): openAPIV3Schema} from every CRD file in `crd_dir`."""
    schemas = {}
    for path in sorted(Path(crd_dir).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            kind = spec["names"]["kind"]
            if "validation" in spec:  # apiextensions.k8s.io/v1beta1: one schema for all versions
                versions = [v["name"] for v in spec.get("versions", [])] or [spec["version"]]
                for version in versions:
                    schemas[(spec["group"], version, kind)] = spec["validation"]["openAPIV3Schema"]
            for version in spec.get("versions", []):
                if "schema" in version:
                    schemas[(spec["group"], version["name"], kind)] = \
                        version["schema"]["openAPIV3Schema"]
    return schemas


def to_json_schema(schema):
    """A copy of a CRD's structural schema that jsonschema checks with API-server semantics."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if not isinstance(node, dict):
            return
        if node.get("x-kubernetes-int-or-string"):
            node.pop("type", None)
            node.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
        if node.get("nullable"):
            if "type" in node:
                node["type"] = [node["type"], "null"]
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        for key in ("properties", "patternProperties"):
            for child in node.get(key, {}).values():
                walk(child)
        for key in ("items", "additionalProperties", "not"):
            walk(node.get(key))
        for key in ("anyOf", "allOf", "oneOf"):
            for child in node.get(key, []):
                walk(child)

    walk(schema)
    # The API server takes apiVersion, kind and metadata of every object, listed or not (old
    # CRDs leave metadata out).
    properties = schema.setdefault("properties", {})
    properties.setdefault("apiVersion", {"type": "string"})
    properties.setdefault("kind", {"type": "string"})
    properties.setdefault("metadata", {"type": "object"})
    return schema


def pod_template_paths(schema, path=()):
    """The paths (tuples of property names) of subtrees marked as pod templates."""
    if not isinstance(schema, dict):
        return []
    if schema.get(POD_TEMPLATE_MARK):
        return [path]
    found = []
    for name, child in schema.get("properties", {}).items():
        found.extend(pod_template_paths(child, path + (name,)))
    return found


def dig(obj, path):
    for name in path:
        if not isinstance(obj, dict) or name not in obj:
            return None
        obj = obj[name]
    return obj


class Validator:
    def __init__(self, crd_dir, kubernetes_versions):
        self.crds = load_crd_schemas(crd_dir)
        self.kubernetes_versions = kubernetes_versions

    def custom_kinds(self):
        return {kind for (_, _, kind) in self.crds}

    def validate(self, obj):
        """Raises SchemaError naming the object and the first violation."""
        api_version = obj.get("apiVersion", "")
        group, _, version = api_version.rpartition("/")
        kind = obj.get("kind")
        name = f"{kind}/{dig(obj, ('metadata', 'name'))}"
        if not isinstance(dig(obj, ("metadata", "name")), str):
            raise SchemaError(f"{name}: metadata.name is missing")
        schema = self.crds.get((group, version, kind))
        if schema is None:
            for k8s_version in self.kubernetes_versions:
                self._validate_builtin(obj, k8s_version, name)
            return
        try:
            jsonschema.validate(obj, to_json_schema(schema))
        except jsonschema.ValidationError as e:
            raise SchemaError(f"{name} ({api_version}): {e.message} at "
                              f"{'.'.join(str(p) for p in e.absolute_path)}") from None
        for path in pod_template_paths(schema):
            template = dig(obj, path)
            if template is None:
                continue
            wrapped = {"apiVersion": "v1", "kind": "PodTemplate",
                       "metadata": {"name": "check"}, "template": template}
            for k8s_version in self.kubernetes_versions:
                self._validate_builtin(wrapped, k8s_version, f"{name} {'.'.join(path)}")

    @staticmethod
    def _validate_builtin(obj, k8s_version, name):
        try:
            kubernetes_validate.validate(obj, k8s_version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            raise SchemaError(f"{name}: no schema for {obj.get('apiVersion')} {obj.get('kind')} "
                              f"in Kubernetes {k8s_version} nor in tests/data/crds") from None
        except kubernetes_validate.ValidationError as e:
            raise SchemaError(f"{name} (Kubernetes {k8s_version}): {e.message} at "
                              f"{'.'.join(str(p) for p in e.absolute_path)}") from None
