"""Text used by the golden-fixture generator: the tokenizer training corpus, the tokenizer
test strings and the model prompts. Everything here was written for Switchyard; nothing is
downloaded."""

# A few KB of mixed text: English prose, code, European languages with accents, Chinese,
# Japanese, emoji, digits, whitespace runs, tabs and newlines. Trained tokenizers learn
# merges from it, so the test strings below hit both merged pieces and raw bytes.
TRAINING_CORPUS = """\
The switchyard sorts freight cars onto tracks. Each car carries a token, and each track
leads to an expert. When one track is too busy, the yard master moves cars to a quieter one.
A mixture of experts is a network in which a small router picks a few experts per token.
The router scores every expert, keeps the top two, and mixes their answers by weight.
It is cheap because most experts sleep while a token passes through the layer.
We measure latency in milliseconds and throughput in tokens per second.
The server streams tokens back to the client as soon as they are sampled.
Don't panic: it's only a test. They're here, we've seen them, you'll see, I'd say I'm sure.
THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG. the quick brown fox jumps over the lazy dog.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024 65536 3.14159 2.71828 1,000,000 2024-05-17.
Prices rose 12.5% in 2023; the index closed at 4,512.38 points on 31/12.

def route(tokens, experts, top_k=2):
    scores = [expert.score(t) for t in tokens for expert in experts]
    return sorted(scores, reverse=True)[:top_k]

for (int i = 0; i < n; ++i) {
\tif (x[i] != y[i] && mask[i] >= 0) { sum += x[i] * w[i]; }
}
std::vector<float> logits(vocab_size, 0.0f);  // one row per token
#include <cstdint>
SELECT name, count(*) FROM experts WHERE load > 0.5 GROUP BY name;
{"model": "mixtral", "experts": 8, "top_k": 2, "dtype": "bfloat16"}

Le café du coin ouvre à sept heures. Où est la gare ? C'est à côté de l'hôtel, près du
théâtre. Les élèves étudient la théorie des graphes et la façade de l'église est rénovée.
Ça coûte cher, mais la qualité est là. Noël approche et les enfants sont très impatients.
Der Bahnhof liegt hinter der Brücke. Über die Straße gehen wir zur Bäckerei, größer als
früher. Müller und Schäfer trinken Kaffee. Grüße aus München! Fußgänger müssen warten.
El niño come una manzana en el jardín. ¿Dónde está la estación? ¡Qué día tan bonito!
Mañana viajaremos a España y Perú. La canción es muy conocida en Latinoamérica.
Ella está aquí, él está allá; así es la vida. Año nuevo, vida nueva.

你好，世界！今天天气很好。我们在测试分词器。专家混合模型把每个词元分配给少数专家。
中文文本没有空格，所以分词器需要学习常见的字组合。北京和上海都是大城市。
日本語のテキストを分割します。東京は大きな都市です。今日はいい天気ですね。
ひらがなとカタカナ、そして漢字を使います。ありがとうございます。

Emoji: 😀 😃 😄 😁 🎉 🚂 🚃 🚋 👍 👍🏽 👨‍👩‍👧 ❤️ 🇫🇷 🇩🇪 ✅ ⚡
Whitespace runs:    four spaces,        eight spaces, 	tab, 		two tabs.
Lines


with blank lines between them.
   indented line
	tab-indented line
Mixed scripts: English, Français, Deutsch, Español, 中文, 日本語, русский язык, ελληνικά.
"""

# Strings every tokenizer is tested on. Order is part of the fixture: do not reorder.
COMMON_TEST_STRINGS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces",
    "trailing spaces   ",
    " a",
    "a  b   c",
    "\t\t",
    "\n\n\n",
    " \n ",
    "line one\nline two\r\nline three\ttabbed",
    "I'm here and you're not; DON'T, it's, we'll, they've, she'd",
    "12345",
    "3.14159 and 1,000,000 on 2024-01-15",
    "café naïve façade",
    "Die Straße über der Brücke ist größer.",
    "Où est la bibliothèque ? C'est là-bas, près du café.",
    "¿Dónde está el niño? ¡Mañana!",
    "你好，世界",
    "日本語のテキスト",
    "👍🏽 👨‍👩‍👧",
    "Mixed: English, 中文, русский, ελληνικά, 😀 and 🇫🇷",
    "def route(x):\n    return x ** 2 + 1  # square\n",
    "if (a != b && c <= d) { return std::max(a, b); }",
    "",
    "the cat sat on the mat. " * 16,
    "<|im_start|>user\nhi<|im_end|>",
    "    four spaces then text",
    "word\u00a0nbsp and zero\u200bwidth",
    "ÀÉÎÕÜ ñ ç ß Œuvre",
    "emoji run 😀😃😄🎉🚂",
]

# Extra strings per tokenizer: each one's own special / added tokens embedded in text.
EXTRA_TEST_STRINGS = {
    "bpe_qwen": [
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
        "text<|endoftext|>more text",
        # Decomposed accent (e + U+0301): the Qwen-style tokenizer NFC-normalises it.
        "cafe\u0301 vs café",
    ],
    "bpe_gpt2": [
        "text<|endoftext|>more text",
        "pad<|padding|>ding and <|padding|> alone",
        "cafe\u0301 vs café",
    ],
    "sp": [
        "[INST] What is a mixture of experts? [/INST]",
        "<s>[INST] hi [/INST]",
        "cafe\u0301 vs café",
    ],
    "sp_unigram": [
        "[INST] What is a mixture of experts? [/INST]",
        "<s>[INST] hi [/INST]",
        "a</s>b and </s> spaced",
    ],
    # The sp model with legacy=False: text right after a special token gets no leading space.
    "sp_legacy_false": [
        "[INST] What is a mixture of experts? [/INST]",
        "<s>[INST] hi [/INST]",
        "<s>hello world",
        "a</s>b and </s> spaced",
    ],
}

# Model prompts: (target token count, text). The generator cuts each text
# to the shortest prefix (in characters) with at least the target number of tokens.
PROMPT_TEXTS = [
    (4, "The router picks two experts for every token in the batch."),
    (10, "Le café du coin ouvre à sept heures, près de la gare et du théâtre."),
    (26, "你好 👍 café\ndef f(x):\n\treturn x**2  # square it, then route the token to two "
         "experts and move the last cars onto the quiet track."),
]
