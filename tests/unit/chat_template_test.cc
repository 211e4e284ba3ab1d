// The chat template renderer against Python jinja2 (tests/golden/chat_templates/cases.json,
// written by scripts/golden/gen_chat_templates.py from real models' templates), plus the Jinja
// engine on hand-written snippets and ChatTemplate::Load on model directories.
#include "engine/tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "engine/tokenizer/bpe_synthesizer.h"
#include "engine/tokenizer/jinja/template.h"
#include "tests/common/source_dir.h"

namespace sy {
namespace {

using nlohmann::ordered_json;

ordered_json LoadFixture() {
  std::ifstream f(sy::testing::SourceDir() + "/tests/golden/chat_templates/cases.json");
  EXPECT_TRUE(f.good());
  return ordered_json::parse(std::string(std::istreambuf_iterator<char>(f), {}));
}

std::tm FixedNow() {
  std::tm t{};
  t.tm_year = 2025 - 1900;
  t.tm_mon = 0;
  t.tm_mday = 2;
  t.tm_hour = 3;
  t.tm_min = 4;
  t.tm_sec = 5;
  t.tm_wday = 4;
  t.tm_yday = 1;
  return t;
}

// The feature-coverage template calls strftime_now, so it renders through jinja::Template with
// a fixed clock and the variables the generator passes. So do conversations whose content is a
// list of parts: ChatTemplate flattens those to text before rendering (a text-only server), while
// transformers hands the list to the template, which is what these cases check.
StatusOr<std::string> RenderWithFixedClock(const ordered_json& tmpl, const ordered_json& messages,
                                           const ordered_json& extra, bool add_generation_prompt) {
  SY_ASSIGN_OR_RETURN(auto parsed, jinja::Template::Parse(tmpl["template"].get<std::string>()));
  auto ctx = std::make_shared<jinja::Dict>();
  ctx->Set("messages", jinja::Value::FromJson(messages));
  ctx->Set("tools",
           extra.contains("tools") ? jinja::Value::FromJson(extra["tools"]) : jinja::Value::None());
  ctx->Set("documents", jinja::Value::None());
  ctx->Set("add_generation_prompt", jinja::Value(add_generation_prompt));
  if (tmpl["bos_token"].is_string()) ctx->Set("bos_token", tmpl["bos_token"].get<std::string>());
  ctx->Set("eos_token", tmpl["eos_token"].get<std::string>());
  for (auto it = extra.begin(); it != extra.end(); ++it) {
    if (it.key() != "tools") ctx->Set(it.key(), jinja::Value::FromJson(it.value()));
  }
  jinja::RenderOptions options;
  options.now = FixedNow();
  return parsed->Render(jinja::Value(std::move(ctx)), options);
}

bool HasContentParts(const ordered_json& messages) {
  for (const ordered_json& m : messages) {
    if (m.contains("content") && m["content"].is_array()) return true;
  }
  return false;
}

class Jinja2Fixture : public ::testing::TestWithParam<std::string> {};

TEST_P(Jinja2Fixture, RendersExactlyAsJinja2) {
  static const ordered_json fixture = LoadFixture();
  const ordered_json* tmpl = nullptr;
  for (const ordered_json& t : fixture["templates"]) {
    if (t["name"] == GetParam()) tmpl = &t;
  }
  ASSERT_NE(tmpl, nullptr) << GetParam() << " missing from cases.json";
  const std::string bos =
      (*tmpl)["bos_token"].is_string() ? (*tmpl)["bos_token"].get<std::string>() : "";
  auto chat = ChatTemplate::FromSource((*tmpl)["template"].get<std::string>(), bos,
                                       (*tmpl)["eos_token"].get<std::string>());
  ASSERT_TRUE(chat.ok()) << chat.status().ToString();
  int index = 0;
  for (const ordered_json& c : (*tmpl)["cases"]) {
    const ordered_json& messages = fixture["conversations"][c["conversation"].get<std::string>()];
    const ordered_json& extra = fixture["extras"][c["extra"].get<std::string>()];
    const bool gen = c["add_generation_prompt"].get<bool>();
    SCOPED_TRACE(GetParam() + " case " + std::to_string(index++) + " (" +
                 c["conversation"].get<std::string>() + ", " + c["extra"].get<std::string>() +
                 ", add_generation_prompt=" + (gen ? "true" : "false") + ")");
    const StatusOr<std::string> got = GetParam() == "feature_coverage" || HasContentParts(messages)
                                          ? RenderWithFixedClock(*tmpl, messages, extra, gen)
                                          : (*chat)->Render(messages, gen, extra);
    if (c.contains("error")) {
      ASSERT_FALSE(got.ok());
      EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
      // The template's own raise_exception() message comes back as is; jinja2's own errors
      // (UndefinedError, ...) carry the interpreter's prefix.
      const std::string prefix = c["error_class"] == "TemplateError" ? "" : "chat template error: ";
      EXPECT_EQ(got.status().message(), prefix + c["error"].get<std::string>());
    } else {
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_EQ(got.value(), c["expected"].get<std::string>());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(RealTemplates, Jinja2Fixture,
                         ::testing::Values("switchyard_chatml", "qwen15_moe_a27b_chat",
                                           "qwen15_chat_2024", "qwen3_30b_a3b",
                                           "mixtral_8x7b_instruct", "mixtral_8x7b_instruct_2023",
                                           "olmoe_1b_7b_0924_instruct", "deepseek_v2_lite_chat",
                                           "deepseek_r1", "deepseek_v3_0324", "deepseek_v31",
                                           "kimi_k2_instruct", "kimi_k2_thinking", "glm45_air",
                                           "feature_coverage"));

TEST(Jinja2FixtureFile, CoversEveryTemplate) { EXPECT_EQ(LoadFixture()["templates"].size(), 15u); }

// --- the engine on hand-written snippets (expected outputs worked out by hand) ---

std::string Render(const std::string& source,
                   const nlohmann::json& vars = nlohmann::json::object()) {
  auto t = jinja::Template::Parse(source);
  if (!t.ok()) return "PARSE ERROR: " + t.status().message();
  auto out = (*t)->Render(jinja::Value::FromJson(vars));
  if (!out.ok()) return "ERROR: " + out.status().message();
  return *out;
}

TEST(Jinja, WhitespaceControl) {
  EXPECT_EQ(Render("a  {{- 'b' -}}  c"), "abc");
  EXPECT_EQ(Render("a\n  {%- if true %}x{% endif -%}\n  b"), "axb");
  // trim_blocks eats the newline after a block tag; lstrip_blocks the indentation before it.
  EXPECT_EQ(Render("{% if true %}\n  yes\n  {% endif %}\ndone"), "  yes\ndone");
  // Neither applies to {{ }}.
  EXPECT_EQ(Render("  {{ 1 }}\n{{ 2 }}"), "  1\n2");
  EXPECT_EQ(Render("a\n  {# comment #}\nb"), "a\nb");
  // `+` turns lstrip_blocks off for that tag.
  EXPECT_EQ(Render("  {%+ if true %}x{% endif %}"), "  x");
  // One trailing newline of the template is dropped; CRLF becomes LF.
  EXPECT_EQ(Render("x\r\ny\n"), "x\ny");
  EXPECT_EQ(Render("{% raw %}{{ not evaluated }}{% endraw %}"), "{{ not evaluated }}");
}

TEST(Jinja, Loops) {
  EXPECT_EQ(Render("{% for x in xs %}{{ loop.index }}{{ x }}{% if not loop.last %},{% endif %}"
                   "{% endfor %}",
                   {{"xs", {"a", "b", "c"}}}),
            "1a,2b,3c");
  EXPECT_EQ(Render("{% for x in xs if x > 1 %}{{ loop.index0 }}/{{ loop.length }}:{{ x }} "
                   "{% else %}none{% endfor %}",
                   {{"xs", {1, 2, 3}}}),
            "0/2:2 1/2:3 ");
  EXPECT_EQ(Render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(Render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
                   {{"d", {{"z", 1}, {"a", 2}}}}),
            "a=2;z=1;");  // nlohmann::json sorts keys
  EXPECT_EQ(Render("{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}"
                   "{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}"),
            "02");
  EXPECT_EQ(Render("{% for x in 'héy' %}[{{ x }}]{% endfor %}"), "[h][é][y]");
  EXPECT_EQ(
      Render("{% for x in xs %}{{ loop.revindex }}{{ loop.first }}{% endfor %}", {{"xs", {0, 0}}}),
      "2True1False");
  // A variable set in a loop body does not outlive the iteration.
  EXPECT_EQ(
      Render("{% set a = 1 %}{% for x in [1, 2] %}{% set a = a + 1 %}{{ a }}{% endfor %}{{ a }}"),
      "221");
}

TEST(Jinja, NamespaceAndSet) {
  EXPECT_EQ(Render("{% set ns = namespace(n=0) %}{% for x in [1, 2, 3] %}{% set ns.n = ns.n + x %}"
                   "{% endfor %}{{ ns.n }}"),
            "6");
  EXPECT_EQ(Render("{% if true %}{% set v = 'kept' %}{% endif %}{{ v }}"), "kept");
  EXPECT_EQ(Render("{% set a, b = [1, 2] %}{{ b }}{{ a }}"), "21");
  EXPECT_EQ(Render("{% set s %}x{{ 1 + 1 }}{% endset %}[{{ s }}]"), "[x2]");
  EXPECT_EQ(Render("{% set x = 1 %}{% set x.y = 2 %}"),
            "ERROR: chat template error: cannot assign attribute on non-namespace object 'x'");
}

TEST(Jinja, SlicingAndIndexing) {
  EXPECT_EQ(Render("{{ xs[::-1] }}|{{ xs[1:] }}|{{ xs[:-1] }}|{{ xs[-1] }}|{{ xs[5] }}",
                   {{"xs", {1, 2, 3}}}),
            "[3, 2, 1]|[2, 3]|[1, 2]|3|");
  EXPECT_EQ(Render("{{ 'abcdef'[1:5:2] }}{{ 'abc'[-1] }}{{ 'ñandú'[::-1] }}"), "bdcúdnañ");
  EXPECT_EQ(Render("{{ m.role }}{{ m['role'] }}{{ m.missing }}|{{ m.content.x }}|",
                   {{"m", {{"role", "user"}, {"content", "hi"}}}}),
            "useruser||");
  EXPECT_EQ(Render("{{ undefined_thing.attr }}"),
            "ERROR: chat template error: 'undefined_thing' is undefined");
}

// Misusing an undefined value raises jinja2's UndefinedError message for how it came about
// (expected strings from jinja2 3.1.6 in transformers' sandbox).
TEST(Jinja, UndefinedMessages) {
  const nlohmann::json vars = {{"s", "x"}, {"m", {{"a", 1}}}, {"xs", {1, 2}}, {"n", nullptr}};
  const std::string error = "ERROR: chat template error: ";
  EXPECT_EQ(Render("{{ s.items() }}", vars), error + "'str object' has no attribute 'items'");
  EXPECT_EQ(Render("{{ s.nosuch() }}", vars), error + "'str object' has no attribute 'nosuch'");
  EXPECT_EQ(Render("{{ m.missing + 1 }}", vars),
            error + "'dict object' has no attribute 'missing'");
  EXPECT_EQ(Render("{{ m['k'] + 'a' }}", vars), error + "'dict object' has no attribute 'k'");
  EXPECT_EQ(Render("{{ m[1] + 1 }}", vars), error + "dict object has no element 1");
  EXPECT_EQ(Render("{{ m.k.upper() }}", vars), error + "'dict object' has no attribute 'k'");
  EXPECT_EQ(Render("{{ xs[5] + 1 }}", vars), error + "list object has no element 5");
  EXPECT_EQ(Render("{{ 'ab'[7] + 1 }}"), error + "str object has no element 7");
  EXPECT_EQ(Render("{{ (1).x + 1 }}"), error + "'int object' has no attribute 'x'");
  EXPECT_EQ(Render("{{ true.x + 1 }}"), error + "'bool object' has no attribute 'x'");
  EXPECT_EQ(Render("{% set ns = namespace(a=1) %}{{ ns.missing + 1 }}"),
            error + "'jinja2.utils.Namespace object' has no attribute 'missing'");
  EXPECT_EQ(Render("{{ foo() }}"), error + "'foo' is undefined");
  EXPECT_EQ(Render("{{ x[0] }}"), error + "'x' is undefined");
  EXPECT_EQ(Render("{% macro f(a) %}{{ a + 1 }}{% endmacro %}{{ f() }}"),
            error + "parameter 'a' was not provided");
  EXPECT_EQ(Render("{{ ([] | first) + 1 }}"), error + "No first item, sequence was empty.");
  EXPECT_EQ(Render("{{ ([] | last) + 1 }}"), error + "No last item, sequence was empty.");
  EXPECT_EQ(Render("{{ ([] | max) + 1 }}"), error + "No aggregated item, sequence was empty.");
  EXPECT_EQ(Render("{% for x in [1] %}{{ loop.previtem + 1 }}{% endfor %}"),
            error + "there is no previous item");
  EXPECT_EQ(Render("{% for x in [1] %}{{ loop.nextitem + 1 }}{% endfor %}"),
            error + "there is no next item");
  EXPECT_EQ(Render("\n{{ (1 if false) + 1 }}"),
            error +
                "the inline if-expression on line 2 evaluated to false and no else section was "
                "defined.");
  // Printing, concatenating or iterating an undefined value is not an error.
  EXPECT_EQ(Render("[{{ none.x }}{{ n.x }}{{ m['k'] ~ 'a' }}]", vars), "[a]");
  EXPECT_EQ(Render("{% for a in nothing %}{% endfor %}ok"), "ok");
}

TEST(Jinja, Expressions) {
  EXPECT_EQ(Render("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} "
                   "{{ 2 ** 3 }} {{ 1 / 4 }} {{ 3 - 1.5 }}"),
            "7 9 3 -4 2 8 0.25 1.5");
  EXPECT_EQ(Render("{{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' * 2 }} {{ [1] + [2] }}"),
            "a1NoneTrue abab [1, 2]");
  EXPECT_EQ(Render("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'b' in 'abc' }} {{ 2 not in [1, 3] }} "
                   "{{ 1 == 1.0 }} {{ 'a' != 'a' }}"),
            "True False True True True False");
  EXPECT_EQ(
      Render("{{ 'y' if x else 'n' }}{{ 'y' if not x }}|{{ x or 'd' }}|{{ x and 1 }}", {{"x", 0}}),
      "ny|d|0");
  EXPECT_EQ(Render("{{ \"it's\" }} {{ 'tab\\there' }} {{ '\\u00e9\\x41' }} {{ 'a' 'b' }}"),
            "it's tab\there éA ab");
  EXPECT_EQ(Render("{{ {'a': [1, 2.5, none], 'b': {'c': true}} }}"),
            "{'a': [1, 2.5, None], 'b': {'c': True}}");
  EXPECT_EQ(Render("{{ -3 | abs }} {{ 1e3 }} {{ 0.1 + 0.2 }} {{ 1e-7 }} {{ 1e22 }}"),
            "3 1000.0 0.30000000000000004 1e-07 1e+22");
  EXPECT_EQ(Render("{{ 1 + 'a' }}"),
            "ERROR: chat template error: unsupported operand type(s) for +: 'int' and 'str'");
  EXPECT_EQ(Render("{{ 1 / 0 }}"), "ERROR: chat template error: division by zero");
}

TEST(Jinja, Filters) {
  EXPECT_EQ(Render("{{ '  x y  ' | trim }}|{{ 'Hello' | upper }}{{ 'Hello' | lower }}|"
                   "{{ 'hello wORLD-x' | title }}|{{ 'hELLO' | capitalize }}|{{ 'aXa' | "
                   "replace('a', 'b') }}"),
            "x y|HELLOhello|Hello World-X|Hello|bXb");
  EXPECT_EQ(Render("{{ xs | length }} {{ xs | count }} {{ 'héllo' | length }} {{ xs | first }} "
                   "{{ xs | last }} {{ xs | join('-') }} {{ xs | reverse | list }} {{ xs | sort }}",
                   {{"xs", {3, 1, 2}}}),
            "3 3 5 3 2 3-1-2 [2, 1, 3] [1, 2, 3]");
  EXPECT_EQ(Render("{{ u | default('d') }} {{ '' | default('e', true) }} {{ '5' | int + 1 }} "
                   "{{ 'x' | int }} {{ '2.5' | float }} {{ 3 | string }}{{ 2.567 | round(1) }}"),
            "d e 6 0 2.5 32.6");
  EXPECT_EQ(
      Render("{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='c') | join(',') }}"
             "|{{ ms | rejectattr('role', 'equalto', 'user') | list | length }}"
             "|{{ ms | map(attribute='role') | unique | list }}",
             {{"ms",
               {{{"role", "user"}, {"c", "a"}},
                {{"role", "bot"}, {"c", "b"}},
                {{"role", "user"}, {"c", "c"}}}}}),
      "a,c|1|['user', 'bot']");
  EXPECT_EQ(Render("{{ '<a & \"b\">' | escape }}{{ '<b>' | safe }}"),
            "&lt;a &amp; &#34;b&#34;&gt;<b>");
  EXPECT_EQ(Render("{{ x | nosuchfilter }}"),
            "PARSE ERROR: template syntax error (line 1): no filter named 'nosuchfilter'");
}

TEST(Jinja, ToJsonMatchesPythonJsonDumps) {
  const nlohmann::json v =
      nlohmann::json::parse(R"({"b": [1, 2.5, null, true, "é\n\"\u0001"], "a": {}, "c": []})");
  // ensure_ascii=False, ", " and ": " separators (json.dumps defaults without indent).
  EXPECT_EQ(Render("{{ v | tojson }}", {{"v", v}}),
            "{\"a\": {}, \"b\": [1, 2.5, null, true, \"é\\n\\\"\\u0001\"], \"c\": []}");
  // With indent the item separator loses its trailing space.
  EXPECT_EQ(Render("{{ [1, {'k': 'v'}] | tojson(indent=2) }}"),
            "[\n  1,\n  {\n    \"k\": \"v\"\n  }\n]");
  EXPECT_EQ(Render("{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}"), "{\"a\": 2, \"b\": 1}");
  EXPECT_EQ(Render("{{ 'é😀' | tojson(ensure_ascii=true) }}"), "\"\\u00e9\\ud83d\\ude00\"");
  EXPECT_EQ(Render("{{ [1, 2] | tojson(separators=(',', ':')) }}"), "[1,2]");
}

TEST(Jinja, TestsAndMethods) {
  EXPECT_EQ(Render("{{ x is defined }}{{ y is undefined }}{{ n is none }}{{ 's' is string }}"
                   "{{ 1 is number }}{{ d is mapping }}{{ [] is iterable }}{{ 3 is odd }}"
                   "{{ 4 is even }}{{ 2 is equalto 2 }}{{ true is true }}{{ n is not none }}",
                   {{"x", 1}, {"n", nullptr}, {"d", nlohmann::json::object()}}),
            "TrueTrueTrueTrueTrueTrueTrueTrueTrueTrueTrueFalse");
  EXPECT_EQ(
      Render("{{ s.startswith('<t') }}{{ s.endswith('>') }}|{{ s.strip('<>') }}|"
             "{{ '  a  '.lstrip() }}|{{ '  a  '.rstrip() }}|{{ 'a,b,c'.split(',', 1) }}|"
             "{{ ' a  b '.split() }}|{{ 'x{}y{}'.format(1, 'z') }}|{{ '-'.join(['a', 'b']) }}",
             {{"s", "<tag>"}}),
      "TrueTrue|tag|a  |  a|['a', 'b,c']|['a', 'b']|x1yz|a-b");
  EXPECT_EQ(Render("{{ d.get('a') }}{{ d.get('z', 'dflt') }}{{ d.get('z') }}{{ d.keys() | list }}"
                   "{{ d.values() | list }}",
                   {{"d", {{"a", 1}}}}),
            "1dfltNone['a'][1]");
}

TEST(Jinja, MacrosAndRaise) {
  EXPECT_EQ(Render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
                   "{{ greet('a') }} {{ greet('b', punct='?') }} {{ greet(name='c') }}"),
            "Hi a! Hi b? Hi c!");
  EXPECT_EQ(Render("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
                   "{{ f(3) }}"),
            "321");
  EXPECT_EQ(Render("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"),
            "ERROR: chat template error: macro recursion too deep");
  EXPECT_EQ(Render("a{{ raise_exception('Roles must alternate') }}"),
            "ERROR: Roles must alternate");
}

TEST(Jinja, SyntaxErrorsAreInvalidArgument) {
  for (const char* bad :
       {"{% if x %}", "{{ x", "{% for %}{% endfor %}", "{{ 'abc }}", "{% endif %}", "{% unknown %}",
        "{{ x is nosuchtest }}", "{# open", "{{ (((( }}"}) {
    auto t = jinja::Template::Parse(bad);
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  // Nesting beyond the parser's bound fails cleanly instead of exhausting the stack.
  EXPECT_FALSE(
      jinja::Template::Parse("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}")
          .ok());
}

// --- ChatTemplate ---

TEST(ChatTemplate, ContentPartsAreJoinedAndSpecialTokensDefined) {
  auto t = ChatTemplate::FromSource(
      "{{ bos_token }}{% for m in messages %}[{{ m.content }}]{% endfor %}{{ eos_token }}"
      "{{ tools is none }}{{ add_generation_prompt }}{{ extra_var }}",
      "<s>", "</s>");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  const nlohmann::json messages = nlohmann::json::parse(
      R"([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
          {"role": "assistant", "content": "c"}])");
  auto out = (*t)->Render(messages, true, {{"extra_var", 7}});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, "<s>[a\nb][c]</s>TrueTrue7");

  auto image = (*t)->Render(
      nlohmann::json::parse(R"([{"role": "user", "content": [{"type": "image_url"}]}])"), false);
  EXPECT_EQ(image.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*t)->Render(nlohmann::json::object(), false).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(ChatTemplate, EmptySpecialTokensStayUndefined) {
  auto t = ChatTemplate::FromSource("{{ bos_token is defined }}{{ eos_token }}", "", "E");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->Render(nlohmann::json::array(), false).value(), "FalseE");
}

TEST(ChatTemplate, OrderedRenderKeepsKeyOrder) {
  auto t = ChatTemplate::FromSource("{{ tools | tojson }}", "", "");
  ASSERT_TRUE(t.ok());
  const ordered_json extra = ordered_json::parse(R"({"tools": [{"z": 1, "a": 2}]})");
  EXPECT_EQ((*t)->Render(ordered_json::array(), false, extra).value(), "[{\"z\": 1, \"a\": 2}]");
}

class ModelDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("sy-chat-template-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  std::filesystem::path dir_;
};

TEST_F(ModelDir, LoadsTheTemplateMakeModelWrites) {
  // make-model writes tokenizer_config.json from exactly these two calls.
  const nlohmann::json tokenizer = SynthesizeByteLevelBpe(512, 1);
  Write("tokenizer.json", tokenizer.dump());
  Write("tokenizer_config.json", SynthesizeTokenizerConfig(tokenizer).dump(2));
  auto t = ChatTemplate::Load(dir_.string());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto out =
      (*t)->Render(nlohmann::json::parse(
                       R"([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])"),
                   true);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST_F(ModelDir, SpecialTokensMayBeAddedTokenObjects) {
  Write("tokenizer_config.json",
        R"({"bos_token": {"content": "<B>", "lstrip": false}, "eos_token": "<E>",
            "chat_template": [{"name": "tool_use", "template": "no"},
                              {"name": "default", "template": "{{ bos_token }}|{{ eos_token }}"}]})");
  auto t = ChatTemplate::Load(dir_.string());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->Render(nlohmann::json::array(), false).value(), "<B>|<E>");
}

TEST_F(ModelDir, FallsBackToChatTemplateJinja) {
  Write("tokenizer_config.json", R"({"eos_token": "</s>"})");
  Write("chat_template.jinja", "jinja file{{ eos_token }}");
  auto t = ChatTemplate::Load(dir_.string());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->Render(nlohmann::json::array(), false).value(), "jinja file</s>");
}

TEST_F(ModelDir, NotFoundWithoutATemplate) {
  Write("tokenizer_config.json", R"({"eos_token": "</s>"})");
  EXPECT_EQ(ChatTemplate::Load(dir_.string()).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(ChatTemplate::Load((dir_ / "missing").string()).status().code(), StatusCode::kNotFound);
}

TEST_F(ModelDir, SyntaxErrorIsInvalidArgument) {
  Write("tokenizer_config.json", R"({"chat_template": "{% for x in y %}"})");
  EXPECT_EQ(ChatTemplate::Load(dir_.string()).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sy
