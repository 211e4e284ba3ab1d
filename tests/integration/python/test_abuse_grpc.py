"""A gRPC abuse corpus: hostile Generate, Tokenize and Detokenize requests (out-of-range values,
token ids outside the vocabulary, over-limit lists, invalid UTF-8 in string fields, bytes that are
no protobuf at all) each get the documented status code (with the service's message, except for
messages that do not decode), and the server keeps serving in between. Requests grpcio will not
build are sent as raw bytes through a generic call."""

import math
import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import MODEL_NAME

ROOT = __file__.rsplit("/tests/", 1)[0]
SERVICE = "/switchyard.v1.Switchyard/"
INT32_MAX = 2**31 - 1
INT32_MIN = -2**31
BAD_UTF8 = b"\xff\xfe\xc3\x28\xed\xa0\x80"  # stray bytes, a truncated pair, an encoded surrogate
PLACEHOLDER = b"@" * len(BAD_UTF8)
PH = PLACEHOLDER.decode()

IA = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
# A message that does not decode never reaches the service: gRPC itself answers INTERNAL with no
# message (docs/serving.md).
UNDECODABLE = grpc.StatusCode.INTERNAL


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    """switchyard.v1 Python stubs compiled from proto/ with grpcio-tools."""
    out = tmp_path_factory.mktemp("pb")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT}/proto",
                    f"--python_out={out}", "switchyard/v1/switchyard.proto"], check=True)
    sys.path.insert(0, str(out))
    from switchyard.v1 import switchyard_pb2
    return switchyard_pb2


@pytest.fixture(scope="module")
def channel(server):
    ch = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    grpc.channel_ready_future(ch).result(timeout=10)
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def info(pb, channel):
    call = channel.unary_unary(SERVICE + "ModelInfo",
                               request_serializer=pb.ModelInfoRequest.SerializeToString,
                               response_deserializer=pb.ModelInfoResponse.FromString)
    return call(pb.ModelInfoRequest(), timeout=10)


def call_raw(channel, method, data):
    """Sends `data` as the serialized request; returns the responses, or raises grpc.RpcError."""
    if method == "Generate":
        return list(channel.unary_stream(SERVICE + method)(data, timeout=30))
    return [channel.unary_unary(SERVICE + method)(data, timeout=30)]


def with_bad_utf8(msg):
    """`msg` serialized with the placeholder in one string field swapped for invalid UTF-8 bytes
    of the same length (so every length prefix stays right)."""
    data = msg.SerializeToString()
    assert data.count(PLACEHOLDER) == 1
    return data.replace(PLACEHOLDER, BAD_UTF8)


def gen(sampling=None, stopping=None, ids=None, **fields):
    """A GenerateRequest built from (pb, model info); `stopping` and `ids` may be functions of
    the model info (for ids at the edge of the vocabulary or the context)."""
    def build(pb, info):
        msg = pb.GenerateRequest(**fields)
        if sampling is not None:
            msg.sampling.CopyFrom(pb.SamplingParameters(**sampling))
        if stopping is not None:
            msg.stopping.CopyFrom(pb.StoppingCriteria(
                **(stopping(info) if callable(stopping) else stopping)))
        if ids is not None:
            msg.token_ids.CopyFrom(pb.TokenIds(ids=ids(info) if callable(ids) else ids))
        return msg
    return build


def message(name, **fields):
    return lambda pb, info: getattr(pb, name)(**fields)


def bad_utf8(build):
    return lambda pb, info: with_bad_utf8(build(pb, info))


def raw(data):
    return lambda pb, info: data


def vocab_edge(info):
    return [info.vocab_size]


# (method, name, request built from (pb, model info), expected status code); bytes go as they are.
CASES = [
    ("Generate", "no prompt", gen(), IA),
    ("Generate", "empty text", gen(text=""), IA),
    ("Generate", "empty token_ids", gen(ids=[]), IA),
    ("Generate", "negative token id", gen(ids=[1, -1]), IA),
    ("Generate", "token id = vocab_size", gen(ids=vocab_edge), IA),
    ("Generate", "token id INT32_MAX", gen(ids=[INT32_MAX]), IA),
    ("Generate", "token id INT32_MIN", gen(ids=[INT32_MIN]), IA),
    ("Generate", "prompt over the context", gen(ids=lambda info: [5] * (info.max_model_len + 1)),
     IA),
    ("Generate", "unknown model", gen(model="gpt-17", text="x"), NOT_FOUND),
    ("Generate", "temperature negative", gen(text="x", sampling={"temperature": -1}), IA),
    ("Generate", "temperature NaN", gen(text="x", sampling={"temperature": math.nan}), IA),
    ("Generate", "temperature inf", gen(text="x", sampling={"temperature": math.inf}), IA),
    ("Generate", "top_p zero", gen(text="x", sampling={"top_p": 0}), IA),
    ("Generate", "top_p above one", gen(text="x", sampling={"top_p": 1.5}), IA),
    ("Generate", "top_p NaN", gen(text="x", sampling={"top_p": math.nan}), IA),
    ("Generate", "top_k -2", gen(text="x", sampling={"top_k": -2}), IA),
    ("Generate", "top_k INT32_MIN", gen(text="x", sampling={"top_k": INT32_MIN}), IA),
    ("Generate", "min_p above one", gen(text="x", sampling={"min_p": 2}), IA),
    ("Generate", "min_p negative", gen(text="x", sampling={"min_p": -0.5}), IA),
    ("Generate", "repetition_penalty zero", gen(text="x", sampling={"repetition_penalty": 0}), IA),
    ("Generate", "repetition_penalty inf",
     gen(text="x", sampling={"repetition_penalty": math.inf}), IA),
    ("Generate", "presence_penalty 3", gen(text="x", sampling={"presence_penalty": 3}), IA),
    ("Generate", "frequency_penalty -inf",
     gen(text="x", sampling={"frequency_penalty": -math.inf}), IA),
    ("Generate", "logprobs negative", gen(text="x", logprobs=-1), IA),
    ("Generate", "logprobs 21", gen(text="x", logprobs=21), IA),
    ("Generate", "logprobs INT32_MAX", gen(text="x", logprobs=INT32_MAX), IA),
    ("Generate", "max_tokens zero", gen(text="x", stopping={"max_tokens": 0}), IA),
    ("Generate", "max_tokens negative", gen(text="x", stopping={"max_tokens": -5}), IA),
    ("Generate", "max_tokens INT32_MAX", gen(text="x", stopping={"max_tokens": INT32_MAX}), IA),
    ("Generate", "min_tokens negative", gen(text="x", stopping={"min_tokens": -1}), IA),
    ("Generate", "min_tokens above max_tokens",
     gen(text="x", stopping={"max_tokens": 2, "min_tokens": 3}), IA),
    ("Generate", "n negative", gen(text="x", n=-1), IA),
    ("Generate", "n 129", gen(text="x", n=129), IA),
    ("Generate", "n INT32_MAX", gen(text="x", n=INT32_MAX), IA),
    ("Generate", "17 stop strings", gen(text="x", stopping={"stop": [str(i) for i in range(17)]}),
     IA),
    ("Generate", "empty stop string", gen(text="x", stopping={"stop": [""]}), IA),
    ("Generate", "5000-byte stop string", gen(text="x", stopping={"stop": ["x" * 5000]}), IA),
    ("Generate", "65 stop_token_ids", gen(text="x", stopping={"stop_token_ids": [3] * 65}), IA),
    ("Generate", "negative stop_token_id", gen(text="x", stopping={"stop_token_ids": [-3]}), IA),
    ("Generate", "stop_token_id = vocab_size",
     gen(text="x", stopping=lambda info: {"stop_token_ids": vocab_edge(info)}), IA),
    # Invalid UTF-8 in proto3 strings: the server's protobuf refuses to parse the message.
    ("Generate", "text invalid utf-8", bad_utf8(gen(text=PH)), UNDECODABLE),
    ("Generate", "model invalid utf-8", bad_utf8(gen(model=PH, text="x")), UNDECODABLE),
    ("Generate", "stop invalid utf-8", bad_utf8(gen(text="x", stopping={"stop": [PH]})),
     UNDECODABLE),
    # Bytes that are no GenerateRequest: a truncated field, a bad wire type or varint, garbage.
    ("Generate", "truncated message", raw(b"\x12\x05hel"), UNDECODABLE),
    ("Generate", "field with wire type 7", raw(b"\x12\x01x\x37\x01"), UNDECODABLE),
    ("Generate", "11-byte varint", raw(b"\x12\x01x\x30" + b"\xff" * 10 + b"\x01"), UNDECODABLE),
    ("Generate", "garbage bytes", raw(bytes(range(256))), UNDECODABLE),
    ("Tokenize", "unknown model", message("TokenizeRequest", model="x", text="hi"), NOT_FOUND),
    ("Tokenize", "text invalid utf-8", bad_utf8(message("TokenizeRequest", text=PH)), UNDECODABLE),
    ("Tokenize", "garbage bytes", raw(b"\xff" * 64), UNDECODABLE),
    ("Detokenize", "negative id", message("DetokenizeRequest", token_ids=[1, -1]), IA),
    ("Detokenize", "id = vocab_size",
     lambda pb, info: pb.DetokenizeRequest(token_ids=vocab_edge(info)), IA),
    ("Detokenize", "id INT32_MAX", message("DetokenizeRequest", token_ids=[INT32_MAX]), IA),
    ("Detokenize", "unknown model", message("DetokenizeRequest", model="x", token_ids=[1]),
     NOT_FOUND),
    ("Detokenize", "model invalid utf-8",
     bad_utf8(message("DetokenizeRequest", model=PH, token_ids=[1])), UNDECODABLE),
]


def check_serving(pb, channel):
    health = health_pb2_grpc.HealthStub(channel)
    r = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert r.status == health_pb2.HealthCheckResponse.SERVING
    ok = pb.GenerateRequest(model=MODEL_NAME, text="hi",
                            stopping=pb.StoppingCriteria(max_tokens=1))
    responses = call_raw(channel, "Generate", ok.SerializeToString())
    assert pb.GenerateResponse.FromString(responses[-1]).finished


def test_corpus_size():
    assert len(CASES) >= 30


@pytest.mark.parametrize("method,name,build,code", CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_hostile_request(pb, channel, info, method, name, build, code):
    request = build(pb, info)
    data = request if isinstance(request, bytes) else request.SerializeToString()
    with pytest.raises(grpc.RpcError) as e:
        call_raw(channel, method, data)
    assert e.value.code() == code, (e.value.code(), e.value.details())
    if code != UNDECODABLE:
        assert e.value.details()  # the service's own message
    check_serving(pb, channel)
