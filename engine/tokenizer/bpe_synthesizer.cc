#include "engine/tokenizer/bpe_synthesizer.h"

#include <algorithm>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/core/check.h"
#include "engine/core/json_fields.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/pretokenizer.h"
#include "engine/tokenizer/unicode.h"

namespace sy {
namespace {

using nlohmann::json;

constexpr const char* kSpecialTokens[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Extra merges never build tokens longer than this many bytes.
constexpr size_t kMaxExtraTokenBytes = 16;

// Written for Switchyard as training text for the synthetic tokenizer.
constexpr const char* kTrainingText = R"(The yard sorts every car onto its own track.
A router looks at each token and sends it to the two experts that fit it best.
When one expert is busy, the planner moves a copy of it to a quieter device.
We serve requests in batches, stream tokens back as they are sampled, and keep the cache warm.
It's simple: they're fast, we've measured it, you'll see, and I'd do it again. Don't worry.
Numbers like 0, 1, 2, 3, 10, 42, 128, 4096 and 3.25 appear in logs, 2025-01-31 at 12:30.

int main(int argc, char** argv) {
  for (int i = 0; i < argc; ++i) printf("%s\n", argv[i]);
  return 0;
}
def top_k(scores, k=2):
    return sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
{"id": 7, "object": "chat.completion", "choices": [{"index": 0, "text": "ok"}]}

Le train part à huit heures ; la gare est près du marché et du café.
Der Zug fährt über die Brücke, und die Straße ist schön grün.
El tren llega mañana a la estación, señor; ¿quién sabe por qué?
Поезд идёт на север, и дорога длинная. Спасибо и до свидания.
Το τρένο φτάνει στον σταθμό το πρωί.
火车在早上到站，专家模型把每个词分给两个专家。今天天气很好，我们一起去北京。
電車は朝に駅に着きます。ありがとうございます。東京はとても大きい街です。
기차는 아침에 역에 도착합니다. 감사합니다.
القطار يصل إلى المحطة في الصباح.
रेलगाड़ी सुबह स्टेशन पहुँचती है।
Emoji 😀 🚂 👍 ✅ and symbols → ≤ ≥ € £ ¥ © ® ™ … “quotes” ‘single’ — dash.
    indented    with    spaces
	tabs	and
newlines

end.
)";

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The vocabulary under construction: token strings (byte alphabet), merges, fast lookups.
struct Builder {
  std::vector<std::string> tokens;
  std::unordered_map<std::string, int32_t> ids;  // also holds the special tokens, as -1
  std::vector<std::pair<int32_t, int32_t>> merges;

  // The id of `token`, added if new; -1 if it is a special token.
  int32_t Add(std::string token) {
    const auto [it, inserted] = ids.emplace(token, static_cast<int32_t>(tokens.size()));
    if (inserted) tokens.push_back(std::move(token));
    return it->second;
  }
};

// Words of the training text (in the byte alphabet, as token ids) and their counts.
std::vector<std::pair<std::vector<int32_t>, int64_t>> TrainingWords(const Builder& b) {
  const auto pattern = tokenizer::RuleFromRegex(kQwen2Pattern);
  SY_CHECK(pattern.ok());
  std::vector<std::string_view> pieces;
  tokenizer::SplitIsolated(pattern.value(), kTrainingText, &pieces);
  std::map<std::string_view, int64_t> counts;
  for (std::string_view p : pieces) ++counts[p];
  std::unordered_map<std::string, int32_t> byte_id;
  for (int32_t i = 0; i < 256; ++i) byte_id[b.tokens[i]] = i;
  std::vector<std::pair<std::vector<int32_t>, int64_t>> words;
  for (const auto& [piece, count] : counts) {
    std::vector<int32_t> ids;
    for (char ch : piece)
      ids.push_back(byte_id.at(tokenizer::ByteToChar(static_cast<uint8_t>(ch))));
    words.emplace_back(std::move(ids), count);
  }
  return words;
}

// Classic BPE training until every training word is one token: repeatedly merge the most
// frequent adjacent pair (ties: smallest ids).
void LearnMerges(size_t target, Builder* b) {
  auto words = TrainingWords(*b);
  std::unordered_map<uint64_t, int64_t> pair_counts;
  while (b->tokens.size() < target) {
    pair_counts.clear();
    for (const auto& [ids, count] : words) {
      for (size_t i = 0; i + 1 < ids.size(); ++i) {
        pair_counts[(static_cast<uint64_t>(ids[i]) << 32) | static_cast<uint32_t>(ids[i + 1])] +=
            count;
      }
    }
    uint64_t best_key = 0;
    int64_t best_count = 0;
    for (const auto& [key, count] : pair_counts) {
      if (count > best_count || (count == best_count && key < best_key)) {
        best_key = key;
        best_count = count;
      }
    }
    if (best_count == 0) return;
    const std::pair<int32_t, int32_t> best{static_cast<int32_t>(best_key >> 32),
                                           static_cast<int32_t>(best_key & 0xFFFFFFFF)};
    const int32_t merged = b->Add(b->tokens[best.first] + b->tokens[best.second]);
    if (merged < 0) return;
    b->merges.push_back(best);
    for (auto& [ids, count] : words) {
      size_t out = 0;
      for (size_t i = 0; i < ids.size(); ++i) {
        if (i + 1 < ids.size() && ids[i] == best.first && ids[i + 1] == best.second) {
          ids[out++] = merged;
          ++i;
        } else {
          ids[out++] = ids[i];
        }
      }
      ids.resize(out);
    }
  }
}

// Fills the vocabulary with seeded merges of existing tokens.
void AddExtraMerges(size_t target, uint64_t seed, Builder* b) {
  uint64_t state = seed;
  while (b->tokens.size() < target) {
    const size_t n = b->tokens.size();
    const int32_t left = static_cast<int32_t>(SplitMix64(&state) % n);
    const int32_t right = static_cast<int32_t>(SplitMix64(&state) % n);
    if (b->tokens[left].size() + b->tokens[right].size() > kMaxExtraTokenBytes) continue;
    const size_t before = b->tokens.size();
    b->Add(b->tokens[left] + b->tokens[right]);
    if (b->tokens.size() > before) b->merges.push_back({left, right});
  }
}

json ByteLevelStep(const char* type) {
  return {
      {"type", type}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
}

}  // namespace

json SynthesizeByteLevelBpe(int32_t vocab_size, uint64_t seed) {
  SY_CHECK(vocab_size >= kMinSynthesizedVocabSize && vocab_size <= tokenizer::kMaxTokenId);
  const size_t model_size = static_cast<size_t>(vocab_size) - std::size(kSpecialTokens);
  Builder b;
  b.tokens.reserve(model_size);
  for (const char* special : kSpecialTokens) b.ids.emplace(special, -1);
  // GPT-2's byte order: the printable bytes first, then the remapped ones.
  for (int pass = 0; pass < 2; ++pass) {
    for (int byte = 0; byte < 256; ++byte) {
      const bool printable =
          (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || byte >= 174;
      if (printable == (pass == 0)) b.Add(tokenizer::ByteToChar(static_cast<uint8_t>(byte)));
    }
  }
  LearnMerges(model_size, &b);
  AddExtraMerges(model_size, seed, &b);

  json vocab = json::object();
  for (size_t id = 0; id < b.tokens.size(); ++id) vocab[b.tokens[id]] = id;
  json merges = json::array();
  for (const auto& [left, right] : b.merges) merges.push_back({b.tokens[left], b.tokens[right]});
  json added = json::array();
  for (size_t i = 0; i < std::size(kSpecialTokens); ++i) {
    added.push_back({{"id", model_size + i},
                     {"content", kSpecialTokens[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  json split = {{"type", "Split"},
                {"pattern", {{"Regex", kQwen2Pattern}}},
                {"behavior", "Isolated"},
                {"invert", false}};
  return {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", std::move(added)},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"}, {"pretokenizers", {split, ByteLevelStep("ByteLevel")}}}},
      {"post_processor", ByteLevelStep("ByteLevel")},
      {"decoder", ByteLevelStep("ByteLevel")},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", std::move(vocab)},
        {"merges", std::move(merges)}}},
  };
}

json SynthesizeTokenizerConfig(const json& tokenizer_json) {
  const json* added = json_fields::FindMember(tokenizer_json, "added_tokens");
  SY_CHECK(added != nullptr && added->is_array() && added->size() == std::size(kSpecialTokens));
  json decoder = json::object();
  for (const json& token : *added) {
    const json* id = json_fields::FindMember(token, "id");
    const std::optional<std::string> content = json_fields::LenientString(token, "content");
    SY_CHECK(id != nullptr && id->is_number_integer() && content.has_value());
    decoder[std::to_string(id->get<int64_t>())] = {{"content", *content},  {"lstrip", false},
                                                   {"normalized", false},  {"rstrip", false},
                                                   {"single_word", false}, {"special", true}};
  }
  return {
      {"add_bos_token", false},
      {"add_prefix_space", false},
      {"added_tokens_decoder", std::move(decoder)},
      {"additional_special_tokens", {"<|im_start|>", "<|im_end|>"}},
      {"bos_token", nullptr},
      {"chat_template",
       "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
       "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
       "{{ '<|im_start|>assistant\\n' }}{% endif %}"},
      {"clean_up_tokenization_spaces", false},
      {"eos_token", "<|endoftext|>"},
      {"errors", "replace"},
      {"model_max_length", 32768},
      {"pad_token", "<|endoftext|>"},
      {"tokenizer_class", "PreTrainedTokenizerFast"},
      {"unk_token", nullptr},
  };
}

}  // namespace sy
