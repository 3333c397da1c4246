"""Write a transformers causal LM and its tokenizer as one GGUF file for llama.cpp and Ollama.

    write_gguf(model, tokenizer, Path("model-f16.gguf"), quant="f16")

Names come from the `gguf` package's tensor map (the table llama.cpp's own converter uses), metadata
and merges from its writer and `SpecialVocab`. Only what llama.cpp needs beyond that is done here:
Llama's q/k rows are permuted into GGML's rope layout (transformers un-permutes them on load), and the
pre-tokenizer is named from the tokenizer's own definition.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chattune.errors import ChattuneError

if TYPE_CHECKING:
    import numpy as np
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# model_type -> GGUF architecture whose tensors and metadata this writer knows (tested: llama).
ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2"}
# Architectures whose q/k projection rows llama.cpp's converter permutes (rope in GGML's layout).
PERMUTES_QK = {"llama", "mistral"}
# GGUF file_type numbers (llama.cpp's LLAMA_FTYPE_*) for the quants written here.
NATIVE_QUANTS = ("f16", "bf16", "q8_0", "q4_0", "q4_1")


def write_gguf(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: Path, *, quant: str, name: str
) -> Path:
    """Write `model` with `quant` ('f16', 'bf16', 'q8_0', 'q4_0', 'q4_1') to `path`."""
    import gguf

    if quant not in NATIVE_QUANTS:
        raise ChattuneError(f"GGUF quant {quant!r}: this writer does {', '.join(NATIVE_QUANTS)}")
    config = model.config
    arch = ARCHITECTURES.get(config.model_type)
    if arch is None:
        raise ChattuneError(
            f"GGUF export supports model types {', '.join(ARCHITECTURES)}; this model is {config.model_type!r}"
        )
    rope = dict(getattr(config, "rope_parameters", None) or {})
    if rope.get("rope_type", "default") != "default":
        raise ChattuneError(f"GGUF export: rope scaling {rope.get('rope_type')!r} is not supported yet")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    vocab_size = max(config.vocab_size, len(tokenizer))

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(vocab_size)
    writer.add_file_type(_file_type(quant))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(writer, tokenizer, vocab_size)

    name_map = gguf.get_tensor_name_map(_arch_enum(arch), config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd as the output head when output.weight is absent
        gguf_name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ChattuneError(f"GGUF export: no GGUF name for tensor {hf_name!r} ({config.model_type})")
        data = tensor.detach().float().cpu().numpy()
        if config.model_type in PERMUTES_QK and gguf_name.endswith(("attn_q.weight", "attn_k.weight")):
            heads = config.num_attention_heads if "attn_q" in gguf_name else config.num_key_value_heads
            data = _permute_for_rope(data, heads)
        if gguf_name == "token_embd.weight" and data.shape[0] < vocab_size:
            data = _pad_rows(data, vocab_size)
        data, qtype = _quantize(data, gguf_name, quant)
        writer.add_tensor(gguf_name, data, raw_dtype=qtype)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=False)
    writer.close()
    return path


def end_of_turn_tokens(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The special tokens the chat template puts right after an assistant reply (e.g. '<|im_end|>'),
    then the EOS token: where generation must stop. Found by rendering, not from a list of templates."""
    marker = "CHATTUNE_REPLY_END"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}], tokenize=False
    )
    after = str(text).split(marker, 1)[1] if marker in str(text) else ""
    specials = sorted(
        (t for t in tokenizer.all_special_tokens + list(tokenizer.get_added_vocab()) if t),
        key=len,
        reverse=True,
    )
    found: list[str] = []
    i = 0
    while i < len(after):
        hit = next((t for t in specials if after.startswith(t, i)), None)
        if hit is not None:
            if hit not in found:
                found.append(hit)
            i += len(hit)
        elif after[i].isspace():
            i += 1
        else:
            break  # ordinary text (the next turn's prefix): the end-of-turn tokens are behind us
    if tokenizer.eos_token and tokenizer.eos_token not in found:
        found.append(tokenizer.eos_token)
    return found


def _add_tokenizer(writer: Any, tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> None:
    import gguf

    if not getattr(tokenizer, "is_fast", False):
        raise ChattuneError("GGUF export needs a fast (tokenizer.json) tokenizer")
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"]["type"] != "BPE" or not _is_byte_level(spec):
        raise ChattuneError(
            "GGUF export supports byte-level BPE tokenizers (GPT-2 style); "
            f"this one is {spec['model']['type']} without a ByteLevel pre-tokenizer"
        )
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer_name(spec))

    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = {t.content: t for t in tokenizer.backend_tokenizer.get_added_tokens_decoder().values()}
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        tok = by_id.get(i)
        if tok is None:  # rows the embedding has beyond the vocabulary: never produced
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif tok in added:
            tokens.append(tok)
            types.append(gguf.TokenType.CONTROL if added[tok].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(tok)
            types.append(gguf.TokenType.NORMAL)
    writer.add_token_list(tokens)
    writer.add_token_types(types)

    with tempfile.TemporaryDirectory() as tmp:
        # SpecialVocab reads merges, special ids and the chat template from the saved files, as
        # llama.cpp's converter does: one reading of tokenizer_config.json for both tools.
        tokenizer.save_pretrained(tmp)
        special = gguf.SpecialVocab(tmp, load_merges=True, n_vocab=vocab_size)
    if not special.merges:
        raise ChattuneError("GGUF export: the tokenizer has no BPE merges")
    special.add_to_gguf(writer, quiet=True)
    if special.chat_template is None and tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
    stops = end_of_turn_tokens(tokenizer)
    if stops:
        # llama.cpp guesses end-of-generation tokens from their text; name the template's one outright.
        writer.add_eot_token_id(tokenizer.convert_tokens_to_ids(stops[0]))
    writer.add_add_space_prefix(False)


def _is_byte_level(spec: dict[str, Any]) -> bool:
    pre = spec.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    return any(p.get("type") == "ByteLevel" for p in parts)


def _pre_tokenizer_name(spec: dict[str, Any]) -> str:
    """llama.cpp's name for the pre-tokenizer (how text is split before BPE). llama.cpp's converter
    identifies it by hashing sample tokenisations; here it is read from the definition itself."""
    pre = spec.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if (
        kinds == ["Digits", "ByteLevel"]
        and parts[0].get("individual_digits")
        and parts[1].get("use_regex", True)
    ):
        return "smollm"  # SmolLM / SmolLM2: digits split one by one, then GPT-2's regex
    raise ChattuneError(
        f"GGUF export: pre-tokenizer {kinds} is not one this exporter can name for llama.cpp "
        "(known: GPT-2 byte-level, SmolLM digits + byte-level)"
    )


def _file_type(quant: str) -> int:
    import gguf

    return {
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
        "q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
    }[quant]


def _arch_enum(arch: str) -> Any:
    import gguf

    return next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)


def _permute_for_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """transformers stores rotary halves [x0..x63 | y0..y63]; GGML's rope wants pairs interleaved.
    The same reshape as llama.cpp's convert_hf_to_gguf.py (and the inverse of transformers' loader)."""
    permuted: np.ndarray = w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2)
    return permuted.reshape(w.shape)


def _pad_rows(w: np.ndarray, rows: int) -> np.ndarray:
    import numpy as np

    return np.concatenate([w, np.zeros((rows - w.shape[0], *w.shape[1:]), dtype=w.dtype)])


def _quantize(data: np.ndarray, gguf_name: str, quant: str) -> tuple[np.ndarray, Any]:
    """Norms and biases stay float32 (tiny, and precision-critical), as in llama.cpp's converter.
    4-bit files keep the token embedding at q8_0: with tied weights it is also the output head, and
    that head is where 4 bits cost the most quality (llama.cpp's quantiser spends more bits there too)."""
    import gguf
    import numpy as np

    qt = gguf.GGMLQuantizationType
    if data.ndim <= 1:
        return data.astype(np.float32), qt.F32
    target = {"f16": qt.F16, "bf16": qt.BF16, "q8_0": qt.Q8_0, "q4_0": qt.Q4_0, "q4_1": qt.Q4_1}[quant]
    if target in (qt.Q4_0, qt.Q4_1) and gguf_name in ("token_embd.weight", "output.weight"):
        target = qt.Q8_0
    if target == qt.F16:
        return data.astype(np.float16), qt.F16
    block = gguf.GGML_QUANT_SIZES[target][0]
    if data.shape[-1] % block != 0:  # rows that do not fill whole blocks cannot be block-quantised
        return data.astype(np.float16), qt.F16
    return gguf.quants.quantize(data, target), target
