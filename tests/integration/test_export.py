"""`chattune export` of the real embedded model (SmolLM2-135M-Instruct) to f16 GGUF: transformers and
llama.cpp read it back and answer word for word as chattune does from the same weights. Marked slow."""

import pytest

from chattune.config.export import ExportConfig
from chattune.export.run import export

pytestmark = pytest.mark.slow

CHATS = [
    "How do I reset my kettle?",
    "What is the capital of France?",
    "Write a haiku about tea.",
    "Give me three tips for sleeping well.",
]


@pytest.fixture(scope="module")
def embedded_gguf_export(tmp_path_factory):
    """The real embedded model exported to f16 GGUF, and chattune's greedy answers from the same weights."""
    from chattune.config import EMBEDDED_MODEL
    from chattune.generate import GenerationSettings, generate_reply
    from chattune.model import load_for_inference, resolve_source

    folder = resolve_source(EMBEDDED_MODEL).path
    out = tmp_path_factory.mktemp("embedded-gguf")
    export(folder, ExportConfig(format="gguf", quants=["f16"], out=out))
    model, tok, _ = load_for_inference(folder)
    settings = GenerationSettings(temperature=0.0, max_new_tokens=24)
    answers = [generate_reply(model, tok, [{"role": "user", "content": q}], settings).text for q in CHATS]
    return out, next(out.glob("*.gguf")).name, tok, answers


def test_embedded_gguf_in_transformers_answers_word_for_word(embedded_gguf_export):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chattune.generate import GenerationSettings, generate_reply

    out, name, _, answers = embedded_gguf_export
    model = AutoModelForCausalLM.from_pretrained(out, gguf_file=name).eval()
    tok = AutoTokenizer.from_pretrained(out, gguf_file=name)
    settings = GenerationSettings(temperature=0.0, max_new_tokens=24)
    back = [generate_reply(model, tok, [{"role": "user", "content": q}], settings).text for q in CHATS]
    assert back == answers


def test_embedded_gguf_in_llama_cpp_tokenises_and_answers_like_chattune(embedded_gguf_export):
    llama_cpp = pytest.importorskip("llama_cpp", reason="optional: pip install 'chattune[gguf]'")

    out, name, tok, answers = embedded_gguf_export
    llm = llama_cpp.Llama(model_path=str(out / name), n_ctx=512, n_threads=2, verbose=False)
    for q, expected in zip(CHATS, answers, strict=True):
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == tok(prompt).input_ids
        got = llm.create_completion(prompt, max_tokens=24, temperature=0.0, top_k=1)["choices"][0]["text"]
        assert got.strip() == expected.strip(), (q, got, expected)
