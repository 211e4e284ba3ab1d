"""The gRPC API with a real grpcio client: Generate streams the same greedy tokens as HTTP;
cancelling the call or passing its deadline aborts the request; errors are status codes; the
standard health service agrees with HTTP readiness."""

import time

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import MODEL_NAME

@pytest.fixture(scope="module")
def server(long_server):
    """The 32k-context model, so that a request can outlive a short deadline."""
    return long_server


@pytest.fixture(scope="module")
def channel(server):
    ch = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    grpc.channel_ready_future(ch).result(timeout=10)
    yield ch
    ch.close()


def wait_idle(server, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (server.metric("switchyard_num_requests_running") == 0
                and server.metric("switchyard_kv_cache_usage_ratio") == 0):
            return True
        time.sleep(0.05)
    return False


def test_generate_matches_http(server, pb, channel):
    pb2, stub_mod = pb
    stub = stub_mod.SwitchyardStub(channel)
    ids = list(range(20, 60))
    req = pb2.GenerateRequest(token_ids=pb2.TokenIds(ids=ids),
                              sampling=pb2.SamplingParameters(temperature=0),
                              stopping=pb2.StoppingCriteria(max_tokens=12, ignore_eos=True),
                              logprobs=2)
    responses = list(stub.Generate(req, timeout=30))
    tokens = [t for r in responses for c in r.choices for t in c.token_ids]
    text = "".join(c.text for r in responses for c in r.choices)
    assert len(tokens) == 12
    assert responses[-1].finished and responses[-1].usage.completion_tokens == 12
    assert responses[-1].usage.prompt_tokens == len(ids)
    assert [c.finish_reason for r in responses for c in r.choices if c.finish_reason] == ["length"]
    logprobs = [lp for r in responses for c in r.choices for lp in c.logprobs]
    assert [lp.token_id for lp in logprobs] == tokens
    assert all(len(lp.top) == 2 and lp.top[0].token_id == lp.token_id for lp in logprobs)
    http = requests.post(server.url + "/v1/completions",
                         json={"model": MODEL_NAME, "prompt": ids, "max_tokens": 12,
                               "temperature": 0, "ignore_eos": True}).json()
    assert http["choices"][0]["text"] == text


def test_cancel_aborts_the_request(server, pb, channel):
    pb2, stub_mod = pb
    stub = stub_mod.SwitchyardStub(channel)
    call = stub.Generate(pb2.GenerateRequest(
        text="cancel me", stopping=pb2.StoppingCriteria(max_tokens=30000, ignore_eos=True)))
    next(call)
    call.cancel()
    assert wait_idle(server)


def test_deadline_aborts_the_request(server, pb, channel):
    pb2, stub_mod = pb
    stub = stub_mod.SwitchyardStub(channel)
    with pytest.raises(grpc.RpcError) as e:
        list(stub.Generate(pb2.GenerateRequest(
            text="too slow", stopping=pb2.StoppingCriteria(max_tokens=30000, ignore_eos=True)),
            timeout=0.3))
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_idle(server)


def test_errors_are_status_codes(pb, channel):
    pb2, stub_mod = pb
    stub = stub_mod.SwitchyardStub(channel)
    cases = [
        (pb2.GenerateRequest(text="x", sampling=pb2.SamplingParameters(top_p=3)),
         grpc.StatusCode.INVALID_ARGUMENT),
        (pb2.GenerateRequest(token_ids=pb2.TokenIds(ids=[5] * 33000)),
         grpc.StatusCode.INVALID_ARGUMENT),
        (pb2.GenerateRequest(text=""), grpc.StatusCode.INVALID_ARGUMENT),
        (pb2.GenerateRequest(model="other", text="x"), grpc.StatusCode.NOT_FOUND),
    ]
    for req, code in cases:
        with pytest.raises(grpc.RpcError) as e:
            list(stub.Generate(req, timeout=10))
        assert e.value.code() == code, req
        assert e.value.details()


def test_tokenize_detokenize_model_info(pb, channel, hf_tokenizer):
    pb2, stub_mod = pb
    stub = stub_mod.SwitchyardStub(channel)
    t = stub.Tokenize(pb2.TokenizeRequest(text="hello yard", add_special_tokens=True))
    assert list(t.token_ids) == hf_tokenizer.encode("hello yard").ids
    d = stub.Detokenize(pb2.DetokenizeRequest(token_ids=t.token_ids))
    assert d.text == "hello yard"
    info = stub.ModelInfo(pb2.ModelInfoRequest())
    assert info.model == MODEL_NAME and info.num_experts == 8 and info.max_model_len == 32768


def test_health_service_agrees_with_http(server, channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "switchyard.v1.Switchyard"):
        r = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert r.status == health_pb2.HealthCheckResponse.SERVING
    assert requests.get(server.url + "/health/ready").status_code == 200
