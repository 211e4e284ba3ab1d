// The Jinja engine against hostile templates: every render ends within jinja::RenderLimits (steps,
// output and string size, stored-value nesting), and int64 arithmetic that Python would take to
// big integers is an error instead of undefined behaviour. Found by tests/fuzz/jinja_template_fuzz.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/tokenizer/jinja/template.h"
#include "tests/common/source_dir.h"

namespace sy {
namespace {

std::string Render(const std::string& source, const jinja::RenderLimits& limits = {}) {
  auto t = jinja::Template::Parse(source);
  if (!t.ok()) return "PARSE ERROR: " + t.status().message();
  jinja::RenderOptions options;
  options.limits = limits;
  auto out = (*t)->Render(jinja::Value::FromJson(nlohmann::json::object()), options);
  if (!out.ok()) return "ERROR: " + out.status().message();
  return *out;
}

TEST(JinjaLimits, NestedLoopsStopAtTheStepBudget) {
  jinja::RenderLimits limits;
  limits.max_steps = 100'000;
  EXPECT_EQ(Render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                   "{% endfor %}",
                   limits),
            "ERROR: chat template error: template rendering exceeds its budget of 100000 steps");
}

TEST(JinjaLimits, StringsAndOutputAreBounded) {
  jinja::RenderLimits limits;
  limits.max_output_bytes = 1000;
  // Doubling a string in a namespace: 2^40 bytes unless something stops it.
  EXPECT_EQ(Render("{% set ns = namespace(s='x') %}{% for i in range(40) %}"
                   "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
                   limits),
            "ERROR: chat template error: template output exceeds 1000 bytes");
  EXPECT_EQ(Render("{% for i in range(100) %}0123456789abcdef{% endfor %}", limits),
            "ERROR: chat template error: template output exceeds 1000 bytes");
  EXPECT_EQ(Render("{{ 'ab' * 100000000 }}"),
            "ERROR: chat template error: repetition result too large");
  EXPECT_EQ(Render("{{ ('ab' * 3) ~ ([1] * 2)|string }}"), "ababab[1, 1]");
  EXPECT_EQ(Render("{{ 'a' * -2 }}|{{ [1] * 0 }}"), "|[]");
  // Iterating a string makes one value per character.
  EXPECT_EQ(Render("{% for c in 'x' * 2000000 %}{% endfor %}"),
            "ERROR: chat template error: string too long to iterate");
}

TEST(JinjaLimits, NamespacesCannotHoldThemselvesOrNestWithoutBound) {
  EXPECT_EQ(Render("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}"),
            "ERROR: chat template error: cannot store a namespace inside itself");
  EXPECT_EQ(Render("{% set a = namespace() %}{% set b = namespace(x=a) %}{% set a.y = [b] %}"),
            "ERROR: chat template error: cannot store a namespace inside itself");
  EXPECT_EQ(Render("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}"
                   "{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}"),
            "ERROR: chat template error: value nested too deeply to store");
  EXPECT_EQ(Render("{% set ns = namespace(l=[]) %}{% for i in range(3) %}"
                   "{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}"),
            "[[[[]]]]");
}

TEST(JinjaLimits, IntegerOverflowIsAnError) {
  const std::string kOverflow = "ERROR: chat template error: integer overflow";
  EXPECT_EQ(Render("{{ 9223372036854775807 + 1 }}"), kOverflow);
  EXPECT_EQ(Render("{{ -9223372036854775807 - 2 }}"), kOverflow);
  EXPECT_EQ(Render("{{ 4294967296 * 4294967296 }}"), kOverflow);
  EXPECT_EQ(Render("{{ 2 ** 64 }}"), kOverflow);
  EXPECT_EQ(Render("{{ -(-9223372036854775807 - 1) }}"), kOverflow);
  EXPECT_EQ(Render("{{ (-9223372036854775807 - 1) // -1 }}"), kOverflow);
  // What Python gives where the result fits.
  EXPECT_EQ(Render("{{ 2 ** 62 }} {{ (-1) ** 65 }} {{ 1 ** 1000 }} {{ 0 ** 0 }} {{ 0 ** 9 }}"),
            "4611686018427387904 -1 1 1 0");
  EXPECT_EQ(Render("{{ (-9223372036854775807 - 1) % -1 }} {{ 5 % -3 }} {{ -5 % 3 }} {{ 7 // -2 }}"),
            "0 -1 1 -4");
}

// Found by jinja_template_fuzz: `x.99999999999999999999` threw std::out_of_range out of the
// parser (std::terminate), 1e999 the same from std::stod; a float beyond int64 used as an int was
// undefined behaviour.
TEST(JinjaLimits, NumbersBeyondInt64AreErrorsNotCrashes) {
  EXPECT_EQ(Render("{{ x.99999999999999999999 }}"),
            "PARSE ERROR: template syntax error (line 1): integer literal out of range: "
            "99999999999999999999");
  EXPECT_EQ(Render("{{ 9223372036854775808 }}"),
            "PARSE ERROR: template syntax error (line 1): integer literal out of range: "
            "9223372036854775808");
  EXPECT_EQ(Render("{{ 9223372036854775807 }} {{ [1, 2].1 }}"), "9223372036854775807 2");
  // As Python's float literals: overflow is inf, underflow 0.
  EXPECT_EQ(Render("{{ 1e999 }} {{ -1e999 }} {{ 1e-999 }}"), "inf -inf 0.0");
  EXPECT_EQ(Render("{{ range(1e300)|length }}"),
            "ERROR: chat template error: cannot convert float 1e+300 to integer");
  EXPECT_EQ(Render("{{ (1e999)|int }}"),
            "ERROR: chat template error: cannot convert float inf to integer");
  EXPECT_EQ(Render("{{ '1e300'|int }} {{ '1e300'|int(7) }} {{ 2.9|int }} {{ -2.9|int }}"),
            "0 7 2 -2");
  EXPECT_EQ(Render("{{ (-9223372036854775807 - 1)|abs }}"),
            "ERROR: chat template error: integer overflow");
}

// str.format's field index went through std::stoul (std::out_of_range escaped the renderer)
// after ::isdigit on a possibly negative char (undefined behaviour).
TEST(JinjaLimits, FormatFieldIndicesAreBounded) {
  EXPECT_EQ(Render("{{ '{99999999999999999999999}'.format(1) }}"),
            "ERROR: chat template error: format field index out of range: 99999999999999999999999");
  EXPECT_EQ(Render("{{ '{1}{0}'.format('a', 'b') }}"), "ba");
  EXPECT_EQ(Render("{{ '{\xc3\xa9}'.format(1) }}"),
            "ERROR: chat template error: format field '\xc3\xa9' has no argument");
}

TEST(JinjaLimits, RangeAndSliceStepsDoNotOverflow) {
  EXPECT_EQ(Render("{{ range(9223372036854775806, 9223372036854775807, 5)|list }}"),
            "[9223372036854775806]");
  EXPECT_EQ(Render("{{ range(-9223372036854775807, -9223372036854775807 - 1, -9)|list }}"),
            "[-9223372036854775807]");
  EXPECT_EQ(Render("{{ [1, 2, 3][1::9223372036854775807] }} {{ 'abc'[::-9223372036854775807] }}"),
            "[2] c");
}

TEST(JinjaLimits, IndentWidthsAreBounded) {
  EXPECT_EQ(Render("{{ 'a\nb'|indent(-3) }}"), "a\nb");
  EXPECT_EQ(Render("{{ 'a\nb'|indent(2) }}"), "a\n  b");
  EXPECT_EQ(Render("{{ 'a\nb'|indent(100000000) }}"),
            "ERROR: chat template error: indent width too large");
  EXPECT_EQ(Render("{{ [1]|tojson(indent=100000000) }}"),
            "ERROR: chat template error: tojson indent too large");
  EXPECT_EQ(Render("{{ [1]|tojson(indent=-1) }}"), "[\n1\n]");
}

// The budget must not refuse real conversations: every real template of the golden fixture renders
// 20k messages within a tenth of the default steps, so 200k (an 8 MiB body of the shortest
// messages) fit the default.
TEST(JinjaLimits, RealTemplatesRenderLongChatsWithinTheDefaults) {
  std::ifstream f(testing::SourceDir() + "/tests/golden/chat_templates/cases.json");
  const nlohmann::ordered_json fixture = nlohmann::ordered_json::parse(f);
  nlohmann::ordered_json context = {
      {"add_generation_prompt", true}, {"bos_token", "<s>"}, {"eos_token", "</s>"}};
  context["tools"] = fixture["extras"]["tools"]["tools"];
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  for (int i = 0; i < 20'000; ++i) {
    messages.push_back({{"role", i % 2 == 0 ? "user" : "assistant"}, {"content", "hi"}});
  }
  context["messages"] = std::move(messages);
  const jinja::Value value = jinja::Value::FromJson(context);
  jinja::RenderOptions tenth;
  tenth.limits.max_steps = jinja::RenderLimits().max_steps / 10;
  int rendered = 0;
  for (const auto& t : fixture["templates"]) {
    if (t["name"] == "feature_coverage") continue;  // a test of features, not a chat template
    auto parsed = jinja::Template::Parse(t["template"].get<std::string>());
    ASSERT_TRUE(parsed.ok()) << t["name"];
    auto out = (*parsed)->Render(value, tenth);
    // Some templates refuse this conversation (no system turn, etc.) by raising; none may run
    // out of budget.
    if (!out.ok()) {
      EXPECT_EQ(out.status().message().find("chat template error"), std::string::npos)
          << t["name"] << ": " << out.status().message();
      continue;
    }
    EXPECT_GT(out->size(), 20'000u * 2) << t["name"];
    ++rendered;
  }
  EXPECT_GE(rendered, 8);
}

}  // namespace
}  // namespace sy
