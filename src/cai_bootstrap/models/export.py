"""Take a model elsewhere: a merged Hugging Face directory, a GGUF file, or the stacked adapters.

    export_model("runs/x:stage-3", "out/hf", "hf")          # AutoModelForCausalLM.from_pretrained("out/hf")
    export_model("runs/x:stage-3", "out/gguf", "gguf")      # out/gguf/model.gguf (llama.cpp, Ollama)
    export_model("runs/x:stage-3", "out/adapters", "adapters")

A stage model is the base with every stage's trained weights applied in order
(`loading.merge_adapters`); ``hf`` and ``gguf`` write that merged model, ``adapters``
copies the lineage's weights with a base reference that means something on another
machine and a README saying in which order to apply them.

Every export directory is built aside and swapped in (`jsonl.replace_dir`), and carries
`EXPORT_FILE`; a directory that exists, is not empty and has no such file is never
replaced (``--out ~`` must not delete a home directory).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cai_bootstrap.jsonl import replace_dir
from cai_bootstrap.models.gguf_export import ExportError, adds_bos, write_gguf
from cai_bootstrap.models.loading import load_model, read_lineage, resolve_model_ref
from cai_bootstrap.models.registry import REGISTRY
from cai_bootstrap.models.weights import LORA_CONFIG_FILE, is_full_weights
from cai_bootstrap.prompt_format import INSTRUCTION_HEADER, RESPONSE_HEADER

FORMATS = ("hf", "gguf", "adapters")
#: Written into every export directory: what it holds and where it came from.
EXPORT_FILE = "export.json"
GGUF_FILE = "model.gguf"


def check_target(out: Path) -> None:
    """Refuse to replace a non-empty directory that is not an earlier export."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / EXPORT_FILE).exists())):
        raise ExportError(f"{out} exists and is not an earlier export: choose a new --out directory")


def write_json(path: Path, obj) -> None:
    """A JSON file inside an export being built (the swap of the whole directory makes it atomic)."""
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


def build_export(out: Path, fill) -> Path:
    """`jsonl.replace_dir` with files readable by others, as a published model's are
    (some writers create them 0600)."""
    def run(tmp: Path) -> None:
        fill(tmp)
        for path in tmp.rglob("*"):
            if path.is_file():
                path.chmod(0o644)

    return replace_dir(out, run)


def base_of(ref: str) -> str:
    """The base model reference of ``ref``: a stage's lineage base, else ``ref`` itself."""
    source, location = resolve_model_ref(ref)
    return read_lineage(location)["base"] if source == "stage" else ref


def portable_base(base: str) -> str:
    """A name for ``base`` that means the same on another machine: a registry model's hub id
    (or its registry name when it has none), a hub id as is, a local directory's name."""
    if base in REGISTRY:
        return REGISTRY[base].hf_id or base
    path = Path(base)
    return path.name if path.exists() else base


def chat_template(with_bos: bool) -> str:
    """A Jinja chat template that writes the project's prompt format (`prompt_format`).

    One user message gives exactly ``format_prompt(content)``; a conversation is written
    as filled examples one after another (the few-shot layout); a system message becomes a
    paragraph before the first instruction. The response header is always written, so
    ``add_generation_prompt`` changes nothing. BOS is written where the tokenizer itself
    adds it, since chat front ends tokenize the rendered text without special tokens.
    """
    instruction = json.dumps(INSTRUCTION_HEADER)
    response = json.dumps(RESPONSE_HEADER)
    return (
        ("{{ bos_token }}" if with_bos else "")
        + "{% for message in messages %}"
        + "{% if message['role'] == 'system' %}{{ message['content'] | trim }}{{ '\\n\\n' }}"
        + "{% elif message['role'] == 'user' %}{% if not loop.first and messages[loop.index0 - 1]['role'] != 'system' %}"
        + "{{ '\\n\\n' }}{% endif %}"
        + f"{{{{ {instruction} }}}}{{{{ message['content'] | trim }}}}{{{{ {response} }}}}"
        + "{% elif message['role'] == 'assistant' %}{{ message['content'] | trim }}{% endif %}"
        + "{% endfor %}"
    )


def _provenance(ref: str, fmt: str, **extra) -> dict:
    source, location = resolve_model_ref(ref)
    info = {"format": fmt, "source": ref, "base": base_of(ref), "portable_base": portable_base(base_of(ref)),
            "prompt_format": {"prompt": INSTRUCTION_HEADER + "{instruction}" + RESPONSE_HEADER,
                              "stop": ["###"], "response_ends_with": "EOS"}}
    if source == "stage":
        info["lineage"] = json.loads((Path(location) / "lineage.json").read_text(encoding="utf-8"))
    return {**info, **extra}


def _load_for_export(ref: str, dtype: str | None):
    loaded = load_model(ref, dtype=dtype)
    model, tokenizer = loaded.model, loaded.tokenizer
    model.requires_grad_(False)
    tokenizer.chat_template = chat_template(adds_bos(tokenizer))
    for key in ("eos_token_id", "bos_token_id", "pad_token_id"):
        if getattr(model.generation_config, key, None) is None:
            setattr(model.generation_config, key, getattr(tokenizer, key))
    return model, tokenizer


def export_hf(ref: str, out: str | Path, dtype: str | None = None) -> Path:
    """The merged model + tokenizer (with a chat template in the prompt format) + generation config."""
    out = Path(out)
    check_target(out)
    model, tokenizer = _load_for_export(ref, dtype)

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / EXPORT_FILE, _provenance(ref, "hf", dtype=str(model.dtype).removeprefix("torch.")))
        (tmp / "README.md").write_text(_readme_hf(ref), encoding="utf-8")

    return build_export(out, fill)


def export_gguf(ref: str, out: str | Path, tensor_type: str = "auto", dtype: str | None = None) -> tuple[Path, list[str]]:
    """``out/model.gguf`` (+ an Ollama ``Modelfile``); returns the file and what llama.cpp would do
    differently from this tool with it (`gguf_export.gguf_warnings`, empty for Gemma 3 270M)."""
    out = Path(out)
    check_target(out)
    model, tokenizer = _load_for_export(ref, dtype)
    warnings: list[str] = []

    def fill(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        warnings.extend(write_gguf(model, tokenizer, base_of(ref), tmp / GGUF_FILE, tensor_type, name=ref))
        write_json(tmp / EXPORT_FILE, _provenance(ref, "gguf", tensor_type=tensor_type, warnings=warnings))
        (tmp / "Modelfile").write_text(_modelfile(), encoding="utf-8")

    return build_export(out, fill) / GGUF_FILE, warnings


def export_adapters(ref: str, out: str | Path) -> Path:
    """Every stage's trained weights in order (``01-<stage>/``, ...), each LoRA adapter's
    ``base_model_name_or_path`` set to the portable base, with ``lineage.json`` and a README."""
    out = Path(out)
    check_target(out)
    source, location = resolve_model_ref(ref)
    if source != "stage":
        raise ExportError(f"{ref}: not a stage model, so it has no adapters (use --format hf or gguf)")
    lineage = read_lineage(location)
    base = portable_base(lineage["base"])
    names = json.loads((Path(location) / "lineage.json").read_text(encoding="utf-8"))["adapters"]
    entries = []
    for i, (path, name) in enumerate(zip(lineage["adapters"], names), start=1):
        stage = name.removesuffix("/model/adapter").replace("/", "-")
        kind = "full" if is_full_weights(path) else "lora"
        entries.append({"order": i, "dir": f"{i:02d}-{stage}", "stage": stage, "kind": kind})

    def fill(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        for entry, path in zip(entries, lineage["adapters"]):
            target = tmp / entry["dir"]
            shutil.copytree(path, target)
            config_file = target / LORA_CONFIG_FILE
            if config_file.exists():
                config = json.loads(config_file.read_text(encoding="utf-8"))
                config["base_model_name_or_path"] = base
                config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        portable = {"base": lineage["base"], "portable_base": base, "apply_in_order": entries}
        write_json(tmp / "lineage.json", portable)
        write_json(tmp / EXPORT_FILE, _provenance(ref, "adapters"))
        (tmp / "README.md").write_text(_readme_adapters(ref, lineage["base"], base, entries), encoding="utf-8")

    return build_export(out, fill)


def export_model(ref: str, out: str | Path, fmt: str = "hf", tensor_type: str = "auto",
                 dtype: str | None = None) -> tuple[Path, list[str]]:
    """Dispatch on ``fmt`` (one of `FORMATS`); returns the written path and any warnings."""
    if fmt == "hf":
        return export_hf(ref, out, dtype), []
    if fmt == "gguf":
        return export_gguf(ref, out, tensor_type, dtype)
    if fmt == "adapters":
        return export_adapters(ref, out), []
    raise ExportError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")


_PROMPT_NOTE = (
    "The model was trained on one plain-text prompt format, with no chat template of its own:\n\n"
    "    ### Instruction:\n    {instruction}\n\n    ### Response:\n    {response}<eos>\n\n"
    "Stop generation at EOS or at `###`. The tokenizer's chat template writes this format, so "
    "chat front ends (vLLM's chat API, `apply_chat_template`) need nothing more.\n"
)


def _readme_hf(ref: str) -> str:
    return (
        f"# {ref}, merged\n\nExported by `cai-bootstrap export --format hf`: the base with every stage's "
        "trained weights merged in order (see `export.json`).\n\n" + _PROMPT_NOTE + "\n"
        "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "tok = AutoTokenizer.from_pretrained(DIR)\nmodel = AutoModelForCausalLM.from_pretrained(DIR)\n"
        "ids = tok.apply_chat_template([{\"role\": \"user\", \"content\": \"Name a prime number.\"}], "
        "return_tensors=\"pt\", return_dict=True)\n"
        "print(tok.decode(model.generate(**ids, max_new_tokens=32)[0]))\n```\n"
    )


def _modelfile() -> str:
    template = INSTRUCTION_HEADER + "{{ .Prompt }}" + RESPONSE_HEADER
    return (f"FROM ./{GGUF_FILE}\nTEMPLATE \"\"\"{template}\"\"\"\n"
            "PARAMETER stop \"###\"\nPARAMETER temperature 0\n")


def _readme_adapters(ref: str, base: str, portable: str, entries: list[dict]) -> str:
    rows = "\n".join(f"| {e['order']} | `{e['dir']}` | {e['kind']} |" for e in entries)
    exact = (f"`{base}` is a model of cai-bootstrap: the exact base is "
             f"`cai_bootstrap.models.loading.load_base(\"{base}\")` (or `cai-bootstrap export {base} --format hf`)"
             + (f"; `{portable}` on the hub is its nearest published model (the embedded model is its "
                "Q4_K_M GGUF de-quantized, so results differ slightly)." if portable != base else ".")
             if base in REGISTRY else f"The base is `{portable}`.")
    return (
        f"# {ref}: stacked adapters\n\n"
        "A stage model is the base with each stage's trained weights applied **in this order** (each stage "
        "trained on the model the earlier ones made). Applying only the last adapter gives a different model.\n\n"
        f"| order | directory | kind |\n|---|---|---|\n{rows}\n\n{exact}\n\n"
        "`lora` entries are PEFT LoRA adapters (`adapter_config.json` names the base as "
        f"`{portable}`); `full` entries are fine-tuned tensors (`full_weights.safetensors`) that replace "
        "the model's own.\n\n"
        "```python\nimport json, pathlib\nfrom peft import PeftModel\nfrom safetensors.torch import load_file\n"
        "from transformers import AutoModelForCausalLM\n\n"
        f"model = AutoModelForCausalLM.from_pretrained(\"{portable}\")  # or the exact base, see above\n"
        "for entry in json.loads(pathlib.Path(\"lineage.json\").read_text())[\"apply_in_order\"]:\n"
        "    if entry[\"kind\"] == \"lora\":\n"
        "        model = PeftModel.from_pretrained(model, entry[\"dir\"]).merge_and_unload()\n"
        "    else:\n"
        "        model.load_state_dict(load_file(f\"{entry['dir']}/full_weights.safetensors\"), strict=False)\n"
        "```\n\n" + _PROMPT_NOTE
    )
