"""Fixtures that start the real `switchyard serve` on 127.0.0.1 and talk to it as clients do.

SWITCHYARD_BIN names the binary (ctest sets it). Every server gets free ports and a log file;
a test that fails prints the server's log tail.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

BIN = os.environ.get("SWITCHYARD_BIN", "build/server/switchyard")
ROOT = Path(__file__).resolve().parents[3]
MODEL_NAME = "tiny"
# Every test server enables the admin endpoints with this key (they are off without one).
ADMIN_KEY = "test-admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `switchyard serve` process."""

    def __init__(self, model_dir, log_path, extra_args=(), grpc=True, threads=2):
        self.port = free_port()
        self.grpc_port = free_port() if grpc else 0
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        args = [BIN, "serve", "--model", str(model_dir), "--served-model-name", MODEL_NAME,
                "--port", str(self.port), "--grpc-port", str(self.grpc_port),
                "--threads", str(threads), "--admin-api-key", ADMIN_KEY, *extra_args]
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/health/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout} s:\n{self.log_tail()}")

    def log_tail(self, n=40):
        if not self.log.closed:
            self.log.flush()
        return "".join(Path(self.log_path).read_text(errors="replace").splitlines(True)[-n:])

    def metrics(self):
        """The /metrics samples as a list of (name, {label: value}, value)."""
        text = requests.get(self.url + "/metrics", timeout=5).text
        samples = []
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            key, value = line.rsplit(" ", 1)
            name, _, labels = key.partition("{")
            parsed = dict(LABEL.findall(labels))
            samples.append((name, parsed, float(value)))
        return samples

    def metric(self, name, **labels):
        """Sum of the samples of `name` whose labels include `labels`."""
        return sum(v for n, ls, v in self.metrics()
                   if n == name and all(ls.get(k) == str(x) for k, x in labels.items()))

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny random Qwen3-MoE checkpoint with a ChatML template, written by make-model."""
    out = tmp_path_factory.mktemp("model") / MODEL_NAME
    subprocess.run([BIN, "make-model", "--preset", "tiny-qwen3-moe", "--seed", "11", "--out",
                    str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def long_model_dir(tmp_path_factory):
    """The same tiny model with a 32k context, for requests that must outlive their client."""
    out = tmp_path_factory.mktemp("model") / MODEL_NAME
    subprocess.run([BIN, "make-model", "--preset", "tiny-qwen3-moe", "--seed", "11",
                    "--set", "max_position_embeddings=32768", "--out", str(out)],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def server(model_dir, tmp_path_factory):
    """One server shared by every test that only talks to it as a client: abusive clients must
    not disturb it for the tests after them, and it must still exit cleanly at the end."""
    s = Server(model_dir, tmp_path_factory.mktemp("log") / "server.log")
    yield s
    code = s.stop()
    assert code == 0, f"server exit code {code}:\n{s.log_tail()}"


@pytest.fixture(scope="session")
def long_server(long_model_dir, tmp_path_factory):
    """The 32k-context model, shared, for requests that must outlive a client or a deadline."""
    s = Server(long_model_dir, tmp_path_factory.mktemp("log") / "long.log")
    yield s
    code = s.stop()
    assert code == 0, f"server exit code {code}:\n{s.log_tail()}"


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """switchyard.v1 Python stubs compiled from proto/ with grpcio-tools."""
    out = tmp_path_factory.mktemp("pb")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT}/proto",
                    f"--python_out={out}", f"--grpc_python_out={out}",
                    "switchyard/v1/switchyard.proto"], check=True)
    sys.path.insert(0, str(out))
    from switchyard.v1 import switchyard_pb2, switchyard_pb2_grpc
    return switchyard_pb2, switchyard_pb2_grpc


@pytest.fixture(scope="session")
def hf_tokenizer(model_dir):
    """Hugging Face's own tokenizer for the model: the oracle for token counts."""
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(model_dir / "tokenizer.json"))


@pytest.fixture(scope="session")
def chat_template(model_dir):
    return json.loads((model_dir / "tokenizer_config.json").read_text())["chat_template"]


def render_chat(template_source, messages, add_generation_prompt=True):
    """The chat template rendered as transformers renders it (jinja2, trim/lstrip blocks)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template_source).render(
        messages=messages, add_generation_prompt=add_generation_prompt, bos_token="",
        eos_token="<|endoftext|>")
