"""Trains the four tiny tokenizers (Qwen-style byte-level BPE, GPT-NeoX-style byte-level BPE,
Llama-style sentencepiece BPE and sentencepiece Unigram), saves them the way transformers does,
and records reference encodings of test strings from the transformers classes that load the
saved directories, also with load-time overrides (the sp model with legacy=False)."""

import io
import re
import shutil
import tempfile
from pathlib import Path

import sentencepiece as spm
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, LlamaTokenizer, PreTrainedTokenizerFast

from corpus import COMMON_TEST_STRINGS, EXTRA_TEST_STRINGS, TRAINING_CORPUS

# The pre-tokenizer split pattern of Qwen2/Qwen3's tokenizer.json.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
BPE_VOCAB_SIZE = 512  # model vocab incl. the 256 byte symbols (added tokens come on top)
SP_VOCAB_SIZE = 400
SP_UNIGRAM_VOCAB_SIZE = 320


def _sp_training_lines():
    """Corpus lines without Chinese/Japanese: 400 pieces minus 259 (specials + 256 bytes) leave
    no room for hundreds of CJK characters, so CJK text goes through byte fallback."""
    cjk = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uff00-\uffef]")
    return [line for line in TRAINING_CORPUS.split("\n") if line.strip() and not cjk.search(line)]


def _train_byte_level_bpe(tokenizer, special_tokens):
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Train on the whole corpus as one sequence so whitespace runs and newlines are seen.
    tokenizer.train_from_iterator([TRAINING_CORPUS], trainer=trainer)


def build_bpe_qwen(out_dir: Path):
    """Qwen2/Qwen3-style: NFC, regex Split + ByteLevel without regex, special tokens appended."""
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    _train_byte_level_bpe(tok, special_tokens=[])
    tok.add_special_tokens([
        AddedToken(t, special=True, normalized=False)
        for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
    ])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    fast.save_pretrained(out_dir)


def build_bpe_gpt2(out_dir: Path):
    """GPT-NeoX/OLMoE-style: ByteLevel with the GPT-2 regex; <|endoftext|> is id 0 inside the
    trained vocab, <|padding|> is an added non-special token after it."""
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    _train_byte_level_bpe(tok, special_tokens=["<|endoftext|>"])
    tok.add_tokens([AddedToken("<|padding|>", special=False, normalized=False)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    fast.save_pretrained(out_dir)


def build_sp(out_dir: Path):
    """Llama/Mixtral-style sentencepiece BPE with byte fallback, saved by LlamaTokenizer."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_sp_training_lines()),
        model_writer=model,
        model_type="bpe",
        vocab_size=SP_VOCAB_SIZE,
        byte_fallback=True,
        character_coverage=0.98,  # the minimum sentencepiece allows,
        split_digits=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        normalization_rule_name="identity",
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    with tempfile.TemporaryDirectory() as staging:
        model_path = Path(staging) / "tokenizer.model"
        model_path.write_bytes(model.getvalue())
        slow = LlamaTokenizer(
            vocab_file=str(model_path),
            legacy=True,
            add_bos_token=True,
            add_eos_token=False,
            clean_up_tokenization_spaces=False,
        )
        slow.save_pretrained(out_dir)


def build_sp_unigram(out_dir: Path):
    """sentencepiece Unigram without byte fallback (unknown characters become <unk>), default
    whitespace handling except remove_extra_whitespaces=False (the Llama converter of
    transformers never collapses spaces), and Mistral-style control pieces [INST] / [/INST]
    (transformers makes control pieces special tokens), saved by LlamaTokenizer."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_sp_training_lines()),
        model_writer=model,
        model_type="unigram",
        vocab_size=SP_UNIGRAM_VOCAB_SIZE,
        control_symbols=["[INST]", "[/INST]"],
        byte_fallback=False,
        character_coverage=0.98,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    with tempfile.TemporaryDirectory() as staging:
        model_path = Path(staging) / "tokenizer.model"
        model_path.write_bytes(model.getvalue())
        slow = LlamaTokenizer(
            vocab_file=str(model_path),
            legacy=True,
            add_bos_token=True,
            add_eos_token=False,
            clean_up_tokenization_spaces=False,
        )
        slow.save_pretrained(out_dir)


TOKENIZER_BUILDERS = {"bpe_qwen": build_bpe_qwen, "bpe_gpt2": build_bpe_gpt2, "sp": build_sp,
                      "sp_unigram": build_sp_unigram}

# Case sets recorded from a saved directory loaded with from_pretrained overrides:
# name -> (directory, kwargs). A test loads the directory with the kwargs merged into its
# tokenizer_config.json, which is what from_pretrained does with them.
TOKENIZER_VARIANTS = {"sp_legacy_false": ("sp", {"legacy": False})}


def _encode_case(hf_tok, text):
    ids = hf_tok(text, add_special_tokens=False)["input_ids"]
    return {
        "text": text,
        "ids": ids,
        "ids_with_special": hf_tok(text, add_special_tokens=True)["input_ids"],
        "decoded": hf_tok.decode(ids),
    }


def _sp_mismatches(tok_dir: Path, hf_tok, strings):
    """Strings where sentencepiece's own EncodeAsIds differs from the transformers ids. Where
    the ids agree, the decoded text must agree too (fails loudly otherwise)."""
    sp = spm.SentencePieceProcessor(model_file=str(tok_dir / "tokenizer.model"))
    out = []
    for text in strings:
        hf_ids = hf_tok(text, add_special_tokens=False)["input_ids"]
        sp_ids = sp.EncodeAsIds(text)
        if hf_ids != sp_ids:
            out.append({"text": text, "hf_ids": hf_ids, "sentencepiece_ids": sp_ids,
                        "reason": "transformers matches special-token text (e.g. <s>) inside "
                                  "the input; sentencepiece encodes it as plain text"})
        elif hf_tok.decode(hf_ids) != sp.DecodeIds(sp_ids):
            raise RuntimeError(f"sp decode differs for {text!r}: {hf_tok.decode(hf_ids)!r} "
                               f"vs {sp.DecodeIds(sp_ids)!r}")
    return out


def _sp_differences(tok_dir: Path, hf_tok, strings):
    """The strings whose transformers ids differ from sentencepiece's own EncodeAsIds: where
    the fixture exercises what transformers does on top of sentencepiece."""
    sp = spm.SentencePieceProcessor(model_file=str(tok_dir / "tokenizer.model"))
    return [text for text in strings
            if hf_tok(text, add_special_tokens=False)["input_ids"] != sp.EncodeAsIds(text)]


def _case_set(hf_tok, strings):
    return {
        "hf_class": type(hf_tok).__name__,
        "vocab_size": len(hf_tok),
        "cases": [_encode_case(hf_tok, s) for s in strings],
    }


def build_cases(tok_root: Path):
    """Returns (cases, dropped): cases per tokenizer name; dropped lists sp strings where
    transformers and sentencepiece disagree (kept out of the fixture, documented in README).
    The other sentencepiece case sets keep every string and list in "differs_from_sentencepiece"
    those where transformers' ids are not sentencepiece's."""
    cases, dropped = {}, []
    for name in TOKENIZER_BUILDERS:
        tok_dir = tok_root / name
        hf_tok = AutoTokenizer.from_pretrained(tok_dir)
        strings = COMMON_TEST_STRINGS + EXTRA_TEST_STRINGS[name]
        if name == "sp":
            dropped = _sp_mismatches(tok_dir, hf_tok, strings)
            bad = {d["text"] for d in dropped}
            strings = [s for s in strings if s not in bad]
        cases[name] = _case_set(hf_tok, strings)
        if name == "sp_unigram":
            cases[name]["differs_from_sentencepiece"] = _sp_differences(tok_dir, hf_tok, strings)
    for name, (dir_name, kwargs) in TOKENIZER_VARIANTS.items():
        tok_dir = tok_root / dir_name
        hf_tok = AutoTokenizer.from_pretrained(tok_dir, **kwargs)
        strings = COMMON_TEST_STRINGS + EXTRA_TEST_STRINGS[name]
        cases[name] = {"dir": dir_name, "load_kwargs": kwargs, **_case_set(hf_tok, strings),
                       "differs_from_sentencepiece": _sp_differences(tok_dir, hf_tok, strings)}
    return cases, dropped


def build_all(tok_root: Path):
    for name, builder in TOKENIZER_BUILDERS.items():
        out_dir = tok_root / name
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        builder(out_dir)
