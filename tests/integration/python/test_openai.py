"""The OpenAI API driven by the real openai Python client (completions, chat, streaming, n > 1,
logprobs, stop strings, seeds, errors). Token counts are checked against Hugging Face's
tokenizers and chat prompts against jinja2, not against our own code."""

import math

import openai
import pytest
import requests

from conftest import MODEL_NAME, Server, render_chat

PROMPT = "The switchyard sorts every car onto its track"


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def greedy(client, prompt=PROMPT, max_tokens=16, **extra):
    return client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=max_tokens,
                                     temperature=0, extra_body={"ignore_eos": True, **extra})


def test_models_lists_the_served_model(client):
    models = client.models.list().data
    assert [m.id for m in models] == [MODEL_NAME]


def test_completion_usage_matches_hf_tokenizer(client, hf_tokenizer):
    r = greedy(client, max_tokens=12)
    assert r.object == "text_completion"
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(hf_tokenizer.encode(PROMPT).ids)
    assert r.usage.completion_tokens == 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + 12


def test_greedy_is_deterministic_and_token_id_prompts_work(client, hf_tokenizer):
    ids = hf_tokenizer.encode(PROMPT).ids
    a = greedy(client)
    b = client.completions.create(model=MODEL_NAME, prompt=ids, max_tokens=16, temperature=0,
                                  extra_body={"ignore_eos": True})
    assert a.choices[0].text == b.choices[0].text
    assert b.usage.prompt_tokens == len(ids)


def test_prompt_list_gives_one_choice_per_prompt(client):
    r = client.completions.create(model=MODEL_NAME, prompt=["first prompt", PROMPT], max_tokens=16,
                                  temperature=0, extra_body={"ignore_eos": True})
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[1].text == greedy(client).choices[0].text


def test_seed_reproduces_sampling(client):
    def sample(seed):
        return client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=16,
                                         temperature=1.0, seed=seed,
                                         extra_body={"ignore_eos": True}).choices[0].text
    assert sample(1234) == sample(1234)
    assert len({sample(s) for s in range(5)}) > 1


def test_streaming_with_usage_equals_non_streaming(client):
    expected = greedy(client, max_tokens=20)
    stream = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=20,
                                       temperature=0, stream=True,
                                       stream_options={"include_usage": True},
                                       extra_body={"ignore_eos": True})
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 20
    assert chunks[-1].usage.prompt_tokens == expected.usage.prompt_tokens
    text = "".join(c.choices[0].text for c in chunks[:-1] if c.choices)
    assert text == expected.choices[0].text
    finishes = [c.choices[0].finish_reason for c in chunks[:-1] if c.choices]
    assert finishes[-1] == "length" and all(f is None for f in finishes[:-1])


def test_raw_sse_framing_ends_with_done(server):
    body = {"model": MODEL_NAME, "prompt": PROMPT, "max_tokens": 4, "stream": True,
            "temperature": 0}
    with requests.post(server.url + "/v1/completions", json=body, stream=True, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines(decode_unicode=True) if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"


def test_request_id_is_echoed_or_generated(server):
    body = {"model": MODEL_NAME, "prompt": PROMPT, "max_tokens": 2}
    r = requests.post(server.url + "/v1/completions", json=body,
                      headers={"X-Request-Id": "it-trace-7"}, timeout=30)
    assert r.status_code == 200
    assert r.headers["X-Request-Id"] == "it-trace-7"
    r = requests.post(server.url + "/v1/completions", json=body, timeout=30)
    assert r.headers["X-Request-Id"].startswith("req-")


def test_chat_prompt_matches_jinja2_and_hf_tokenizer(client, hf_tokenizer, chat_template):
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Name a rail yard."}]
    r = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=8,
                                       temperature=0, extra_body={"ignore_eos": True})
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    prompt = render_chat(chat_template, messages)
    assert r.usage.prompt_tokens == len(hf_tokenizer.encode(prompt, add_special_tokens=False).ids)
    assert r.usage.completion_tokens == 8


def test_chat_streaming(client):
    messages = [{"role": "user", "content": "Hello"}]
    full = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=10,
                                          temperature=0, extra_body={"ignore_eos": True})
    chunks = list(client.chat.completions.create(
        model=MODEL_NAME, messages=messages, max_tokens=10, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_max_completion_tokens_wins(client):
    r = client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "x"}],
                                       max_tokens=3, max_completion_tokens=5, temperature=0,
                                       extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 5


def test_n_choices(client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=8, n=3, seed=7,
                                  temperature=1.0, extra_body={"ignore_eos": True})
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    assert r.usage.completion_tokens == 24
    again = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=8, n=3, seed=7,
                                      temperature=1.0, extra_body={"ignore_eos": True})
    assert [c.text for c in r.choices] == [c.text for c in again.choices]


def test_completion_logprobs(client):
    r = client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=6, temperature=0,
                                  logprobs=3, extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 6
    assert "".join(lp.tokens) == r.choices[0].text
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert chosen <= 0
        assert 3 <= len(top) <= 4
        # Greedy picks the most likely token, so its logprob is the best of the top ones.
        assert math.isclose(chosen, max(top.values()), abs_tol=1e-5)
        assert sum(math.exp(v) for v in top.values()) <= 1.0 + 1e-4


def test_chat_logprobs(client):
    r = client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "x"}],
                                       max_tokens=4, temperature=0, logprobs=True, top_logprobs=2,
                                       extra_body={"ignore_eos": True})
    content = r.choices[0].logprobs.content
    assert len(content) == 4
    for entry in content:
        assert len(entry.top_logprobs) == 2
        assert math.isclose(entry.logprob, entry.top_logprobs[0].logprob, abs_tol=1e-5)
        if "\ufffd" not in entry.token:
            assert bytes(entry.bytes) == entry.token.encode("utf-8")


def test_stop_string_cuts_the_text(client):
    text = greedy(client, max_tokens=24).choices[0].text
    stop = text[6:9]
    assert len(stop) == 3 and stop in text
    r = greedy(client, max_tokens=24, stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == text[:text.index(stop)]


def test_stop_string_in_stream_never_leaks(client):
    text = greedy(client, max_tokens=24).choices[0].text
    stop = text[10:14]
    chunks = list(client.completions.create(model=MODEL_NAME, prompt=PROMPT, max_tokens=24,
                                            temperature=0, stop=stop, stream=True,
                                            extra_body={"ignore_eos": True}))
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    assert streamed == text[:text.index(stop)]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_tokenize_and_detokenize_match_hf(server, hf_tokenizer):
    r = requests.post(server.url + "/tokenize", json={"model": MODEL_NAME, "prompt": PROMPT})
    assert r.status_code == 200
    ids = hf_tokenizer.encode(PROMPT).ids
    assert r.json()["tokens"] == ids and r.json()["count"] == len(ids)
    d = requests.post(server.url + "/detokenize", json={"model": MODEL_NAME, "tokens": ids})
    assert d.status_code == 200 and d.json()["prompt"] == hf_tokenizer.decode(ids)


@pytest.mark.parametrize("kwargs,param", [
    ({"temperature": -1}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"n": 0}, "n"),
    ({"max_tokens": -1}, "max_tokens"),
    ({"max_tokens": 10**9}, "max_tokens"),
    ({"presence_penalty": 5}, "presence_penalty"),
    ({"logprobs": 1000}, "logprobs"),
])
def test_invalid_parameters_are_400(client, kwargs, param):
    args = {"model": MODEL_NAME, "prompt": PROMPT, "max_tokens": 4, **kwargs}
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(**args)
    err = e.value.body
    assert e.value.status_code == 400
    assert err["type"] and err["message"]
    assert err.get("param") in (param, None)


def test_prompt_over_context_is_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL_NAME, prompt=[5] * 3000, max_tokens=4)
    assert "context" in e.value.body["message"] or "length" in e.value.body["message"]


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="no-such-model", prompt=PROMPT, max_tokens=4)
    assert "no-such-model" in e.value.body["message"]


def test_error_object_shape(server):
    r = requests.post(server.url + "/v1/completions", data="{not json",
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    r = requests.get(server.url + "/v1/nothing-here")
    assert r.status_code == 404 and "error" in r.json()


def test_preset_with_random_weights_serves_without_files(tmp_path):
    """`--model preset:NAME --random-weights`: a preset's shapes, weights made by the backend,
    a synthesized tokenizer; completions work, chat (no template) is a clear 400."""
    server = Server("preset:tiny-olmoe", tmp_path / "preset.log", ["--random-weights"],
                    grpc=False)
    try:
        c = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        out = c.completions.create(model=MODEL_NAME, prompt="Hello there", max_tokens=5,
                                   temperature=0, extra_body={"ignore_eos": True})
        assert out.usage.completion_tokens == 5
        assert out.choices[0].finish_reason == "length"
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model=MODEL_NAME, max_tokens=2,
                                      messages=[{"role": "user", "content": "hi"}])
        assert "no chat template" in str(e.value)
    finally:
        server.stop()
