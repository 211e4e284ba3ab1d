"""A renderer for the subset of kustomize that deploy/kubernetes uses, so that CI can render every
overlay without the kustomize binary (neither Debian nor PyPI ship a current one).

Supported, with kustomize's meaning:
  resources:  files (one or more YAML documents) and directories holding a kustomization.yaml
  patches:    `- path: FILE` with a strategic-merge patch, matched to a resource by kind and
              metadata.name (and apiVersion's group); `$patch: delete` at the top deletes it
Anything else in a kustomization.yaml is an error rather than silently ignored. The strategic
merge knows the merge keys of the built-in lists this project patches; in any other list, and in
every list of a custom resource (kustomize has no schema for those), a patch replaces the list.
test_render.py compares the output with `kubectl kustomize` where kubectl is installed.
"""

import copy
from pathlib import Path

import yaml

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "patches"}
BUILTIN_GROUPS = {"", "apps", "policy", "autoscaling", "batch"}

# patchMergeKey of the built-in list fields we merge, by the field's name and the kind of object
# the list sits in (the Kubernetes API's x-kubernetes-patch-merge-key annotations).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}


class KustomizeError(Exception):
    pass


def group_of(api_version):
    return api_version.split("/")[0] if "/" in api_version else ""


def load_documents(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def render(directory):
    """The objects the kustomization in `directory` produces, in kustomize's input order."""
    directory = Path(directory)
    kustomization_file = directory / "kustomization.yaml"
    if not kustomization_file.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    k = yaml.safe_load(kustomization_file.read_text()) or {}
    unknown = set(k) - KUSTOMIZATION_FIELDS
    if unknown:
        raise KustomizeError(f"{kustomization_file}: unsupported fields {sorted(unknown)}")
    objects = []
    for entry in k.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            objects.extend(render(path))
        elif path.is_file():
            objects.extend(load_documents(path))
        else:
            raise KustomizeError(f"{kustomization_file}: resource {entry} does not exist")
    seen = set()
    for obj in objects:
        key = identity(obj)
        if key in seen:
            raise KustomizeError(f"{kustomization_file}: {key} is defined twice")
        seen.add(key)
    for patch_entry in k.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise KustomizeError(f"{kustomization_file}: only `patches: - path:` is supported")
        for patch in load_documents(directory / patch_entry["path"]):
            objects = apply_patch(objects, patch, f"{directory / patch_entry['path']}")
    return objects


def identity(obj):
    return (group_of(obj.get("apiVersion", "")), obj.get("kind"), obj["metadata"]["name"])


def apply_patch(objects, patch, where):
    key = identity(patch)
    matches = [i for i, obj in enumerate(objects) if identity(obj) == key]
    if len(matches) != 1:
        raise KustomizeError(f"{where}: the patch matches {len(matches)} resources, not 1")
    index = matches[0]
    if patch.get("$patch") == "delete":
        return objects[:index] + objects[index + 1:]
    builtin = key[0] in BUILTIN_GROUPS
    patched = merge(objects[index], patch, kind=key[1], builtin=builtin)
    return objects[:index] + [patched] + objects[index + 1:]


def merge(target, patch, kind, builtin, field=None):
    """Strategic merge of `patch` into a copy of `target`."""
    if isinstance(patch, dict) and isinstance(target, dict):
        if "$patch" in patch:
            raise KustomizeError(f"unsupported directive $patch: {patch['$patch']} in {field}")
        out = copy.deepcopy(target)
        for name, value in patch.items():
            if value is None:
                out.pop(name, None)
            elif name in out:
                out[name] = merge(out[name], value, kind, builtin, field=name)
            else:
                out[name] = copy.deepcopy(value)
        return out
    if isinstance(patch, list) and isinstance(target, list):
        merge_key = list_merge_key(field, kind) if builtin else None
        if merge_key is None:
            return copy.deepcopy(patch)
        # As kustomize orders them: the patch's items (merged into their originals) in the
        # patch's order, then the target's items the patch does not name.
        by_key = {item[merge_key]: item for item in target}
        named = {item[merge_key] for item in patch}
        out = [merge(by_key[item[merge_key]], item, kind, builtin) if item[merge_key] in by_key
               else copy.deepcopy(item) for item in patch]
        return out + [copy.deepcopy(item) for item in target if item[merge_key] not in named]
    return copy.deepcopy(patch)


def list_merge_key(field, kind):
    if field == "ports":
        # A Service's ports merge on the port, a container's on the containerPort.
        return "port" if kind == "Service" else "containerPort"
    return MERGE_KEYS.get(field)
