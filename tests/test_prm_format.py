"""PRM formats: the score is read at the step tag the separator writes (Math-Shepherd), a missing or split tag is
an error, the text is tokenized as the model reads it (no space token per step with a SentencePiece-style
tokenizer), and the verifier's score is the model's own output at the read position. Tokenizers and models are
built locally with `tokenizers` and a random tiny Llama."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
from transformers import PreTrainedTokenizerFast

from reasonscale.config import TaskConfig
from reasonscale.lab.tokenizer import ALPHABET, SPECIAL_TOKENS, build_char_tokenizer
from reasonscale.tasks.lab import LabTask
from reasonscale.types import Problem
from reasonscale.verifiers.prm import PRMFormat, PRMVerifier, encode_steps

TAG = "ки"
MATH_SHEPHERD = {"mode": "token", "step_tag": TAG, "good_token": "+", "bad_token": "-"}  # the README's options
PROBLEM = Problem("p", "a=2, b=a*3. Find b.", "6", level=1)
STEPS = ["b=a*3=2*3=6", "answer=6"]


def tag_tokenizer() -> PreTrainedTokenizerFast:
    """The lab's character tokenizer with the tag added as one token."""
    tokenizer = build_char_tokenizer()
    tokenizer.add_tokens([TAG])
    return tokenizer


def sentencepiece_tokenizer() -> PreTrainedTokenizerFast:
    """BPE over characters behind a Metaspace ("▁") pre-tokenizer that marks only the text's start, like a Llama
    SentencePiece model: " ки" is the single token "▁ки", "+" alone is "▁+" (the token Math-Shepherd reads),
    and a piece tokenized alone would start with a "▁" token."""
    chars = sorted(set(ALPHABET.replace(" ", "") + "▁" + TAG))
    merges = [("▁", "к"), ("▁к", "и"), ("▁", "a"), ("▁", "+"), ("▁", "-")]
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + chars + ["".join(m) for m in merges])}
    core = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    core.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def tiny_lm(directory: Path, tokenizer: PreTrainedTokenizerFast) -> Path:
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def lab_task():
    return LabTask(TaskConfig(name="lab"))


def test_the_tag_must_be_written_by_the_separator():
    assert PRMFormat(step_tag=TAG).separator == f" {TAG}\n"  # Math-Shepherd's "step ки\n"
    assert PRMFormat().separator == "\n"
    with pytest.raises(ValueError, match="not in step_separator"):
        PRMFormat(step_tag=TAG, step_separator="\n")
    with pytest.raises(ValueError, match="empty"):
        PRMFormat(step_tag="")


def test_a_tag_that_is_not_one_token_is_an_error():
    tokenizer = build_char_tokenizer()  # no "ки": its letters are unknown characters, two tokens
    with pytest.raises(ValueError, match="not one"):
        encode_steps(tokenizer, "q\n", STEPS, PRMFormat(**MATH_SHEPHERD))
    with pytest.raises(ValueError, match="not one"):
        encode_steps(tokenizer, "q\n", STEPS, PRMFormat(step_tag="##", step_separator=" ##\n"))


@pytest.mark.parametrize("make", [tag_tokenizer, sentencepiece_tokenizer])
def test_steps_are_read_at_the_tag_of_the_text_the_model_reads(make):
    tokenizer = make()
    ids, positions = encode_steps(tokenizer, "q a=2\n", STEPS, PRMFormat(**MATH_SHEPHERD))
    text = f"q a=2\n{STEPS[0]} {TAG}\n{STEPS[1]} {TAG}\n"
    assert ids == tokenizer(text)["input_ids"]  # no extra token where a step starts
    assert [tokenizer.convert_ids_to_tokens(ids[p]).lstrip("▁") for p in positions] == [TAG, TAG]


@pytest.mark.parametrize("make", [tag_tokenizer, sentencepiece_tokenizer])
def test_token_mode_score_is_the_models_good_probability_at_the_tag(make, tmp_path, lab_task):
    tokenizer = make()
    path = tiny_lm(tmp_path / "lm", tokenizer)
    prm = PRMVerifier(str(path), lab_task, **MATH_SHEPHERD)
    (scores,) = prm.score([PROBLEM], [STEPS])
    text = lab_task.format_prompt(PROBLEM) + "".join(f"{s} {TAG}\n" for s in STEPS)
    ids = tokenizer(text)["input_ids"]
    tags = [i for i, t in enumerate(tokenizer.convert_ids_to_tokens(ids)) if t.lstrip("▁") == TAG]
    good, bad = (tokenizer.convert_tokens_to_ids(tokenizer.tokenize(t)) for t in ("+", "-"))
    assert len(good) == len(bad) == 1
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    expected = logits[tags][:, good + bad].softmax(-1)[:, 0]
    assert len(tags) == 2 and scores == pytest.approx(expected.tolist(), abs=1e-5)
