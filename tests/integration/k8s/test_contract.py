"""The manifests against the binary and the server's documented behaviour: every flag they pass
exists in `switchyard serve --help` and every value fits the type and range it shows there;
probes, ports and scrape paths are routes and ports the server serves (docs/serving.md's route
table and the flags themselves); shutdown timing adds up; the LeaderWorkerSet's pods are the
Deployment's; the metrics the autoscalers and the inference gateway read are exported."""

import re

import pytest
import yaml

from conftest import DEPLOY, OVERLAYS, REPO, find, pod_specs

HELP_FLAG = re.compile(r"^\s{2}(?:-\w,)?(--[a-z0-9-]+)(?:\s+((?:TEXT|INT|UINT|FLOAT)\S*"
                       r"(?: in \[[^\]]*\])?))?")
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def help_flags(serve_help):
    """{flag: type spec or None for a boolean flag}, e.g. {"--port": "INT:INT in [1 - 65535]"}."""
    flags = {}
    for line in serve_help.splitlines():
        m = HELP_FLAG.match(line)
        if m:
            flags[m.group(1)] = m.group(2)
    return flags


def value_fits(value, spec):
    """Whether `value` is what CLI11 accepts for a flag whose --help type is `spec`."""
    base, _, check = spec.partition(":")
    number = {"INT": int, "UINT": int, "FLOAT": float}.get(base)
    if number is not None:
        try:
            parsed = number(value)
        except ValueError:
            return False
        if base == "UINT" and parsed < 0:
            return False
        if check == "POSITIVE":
            return parsed > 0
        if check == "NONNEGATIVE":
            return parsed >= 0
        r = re.search(r"in \[([-\d.]+) - ([-\d.]+)\]", check)
        return r is None or float(r.group(1)) <= parsed <= float(r.group(2))
    if check.startswith("{"):
        return value in check.strip("{}").split(",")
    return True


def containers(objects):
    """(description, container, pod spec, pod labels) of every container in `objects`."""
    return [(f"{where} {c['name']}", c, spec, labels)
            for where, spec, labels in pod_specs(objects) for c in spec["containers"]]


def parse_args(args):
    """`serve` args as {flag: value or None}: a flag takes the next item unless that is a flag."""
    assert args[0] == "serve", args
    flags, i = {}, 1
    while i < len(args):
        assert args[i].startswith("--"), f"stray argument {args[i]!r}"
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            flags[args[i]] = args[i + 1]
            i += 2
        else:
            flags[args[i]] = None
            i += 1
    return flags


def environment(container, objects):
    """{name: value} the container gets from ConfigMaps (envFrom) and literal env, plus the
    names set from elsewhere (Secrets, the downward API) mapped to None."""
    env = {}
    for source in container.get("envFrom", []):
        env.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for e in container.get("env", []):
        env[e["name"]] = e.get("value")
    return env


def served_routes():
    """GET routes of docs/serving.md's route table."""
    text = (REPO / "docs" / "serving.md").read_text()
    routes = set(re.findall(r"^\| `GET (/[^` ]*)`", text, re.M))
    routes |= set(re.findall(r"^\| `GET [^`]*` \(`(/[^`]*)`\)", text, re.M))
    assert {"/health", "/metrics"} <= routes, routes
    return routes


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_flags_exist_and_values_fit(rendered, serve_help, overlay):
    flags = help_flags(serve_help)
    assert "--model" in flags and flags["--port"].startswith("INT")
    for where, c, _, _ in containers(rendered[overlay]):
        env = environment(c, rendered[overlay])
        for flag, value in parse_args(c["args"]).items():
            assert flag in flags, f"{where}: {flag} is not a flag of `switchyard serve`"
            spec = flags[flag]
            if spec is None:
                assert value is None, f"{where}: {flag} takes no value"
                continue
            assert value is not None, f"{where}: {flag} needs a value"
            for name in VAR_REF.findall(value):
                # Kubernetes leaves an undefined $(VAR) as it is: that would be the value.
                assert name in env, f"{where}: {flag} uses $({name}), which is not set"
            resolved = VAR_REF.sub(lambda m: env[m.group(1)] or "", value)
            if not VAR_REF.search(value) or all(env[n] is not None for n in VAR_REF.findall(value)):
                assert value_fits(resolved, spec), f"{where}: {flag} {resolved!r} is not {spec}"


def test_value_checks_reject_what_cli11_rejects():
    assert value_fits("8000", "INT:INT in [1 - 65535]")
    assert not value_fits("0", "INT:INT in [1 - 65535]")
    assert not value_fits("64.5", "INT:POSITIVE")
    assert not value_fits("0", "INT:POSITIVE")
    assert value_fits("ilp", "TEXT:{greedy,ilp}")
    assert not value_fits("best", "TEXT:{greedy,ilp}")
    assert value_fits("30", "FLOAT")


def test_device_and_log_level_values(rendered):
    for overlay in OVERLAYS:
        data = find(rendered[overlay], "ConfigMap", "switchyard-config")["data"]
        assert re.fullmatch(r"cpu|cuda(:\d+)?", data["SERVE_DEVICE"]), overlay
        assert data["SERVE_LOG_LEVEL"] in {"trace", "debug", "info", "warn", "error"}
    assert find(rendered["gpu"], "ConfigMap", "switchyard-config")["data"]["SERVE_DEVICE"] == "cuda"


def serving_containers(objects):
    """The containers that serve HTTP: a Deployment's, and LeaderWorkerSet leaders'."""
    return [(w, c, s, l) for w, c, s, l in containers(objects) if "workerTemplate" not in w]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_probes_and_shutdown_match_the_server(rendered, overlay):
    routes = served_routes()
    for where, c, spec, _ in serving_containers(rendered[overlay]):
        flags = parse_args(c["args"])
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        # The server listens on 127.0.0.1 unless told otherwise.
        assert flags["--host"] == "0.0.0.0", where
        assert ports["http"] == int(flags["--port"]), where
        assert ports["grpc"] == int(flags["--grpc-port"]), where
        assert c["startupProbe"]["httpGet"]["path"] == "/health/ready"
        assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert c["livenessProbe"]["httpGet"]["path"] == "/health"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"]["path"] in routes, (where, probe)
            assert c[probe]["httpGet"]["port"] in ports, (where, probe)
        # preStop's sleep, then the drain of --shutdown-timeout, then 5 s to exit.
        drain = float(flags["--shutdown-timeout"])
        pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert spec["terminationGracePeriodSeconds"] >= pre_stop + drain + 5, where
        volumes = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert flags["--model"] == "$(SERVE_MODEL)"
        model = find(rendered[overlay], "ConfigMap", "switchyard-config")["data"]["SERVE_MODEL"]
        assert model.startswith("/models/") and volumes["/models"] == "models"
        shm = next(v for v in spec["volumes"] if v["name"] == volumes["/dev/shm"])
        assert shm["emptyDir"]["medium"] == "Memory"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_key_comes_from_an_optional_secret(rendered, overlay):
    for where, c, _, _ in serving_containers(rendered[overlay]):
        [key] = [e for e in c["env"] if e["name"] == "SWITCHYARD_API_KEY"]
        ref = key["valueFrom"]["secretKeyRef"]
        assert ref["optional"] is True, where
        # Not on the command line, where `ps` and the pod spec would show it.
        assert "--api-key" not in c["args"]


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_and_references(rendered, overlay):
    objects = rendered[overlay]
    service = find(objects, "Service")
    serving = serving_containers(objects)
    for where, c, _, labels in containers(objects):
        selected = labels_match(service["spec"]["selector"], labels)
        # Only pods that serve HTTP are behind the Service (LWS workers are not).
        assert selected == ("workerTemplate" not in where), where
        assert labels_match(find(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                            labels), where
    for port in service["spec"]["ports"]:
        for where, c, _, _ in serving:
            assert port["targetPort"] in {p["name"] for p in c["ports"]}, where
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    for o in objects:
        if o["kind"] == "ServiceMonitor":
            assert labels_match(o["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
            for endpoint in o["spec"]["endpoints"]:
                assert endpoint["port"] in service_ports
                assert endpoint["path"] in served_routes()
        if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject"):
            assert find(objects, "Deployment", o["spec"]["scaleTargetRef"]["name"])
        if o["kind"] == "InferencePool":
            http_ports = {p["containerPort"] for _, c, _, _ in serving for p in c["ports"]
                          if p["name"] == "http"}
            assert [p["number"] for p in o["spec"]["targetPorts"]] == sorted(http_ports)
            for _, _, _, labels in serving:
                assert labels_match(o["spec"]["selector"]["matchLabels"], labels)
            # The CRD's CEL rule (not evaluated by the validator): a Service needs its port.
            assert "port" in o["spec"]["endpointPickerRef"]


def test_leader_worker_set_runs_the_deployments_pods(rendered):
    """The LWS repeats the cpu overlay's pod spec: only the rank-group additions may differ."""
    deployment = find(rendered["cpu"], "Deployment")["spec"]["template"]["spec"]
    lwt = find(rendered["multinode-ep"], "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]
    assert lwt["restartPolicy"] == "RecreateGroupOnPodRestart"
    assert lwt["size"] >= 2
    leader = lwt["leaderTemplate"]["spec"]
    [c] = leader["containers"]
    flags = parse_args(c["args"])
    rendezvous = {p["name"]: p["containerPort"] for p in c["ports"]}["rendezvous"]
    assert int(flags["--ep-port"]) == rendezvous
    without_ep = [a for a in c["args"] if a not in ("--ep-port", flags["--ep-port"])]
    expected = yaml.safe_load(yaml.safe_dump(deployment))
    got = yaml.safe_load(yaml.safe_dump(leader))
    got["containers"][0]["args"] = without_ep
    got["containers"][0]["ports"] = [p for p in c["ports"] if p["name"] != "rendezvous"]
    assert got == expected
    # Workers: the same command and pod, without what only a server needs.
    worker = yaml.safe_load(yaml.safe_dump(lwt["workerTemplate"]["spec"]))
    assert worker["containers"][0]["args"] == c["args"]
    expected_worker = yaml.safe_load(yaml.safe_dump(leader))
    for field in ("ports", "startupProbe", "readinessProbe", "livenessProbe", "lifecycle"):
        del expected_worker["containers"][0][field]
    expected_worker["containers"][0]["env"] = [
        e for e in c["env"] if e["name"] != "SWITCHYARD_API_KEY"]
    assert worker == expected_worker


def test_the_binary_reads_the_leader_worker_set_variables():
    """LWS sets these in every container; Switchyard takes its rank group from them."""
    source = (REPO / "engine" / "dist" / "dist_env.cc").read_text()
    for variable in ("LWS_WORKER_INDEX", "LWS_GROUP_SIZE", "LWS_LEADER_ADDRESS"):
        assert f'"{variable}"' in source, variable


def exported_metrics():
    """Metric names the server registers (server/metrics/metrics.cc) and documents."""
    source = (REPO / "server" / "metrics" / "metrics.cc").read_text()
    registered = set(re.findall(r'"((?:vllm:|switchyard_)[a-z_:]+)"', source))
    documented = set(re.findall(r"`((?:vllm:|switchyard_)[a-z_:]+)`",
                                (REPO / "docs" / "metrics.md").read_text()))
    return registered & documented


# What the Gateway API Inference Extension's endpoint picker scrapes from a vLLM-protocol model
# server: queue length, running requests, KV-cache utilisation (both of vLLM's names), and the
# cache block size and count for prefix-aware scoring.
ENDPOINT_PICKER_METRICS = {"vllm:num_requests_waiting", "vllm:num_requests_running",
                           "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
                           "vllm:cache_config_info"}


def test_metrics_the_gateway_and_autoscalers_read_are_exported(rendered):
    exported = exported_metrics()
    assert ENDPOINT_PICKER_METRICS <= exported
    adapter = yaml.safe_load(
        (DEPLOY / "overlays" / "autoscaling" / "prometheus-adapter-values.yaml").read_text())
    [rule] = adapter["rules"]["custom"]
    series = re.match(r"([a-z_:]+)\{", rule["seriesQuery"]).group(1)
    assert series in exported
    assert re.fullmatch(rule["name"]["matches"], series)
    hpa = find(rendered["autoscaling"], "HorizontalPodAutoscaler")
    assert [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]] == [rule["name"]["as"]]
    keda = find(rendered["autoscaling-keda"], "ScaledObject")
    for trigger in keda["spec"]["triggers"]:
        assert trigger["type"] == "prometheus"
        assert re.search(r"([a-z_:]+)\{", trigger["metadata"]["query"]).group(1) in exported
