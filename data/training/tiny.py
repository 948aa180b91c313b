"""A tiny causal LM and tokenizer made here from nothing: no download, no hub.

The tokenizer is a byte-level BPE trained with ``tokenizers`` on our own exported conversations,
rendered with TRL's copy of the Qwen3 chat template (so the trainers recognise the template and
know how to parse its ``<tool_call>`` blocks). Pre-tokenization splits only at line breaks and
around digits, not at spaces or punctuation: the Qwen3 template prints each tool schema on one
line and schemas repeat in every sample, so merges cover long repeated spans and a prompt with a
dozen tool schemas is ~70 tokens, short enough for a CPU; digits stay apart so that no token mixes
an argument's key with its value (``_id": 87``), which a tiny model cannot learn to take apart.
The model is a randomly initialised Qwen3-architecture ``Qwen3ForCausalLM``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

# Qwen3's control tokens: the first three are special (skipped when decoding), the tool and think
# markers are plain added tokens so they survive decoding, as in Qwen3's own tokenizer.
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"]


def qwen3_chat_template() -> str:
    """TRL's copy of the Qwen3 template; TRL matches it verbatim to pick its response parser and its
    training variant (``{% generation %}`` markers for assistant-only loss)."""
    from trl.chat_template_utils import qwen3_chat_template as template
    return template


def _wrap(backend, template: str):
    from transformers import PreTrainedTokenizerFast
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=None, eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", unk_token=None, model_max_length=32768,
                                  padding_side="left")
    tok.chat_template = template
    return tok


def _backend(vocab_size: int | None = None):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\n+"), behavior="isolated"),
        pre_tokenizers.Split(Regex(r"[0-9]+"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED_TOKENS])
    return backend


def render_conversations(rows: Iterable[dict], template: str | None = None, training: bool = True) -> list[str]:
    """Rows of ``{"messages", "tools"}`` rendered as the trainer will see them (TRL's training variant
    of the template puts an empty think block in every assistant turn)."""
    from tokenizers import Tokenizer, models
    template = template or qwen3_chat_template()
    if training:
        from trl.chat_template_utils import qwen3_training_chat_template
        template = qwen3_training_chat_template
    renderer = _wrap(Tokenizer(models.BPE()), template)
    texts = []
    for row in rows:
        messages = row.get("messages") or row.get("prompt")
        texts.append(renderer.apply_chat_template(messages, tools=row.get("tools") or None, tokenize=False,
                                                  add_generation_prompt="prompt" in row))
    return texts


def train_tokenizer(texts: list[str], vocab_size: int = 4096):
    """A Qwen3-style tokenizer (``PreTrainedTokenizerFast``) trained on ``texts`` only."""
    from tokenizers import pre_tokenizers, trainers
    backend = _backend()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer=trainer)
    backend.add_tokens([t for t in ADDED_TOKENS])  # keep the markers whole after training
    return _wrap(backend, qwen3_chat_template())


def tiny_qwen3(tokenizer, hidden_size: int = 96, layers: int = 2, heads: int = 4, kv_heads: int = 2,
               max_positions: int = 4096, seed: int = 0):
    """A randomly initialised Qwen3 causal LM sized for a CPU smoke test."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM
    torch.manual_seed(seed)
    config = Qwen3Config(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 3,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         head_dim=hidden_size // heads, max_position_embeddings=max_positions,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    return Qwen3ForCausalLM(config)


def save(model, tokenizer, path: str | Path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
