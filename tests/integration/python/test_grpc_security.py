"""Security with real clients (grpcio; requests and the openai package over HTTPS) against one
server started with API keys (flags and SWITCHYARD_API_KEY), mutual TLS on both ports (a
throwaway CA, server and client certificates made by the openssl CLI) and a small
--max-body-bytes: who gets in, what the others get, and that an oversized message does not hurt
the server. Bad security flags fail `serve` at once."""

import os
import subprocess
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import BIN, ROOT, Server

FLAG_KEYS = ["sk-flag-one", "sk-flag-two"]
ENV_KEYS = " sk-env-one , ,sk-env-two"  # blanks and empty entries are ignored
MAX_BODY_BYTES = 64 * 1024
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    out = tmp_path_factory.mktemp("certs")
    subprocess.run(["bash", f"{ROOT}/tests/common/make_test_certs.sh", str(out)], check=True,
                   capture_output=True)
    return out


class MutualTlsServer(Server):
    """A server whose readiness is read from gRPC health over mutual TLS, so the wait holds
    whether or not the HTTP port speaks TLS too."""

    def __init__(self, certs, *args, **kwargs):
        self.credentials = grpc.ssl_channel_credentials(
            root_certificates=(certs / "ca.crt").read_bytes(),
            private_key=(certs / "client.key").read_bytes(),
            certificate_chain=(certs / "client.crt").read_bytes())
        super().__init__(*args, **kwargs)

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        request = health_pb2.HealthCheckRequest(service="switchyard.v1.Switchyard")
        # gRPC's default reconnect backoff (1 s, growing) would wait long after the port opened.
        backoff = [("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 200)]
        with grpc.secure_channel(f"127.0.0.1:{self.grpc_port}", self.credentials,
                                 options=backoff) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if health.Check(request, timeout=1, wait_for_ready=True).status == SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout} s:\n{self.log_tail()}")


@pytest.fixture(scope="module")
def server(model_dir, certs, tmp_path_factory):
    args = [f"--api-key={k}" for k in FLAG_KEYS] + [
        "--ssl-certfile", str(certs / "server.crt"), "--ssl-keyfile", str(certs / "server.key"),
        "--ssl-ca-certs", str(certs / "ca.crt"), "--max-body-bytes", str(MAX_BODY_BYTES)]
    saved = os.environ.get("SWITCHYARD_API_KEY")
    os.environ["SWITCHYARD_API_KEY"] = ENV_KEYS
    try:
        s = MutualTlsServer(certs, model_dir, tmp_path_factory.mktemp("log") / "tls.log", args)
    finally:
        if saved is None:
            del os.environ["SWITCHYARD_API_KEY"]
        else:
            os.environ["SWITCHYARD_API_KEY"] = saved
    yield s
    code = s.stop()
    assert code == 0, f"server exit code {code}:\n{s.log_tail()}"


@pytest.fixture(scope="module")
def channel(server):
    ch = grpc.secure_channel(f"127.0.0.1:{server.grpc_port}", server.credentials)
    yield ch
    ch.close()


def bearer(key):
    return (("authorization", f"Bearer {key}"),)


def test_mutual_tls_with_each_key_is_served(pb, channel):
    pb2, stub_mod = pb
    stub = stub_mod.SwitchyardStub(channel)
    for key in FLAG_KEYS + ["sk-env-one", "sk-env-two"]:
        info = stub.ModelInfo(pb2.ModelInfoRequest(), metadata=bearer(key), timeout=10)
        assert info.model == "tiny", key
    responses = list(stub.Generate(
        pb2.GenerateRequest(text="hello", stopping=pb2.StoppingCriteria(max_tokens=3,
                                                                        ignore_eos=True)),
        metadata=bearer("sk-env-two"), timeout=30))
    assert responses[-1].finished and responses[-1].usage.completion_tokens == 3


def test_missing_or_wrong_key_is_unauthenticated(pb, channel):
    pb2, stub_mod = pb
    stub = stub_mod.SwitchyardStub(channel)
    cases = [((), "missing API key"),
             (bearer("sk-flag-three"), "invalid API key"),
             ((("authorization", "sk-flag-one"),), "invalid API key")]
    for metadata, message in cases:
        with pytest.raises(grpc.RpcError) as e:
            stub.Tokenize(pb2.TokenizeRequest(text="hi"), metadata=metadata, timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
        assert message in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Generate(pb2.GenerateRequest(text="hi"), metadata=metadata, timeout=10))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, metadata


def test_health_needs_no_key(channel):
    health = health_pb2_grpc.HealthStub(channel)
    r = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert r.status == SERVING


def test_plaintext_and_certificateless_clients_are_refused(pb, server, certs):
    pb2, stub_mod = pb
    target = f"127.0.0.1:{server.grpc_port}"
    without_client_cert = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.crt").read_bytes())
    stranger = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.crt").read_bytes(),
        private_key=(certs / "stranger.key").read_bytes(),
        certificate_chain=(certs / "stranger.crt").read_bytes())
    channels = [grpc.insecure_channel(target), grpc.secure_channel(target, without_client_cert),
                grpc.secure_channel(target, stranger)]
    for ch in channels:
        with ch, pytest.raises(grpc.RpcError) as e:
            stub_mod.SwitchyardStub(ch).ModelInfo(pb2.ModelInfoRequest(),
                                                  metadata=bearer(FLAG_KEYS[0]), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_oversized_message_is_resource_exhausted_and_the_server_serves_on(pb, channel):
    pb2, stub_mod = pb
    stub = stub_mod.SwitchyardStub(channel)
    with pytest.raises(grpc.RpcError) as e:
        stub.Tokenize(pb2.TokenizeRequest(text="x" * (MAX_BODY_BYTES + 1)),
                      metadata=bearer(FLAG_KEYS[0]), timeout=10)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    t = stub.Tokenize(pb2.TokenizeRequest(text="hello yard"), metadata=bearer(FLAG_KEYS[0]),
                      timeout=10)
    assert len(t.token_ids) > 0


@pytest.mark.parametrize("args, message", [
    (["--ssl-certfile", "/nonexistent/server.crt", "--ssl-keyfile", "/nonexistent/server.key"],
     "--ssl-certfile /nonexistent/server.crt: No such file or directory"),
    (["--ssl-keyfile", "/nonexistent/server.key"],
     "TLS needs both --ssl-certfile and --ssl-keyfile"),
    (["--protect-metrics"], "--protect-metrics needs an API key"),
])
def test_bad_security_flags_fail_at_startup(model_dir, args, message):
    env = {k: v for k, v in os.environ.items() if k != "SWITCHYARD_API_KEY"}
    r = subprocess.run([BIN, "serve", "--model", str(model_dir), "--grpc-port", "0", *args],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1
    assert message in r.stdout + r.stderr


# The same server's HTTP port speaks TLS with the same keys: real clients (requests, and the
# openai package over httpx) with the throwaway CA and client certificate.

def https(server):
    return server.url.replace("http://", "https://")


def tls_kwargs(certs):
    return {"verify": str(certs / "ca.crt"),
            "cert": (str(certs / "client.crt"), str(certs / "client.key")), "timeout": 10}


def test_https_needs_a_key_on_the_api_but_not_on_health(server, certs):
    import requests
    base = https(server)
    r = requests.get(base + "/v1/models", **tls_kwargs(certs))
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = requests.get(base + "/v1/models", headers={"Authorization": "Bearer sk-wrong"},
                     **tls_kwargs(certs))
    assert r.status_code == 401
    for key in ["sk-flag-two", "sk-env-one"]:
        r = requests.get(base + "/v1/models", headers={"Authorization": f"Bearer {key}"},
                         **tls_kwargs(certs))
        assert r.status_code == 200, r.text
    assert requests.get(base + "/health/ready", **tls_kwargs(certs)).status_code == 200
    # Admin endpoints: this server was started with an admin key (every test server is), and a
    # user key does not open them.
    r = requests.get(base + "/admin/placement", headers={"Authorization": "Bearer sk-flag-one"},
                     **tls_kwargs(certs))
    assert r.status_code == 401


def test_openai_client_over_mutual_tls(server, certs):
    import ssl

    import httpx
    from openai import OpenAI
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    context.load_cert_chain(str(certs / "client.crt"), str(certs / "client.key"))
    http_client = httpx.Client(verify=context)
    client = OpenAI(base_url=https(server) + "/v1", api_key="sk-flag-one", http_client=http_client)
    r = client.completions.create(model="tiny", prompt="hello", max_tokens=3)
    assert r.usage.completion_tokens == 3
    stream = client.completions.create(model="tiny", prompt="hello", max_tokens=3, stream=True)
    assert sum(1 for c in stream if c.choices and c.choices[0].text is not None) >= 1


def test_https_without_a_client_certificate_or_without_tls_fails(server, certs):
    import requests
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(https(server) + "/health", verify=str(certs / "ca.crt"), timeout=10)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(server.url + "/health", timeout=10)  # plaintext to the TLS port
    # The server is unharmed.
    assert requests.get(https(server) + "/health", **tls_kwargs(certs)).status_code == 200
