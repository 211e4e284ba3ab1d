#!/usr/bin/env python3
"""Regenerates tests/golden/chat_templates/*.json: real chat templates rendered by Python jinja2.

    python3 -m venv .venv-jinja && .venv-jinja/bin/pip install 'jinja2==3.1.*'
    .venv-jinja/bin/python scripts/golden/gen_chat_templates.py [--out tests/golden/chat_templates]

(.venv-golden works too; it pins jinja2 3.1.6.) The environment is built exactly as transformers
4.57's _compile_jinja_template builds it (ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, loopcontrols, its own tojson filter, raise_exception and strftime_now), and the
variables are the ones apply_chat_template passes (messages, tools, documents,
add_generation_prompt, bos_token, eos_token, then the extra kwargs). The templates are in
scripts/golden/chat_templates/<name>.jinja, with their source in SOURCES below. Deterministic:
strftime_now renders a fixed date (2025-01-02)."""

import argparse
import copy
import json
import sys
from datetime import datetime
from pathlib import Path

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FIXED_NOW = datetime(2025, 1, 2, 3, 4, 5)

BOS_LLAMA, EOS_LLAMA = "<s>", "</s>"
BOS_DS, EOS_DS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"

# name -> (source, bos_token, eos_token, conversation sets). The template text is the file
# scripts/golden/chat_templates/<name>.jinja.
SOURCES = {
    "mixtral_8x7b_instruct": (
        "https://huggingface.co/mistralai/Mixtral-8x7B-Instruct-v0.1/blob/main/"
        "tokenizer_config.json (current revision, with the optional system message); text as "
        "reproduced verbatim in public code that hard-codes this model's template",
        BOS_LLAMA, EOS_LLAMA, ["basic", "mixtral_errors"]),
    "mixtral_8x7b_instruct_2023": (
        "https://huggingface.co/mistralai/Mixtral-8x7B-Instruct-v0.1/blob/main/"
        "tokenizer_config.json (first revision, Dec 2023); text from llama-cpp-python "
        "llama_chat_format.py MIXTRAL_INSTRUCT_CHAT_TEMPLATE",
        BOS_LLAMA, EOS_LLAMA, ["basic_no_system", "mixtral_errors"]),
    "qwen3_30b_a3b": (
        "https://huggingface.co/Qwen/Qwen3-30B-A3B/blob/main/tokenizer_config.json (the Qwen3 "
        "release template, shared by the whole family); text from llama.cpp "
        "models/templates/Qwen-Qwen3-0.6B.jinja",
        None, "<|im_end|>", ["basic", "qwen3", "tools_dict_args"]),
    "qwen15_moe_a27b_chat": (
        "https://huggingface.co/Qwen/Qwen1.5-MoE-A2.7B-Chat/blob/main/tokenizer_config.json "
        "(Qwen1.5/Qwen2 ChatML with a default system prompt)",
        None, "<|im_end|>", ["basic"]),
    "qwen15_chat_2024": (
        "https://huggingface.co/Qwen/Qwen1.5-1.8B-Chat/blob/main/tokenizer_config.json (first "
        "Qwen1.5 revision); text from huggingface/swift-jinja tests",
        None, "<|im_end|>", ["basic"]),
    "olmoe_1b_7b_0924_instruct": (
        "https://huggingface.co/allenai/OLMoE-1B-7B-0924-Instruct/blob/main/tokenizer_config.json "
        "(Tulu template); text from the model's discussion #8, newlines restored",
        "<|endoftext|>", "<|endoftext|>", ["basic"]),
    "deepseek_v2_lite_chat": (
        "https://huggingface.co/deepseek-ai/DeepSeek-V2-Lite-Chat/blob/main/tokenizer_config.json; "
        "text from llama.cpp tests/test-chat-template.cpp (DeepSeek-V2)",
        BOS_DS, EOS_DS, ["basic"]),
    "deepseek_r1": (
        "https://huggingface.co/deepseek-ai/DeepSeek-R1/blob/main/tokenizer_config.json "
        "(DeepSeek-V3 architecture; the V3 template plus <think>); text as hard-coded in public "
        "code that loads DeepSeek-R1",
        BOS_DS, EOS_DS, ["basic", "deepseek_tools"]),
    "deepseek_v3_0324": (
        "https://huggingface.co/deepseek-ai/DeepSeek-V3-0324/blob/main/tokenizer_config.json (the "
        "DeepSeek-V3 template with is_last_user); text from the tokenizer.chat_template metadata of "
        "unsloth's DeepSeek-V3-0324 GGUF as printed by llama-cpp-python, quoted in "
        "ikawrakow/ik_llama.cpp github-data (a DeepSeek-V3-0324 thread)",
        BOS_DS, EOS_DS, ["basic", "deepseek_tools"]),
    "deepseek_v31": (
        "https://huggingface.co/deepseek-ai/DeepSeek-V3.1/blob/main/tokenizer_config.json (also "
        "V3.1-Terminus; hybrid thinking via the `thinking` kwarg); text from the GGUF template "
        "printed by llama-server in ikawrakow/ik_llama.cpp github-data, cross-checked against its "
        "issue #804 (llama.cpp models/templates/deepseek-ai-DeepSeek-V3.1.jinja is a reformatted "
        "copy that also reads enable_thinking, so it is not used)",
        BOS_DS, EOS_DS, ["basic", "deepseek_tools", "deepseek_v31"]),
    "kimi_k2_instruct": (
        "https://huggingface.co/moonshotai/Kimi-K2-Instruct/blob/main/tokenizer_config.json (first "
        "release, July 2025); text from llama.cpp models/templates/moonshotai-Kimi-K2.jinja",
        None, "<|im_end|>", ["basic", "kimi"]),
    "kimi_k2_thinking": (
        "https://huggingface.co/moonshotai/Kimi-K2-Thinking/blob/main/chat_template.jinja (the K2 "
        "template with tool calls, `## Return of` tool results and kept reasoning after the last "
        "plain assistant turn); text from llama.cpp models/templates/moonshotai-Kimi-K2-Thinking.jinja",
        None, "<|im_end|>", ["basic", "kimi", "kimi_agent"]),
    "glm45_air": (
        "https://huggingface.co/zai-org/GLM-4.5-Air/blob/main/chat_template.jinja (GLM-4.5 family, "
        "the revision that binds the user text to `content`); text from the GGUF template printed "
        "by llama-server in ikawrakow/ik_llama.cpp github-data/pull_requests/689, identical to the "
        "copy in another GLM-4.5 llama-server log there",
        None, "<|endoftext|>", ["basic", "qwen3", "glm45"]),
    "switchyard_chatml": (
        "engine/tokenizer/bpe_synthesizer.cc SynthesizeTokenizerConfig (make-model's tokenizer)",
        None, "<|endoftext|>", ["basic"]),
    "feature_coverage": (
        "written for this test suite: Jinja features real templates use (filters, tests, "
        "macros, slices, loop variables, tojson options)",
        "<s>", "</s>", ["coverage"]),
}

SYS = {"role": "system", "content": "You are a helpful assistant."}
U1 = {"role": "user", "content": "Hello! What is 2+2?"}
A1 = {"role": "assistant", "content": "2+2 is 4."}
U2 = {"role": "user", "content": "And  3*3?\nAnswer briefly."}
UNI = {"role": "user", "content": "Grüße aus Zürich — 你好，世界 🎉 \"quoted\" \\ back\\slash <tag> & 'single'"}
WS = {"role": "user", "content": "  leading and trailing spaces  \n\n"}
THINK = {"role": "assistant", "content": "<think>\nLet me add.\n</think>\n\n2+2 is 4."}
REASON = {"role": "assistant", "content": "4.", "reasoning_content": "\nTwo plus two.\n"}
T1 = {"role": "tool", "content": "{\"temp\": 21}"}
T2 = {"role": "tool", "content": "12:00"}
QWEN_CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}},
    {"type": "function", "function": {"name": "now", "arguments": "{}"}}]}
QWEN_CALL_TEXT = {"role": "assistant", "content": "Let me check.", "tool_calls": [
    {"function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius"}}}]}
DS_CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
    {"type": "function", "function": {"name": "now", "arguments": "{}"}}]}
DS_CALL_TEXT = {"role": "assistant", "content": "Let me check.", "tool_calls": [
    {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Zürich\"}"}}]}
GLM_CALL = {"role": "assistant", "content": "<think>\nNeed the weather.\n</think>\n\nChecking.", "tool_calls": [
    {"type": "function", "function": {"name": "get_weather", "arguments": {
        "city": "Zürich", "days": 2, "opts": {"unit": "celsius", "extra": [1, 2.5, None, True]}}}},
    {"name": "now", "arguments": {}}]}
MULTIMODAL = {"role": "user", "content": [
    {"type": "text", "text": "Describe"}, {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
    {"type": "text", "text": " this picture."}]}
KIMI_CALL = {"role": "assistant", "content": "", "reasoning_content": "Need the weather.", "tool_calls": [
    {"id": "functions.get_weather:0", "type": "function",
     "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
    {"id": "functions.now:1", "type": "function", "function": {"name": "now", "arguments": {}}}]}
KIMI_RESULTS = [{"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "{\"temp\": 21}"},
                {"role": "tool", "tool_call_id": "functions.now:1", "content": [{"type": "text", "text": "12:00"}]}]

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city. Supports “smart quotes” and ünïcode.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
            },
            "required": ["city"],
        },
    },
}, {
    "type": "function",
    "function": {"name": "now", "description": "Current time.", "parameters": {"type": "object", "properties": {}}},
}]

# Stored once in the fixture and referred to by name from the cases (the fixtures share a 6 MiB
# budget with the model goldens).
CONVERSATIONS = {
    "user": [U1],
    "system_user": [SYS, U1],
    "multi_turn": [U1, A1, U2],
    "assistant_last": [U1, A1],
    "system_assistant_last": [SYS, U1, A1],
    "system_multi_turn": [SYS, U1, A1, U2],
    "unicode": [UNI],
    "whitespace": [SYS, WS, A1],
    "whitespace_no_system": [WS],
    "two_users": [U1, U2],
    "assistant_first": [A1],
    "system_not_first": [U1, SYS],
    "tool_role": [U1, {"role": "tool", "content": "x"}],
    "think_in_content": [SYS, U1, THINK],
    "think_then_user": [U1, THINK, U2],
    "reasoning_content": [U1, REASON],
    "reasoning_then_turn": [U1, REASON, U2, A1],
    "tool_response_user": [{"role": "user", "content": "<tool_response>\nx\n</tool_response>"}, A1],
    "qwen_tool_calls": [SYS, U1, QWEN_CALL, T1, T2],
    "qwen_tool_answer": [U1, QWEN_CALL_TEXT, T1, {"role": "assistant", "content": "It is 21 degrees."}],
    "qwen_tool_then_user": [U1, QWEN_CALL_TEXT, T1, {"role": "assistant", "content": "21."}, U2],
    "ds_tool_calls": [SYS, U1, DS_CALL, T1, T2],
    "ds_tool_answer": [U1, DS_CALL, T1, T2, {"role": "assistant", "content": "<think>x</think>It is 21."}],
    "ds_two_systems": [SYS, SYS, U1, {"role": "assistant", "content": "<think>\nhm\n</think>\n\nFour."}, U2],
    "ds_tool_calls_text": [U1, DS_CALL_TEXT, T1, {"role": "assistant", "content": "It is 21."}, U2],
    "ds_prefix": [U1, {"role": "assistant", "content": "Let me", "prefix": True}],
    "ds_think_twice": [U1, {"role": "assistant", "content": "<think>a</think>b</think>c"}],
    "multimodal_parts": [SYS, MULTIMODAL, A1],
    "kimi_tool_answer": [U1, QWEN_CALL_TEXT, T1, {"role": "assistant", "content": "It is 21 degrees."}],
    "glm_tool_calls": [SYS, U1, GLM_CALL, T1, T2],
    "glm_tool_then_user": [U1, GLM_CALL, T1, {"role": "assistant", "content": "21.", "reasoning_content": "ok"}, U2],
    "glm_tool_list_content": [U1, QWEN_CALL_TEXT, {"role": "tool", "content": [{"output": "21 degrees"}, "raw"]}],
    "kimi_agent": [SYS, {"role": "user", "name": "alice", "content": "Weather?"}, KIMI_CALL, *KIMI_RESULTS,
                   {"role": "assistant", "content": "It is 21.", "reasoning_content": "Done."}, U2],
    "kimi_agent_open": [U1, {"role": "assistant", "content": "Sure.", "reasoning_content": "Easy."}, U2,
                        KIMI_CALL, *KIMI_RESULTS],
    "user_nothink": [{"role": "user", "content": "Quick question /nothink"}],
}
EXTRAS = {
    "none": {},
    "no_thinking": {"enable_thinking": False},
    "thinking": {"enable_thinking": True},
    "tools": {"tools": TOOLS},
    "tools_no_thinking": {"tools": TOOLS, "enable_thinking": False},
    "v31_thinking": {"thinking": True},
    "v31_no_thinking": {"thinking": False, "enable_thinking": True},
    "coverage1": {"date_format": "%d %b %Y", "items": {"b": 2, "a": [1, 2.5, None, True]},
                  "names": ["x", "yy", "zzz"], "flag": None},
    "coverage2": {"date_format": "%Y-%m-%d", "items": {"k": "v\u00e9\n\t\"q\""}, "names": [], "flag": True},
    "coverage3": {"date_format": "%B", "items": {}, "names": ["Ab", "aB"], "flag": False},
}

BASIC = ["user", "system_user", "multi_turn", "system_assistant_last", "system_multi_turn", "unicode",
         "whitespace"]
KINDS = {
    "basic": [(c, "none", g) for c in BASIC for g in (False, True)],
    "basic_no_system": [(c, "none", g) for c in ["user", "multi_turn", "assistant_last", "unicode",
                                                  "whitespace_no_system"] for g in (False, True)],
    "mixtral_errors": [("two_users", "none", True), ("assistant_first", "none", True),
                       ("system_not_first", "none", True), ("tool_role", "none", False)],
    "qwen3": ([("user", e, g) for e in ("no_thinking", "thinking") for g in (False, True)] +
              [(c, "none", g) for c in ["think_in_content", "think_then_user", "reasoning_content",
                                        "reasoning_then_turn"] for g in (False, True)] +
              [("tool_response_user", "none", False), ("system_user", "tools", True),
               ("user", "tools_no_thinking", True)]),
    "tools_dict_args": [("qwen_tool_calls", "tools", True), ("qwen_tool_answer", "tools", False),
                        ("qwen_tool_then_user", "tools", True)],
    "deepseek_tools": [(c, "none", g) for c in ["ds_tool_calls", "ds_tool_answer", "ds_two_systems"]
                       for g in (False, True)],
    "deepseek_v31": ([(c, e, g) for c in ["user", "multi_turn"] for e in ("v31_thinking", "v31_no_thinking")
                      for g in (False, True)] +
                     [(c, e, g) for c in ["ds_prefix", "ds_tool_calls_text"] for e in ("none", "v31_thinking")
                      for g in (False, True)] +
                     [("ds_think_twice", "none", False), ("think_then_user", "v31_thinking", True)]),
    "kimi": [("system_user", "tools", True), ("user", "tools", False), ("multimodal_parts", "none", True),
             ("tool_role", "none", True), ("kimi_tool_answer", "tools", False)],
    "kimi_agent": ([(c, "tools", g) for c in ["kimi_agent", "kimi_agent_open"] for g in (False, True)] +
                   [(c, "none", g) for c in ["reasoning_content", "reasoning_then_turn"] for g in (False, True)]),
    "glm45": ([(c, e, g) for c in ["glm_tool_calls", "glm_tool_then_user"] for e in ("tools", "tools_no_thinking")
               for g in (False, True)] +
              [("glm_tool_list_content", "none", True), ("qwen_tool_answer", "tools", False),
               ("qwen_tool_calls", "tools", True),
               ("multimodal_parts", "no_thinking", True), ("user_nothink", "no_thinking", True),
               ("user_nothink", "thinking", True)]),
    "coverage": [("assistant_last", "coverage1", True), ("unicode", "coverage2", False),
                 ("whitespace", "coverage3", False)],
}


def make_env():
    # Mirrors transformers.utils.chat_template_utils._compile_jinja_template (4.57), minus the
    # AssistantTracker extension ({% generation %} is only for training masks).
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return FIXED_NOW.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(template, bos, eos, messages, extra, add_generation_prompt):
    kwargs = {}
    if bos is not None:
        kwargs["bos_token"] = bos
    kwargs["eos_token"] = eos
    extra = copy.deepcopy(extra)
    tools = extra.pop("tools", None)
    return template.render(messages=copy.deepcopy(messages), tools=tools, documents=None,
                           add_generation_prompt=add_generation_prompt, **kwargs, **extra)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(REPO / "tests/golden/chat_templates/cases.json"))
    args = parser.parse_args()
    if not jinja2.__version__.startswith("3.1."):
        sys.exit(f"needs jinja2 3.1.x (transformers' version), found {jinja2.__version__}")
    env = make_env()
    templates = []
    for name, (source, bos, eos, kinds) in SOURCES.items():
        text = (HERE / "chat_templates" / f"{name}.jinja").read_text(encoding="utf-8")
        template = env.from_string(text)
        cases = []
        for kind in kinds:
            for conv, extra, gen in KINDS[kind]:
                c = {"conversation": conv, "extra": extra, "add_generation_prompt": gen}
                try:
                    c["expected"] = render(template, bos, eos, CONVERSATIONS[conv], EXTRAS[extra], gen)
                except jinja2.exceptions.TemplateError as e:
                    c["error"] = str(e)
                    # TemplateError itself is raise_exception(); subclasses are jinja2's own.
                    c["error_class"] = type(e).__name__
                cases.append(c)
        templates.append({"name": name, "source": source, "template": text, "bos_token": bos,
                          "eos_token": eos, "cases": cases})
        print(f"{name}: {len(cases)} cases, {sum('error' in c for c in cases)} raise")
    fixture = {"generator": "scripts/golden/gen_chat_templates.py", "jinja2_version": jinja2.__version__,
               "strftime_now": FIXED_NOW.isoformat(), "conversations": CONVERSATIONS, "extras": EXTRAS,
               "templates": templates}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(fixture, ensure_ascii=False, indent=None) + "\n", encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
