import copy

import pytest

from chattune.data.conversation import Conversation, Message
from chattune.data.tokenize import IGNORE_INDEX, render_segments, token_ids, tokenize_conversations
from chattune.errors import DataError


def conv(*turns: tuple[str, str], weight0: int | None = None) -> Conversation:
    msgs = [Message(role=r, content=c) for r, c in turns]
    if weight0 is not None:  # mark the first assistant turn
        i = next(i for i, m in enumerate(msgs) if m.role == "assistant")
        msgs[i] = Message(role="assistant", content=msgs[i].content, weight=weight0)
    return Conversation(messages=msgs)


C = conv(
    ("system", "you are kit"),
    ("user", "hello"),
    ("assistant", "hello how can I help"),
    ("user", "reset?"),
    ("assistant", "hold the dial"),
)


def trained_text(tok, ex) -> list[str]:
    spans, cur = [], []
    for t, lab in zip(ex.input_ids, ex.labels, strict=True):
        if lab != IGNORE_INDEX:
            cur.append(t)
        elif cur:
            spans.append(tok.decode(cur))
            cur = []
    if cur:
        spans.append(tok.decode(cur))
    return spans


def test_only_assistant_turns_and_their_end_token_are_trained(tiny_tokenizer):
    (ex,), stats = tokenize_conversations([C], tiny_tokenizer, max_length=512)
    assert trained_text(tiny_tokenizer, ex) == ["hello how can I help<|im_end|>", "hold the dial<|im_end|>"]
    assert stats.kept == 1 and stats.supervised_tokens == ex.n_supervised


def test_tokens_equal_the_template_tokenised_whole(tiny_tokenizer):
    (ex,), _ = tokenize_conversations([C], tiny_tokenizer, max_length=512)
    whole = tiny_tokenizer.apply_chat_template(C.as_dicts(), tokenize=True, return_dict=True)["input_ids"]
    assert ex.input_ids == list(whole)


def test_weight_zero_turn_is_context_only(tiny_tokenizer):
    c = conv(
        ("user", "hello"),
        ("assistant", "bad answer"),
        ("user", "again"),
        ("assistant", "good answer"),
        weight0=0,
    )
    (ex,), _ = tokenize_conversations([c], tiny_tokenizer, max_length=512)
    assert trained_text(tiny_tokenizer, ex) == ["good answer<|im_end|>"]


USER_TOO = frozenset({"assistant", "user"})


def test_train_on_roles_adds_the_user_requests_but_not_the_template_around_them(tiny_tokenizer):
    (ex,), stats = tokenize_conversations([C], tiny_tokenizer, max_length=512, trained_roles=USER_TOO)
    assert trained_text(tiny_tokenizer, ex) == [
        "hello",
        "hello how can I help<|im_end|>",
        "reset?",
        "hold the dial<|im_end|>",
    ]
    (plain,), _ = tokenize_conversations([C], tiny_tokenizer, max_length=512)
    assert ex.input_ids == plain.input_ids  # the same tokens: only the labels differ
    assert stats.supervised_tokens > plain.n_supervised


def with_default_system(tokenizer):
    """A template that, like SmolLM2's, adds its own system prompt when the conversation has none."""
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful AI assistant for user "
        "questions<|im_end|>\n{% endif %}" + tokenizer.chat_template
    )
    return tok


@pytest.mark.parametrize(
    "request_text", ["AI", "user", "s", "im_start", "questions", " hello there", "say hello  "]
)
def test_a_request_is_trained_where_it_stands_not_where_its_words_first_occur(tiny_tokenizer, request_text):
    """The words of a request can occur earlier: in a default system prompt the template adds, in the
    role header, inside a special token's text. Only the request itself is trained, and the ids are
    the same as without training it."""
    tok = with_default_system(tiny_tokenizer)
    c = conv(("user", request_text), ("assistant", "ok then"))
    (ex,), _ = tokenize_conversations([c], tok, max_length=512, trained_roles=USER_TOO)
    (plain,), _ = tokenize_conversations([c], tok, max_length=512)
    assert ex.input_ids == plain.input_ids
    first_reply = next(i for i, lab in enumerate(plain.labels) if lab != IGNORE_INDEX)
    request = [lab for lab in ex.labels[:first_reply] if lab != IGNORE_INDEX]
    assert tok.decode(request).strip() == request_text.strip()
    header = len(
        tok(
            "<|im_start|>system\nYou are a helpful AI assistant for user questions<|im_end|>\n<|im_start|>user\n"
        )["input_ids"]
    )
    assert all(lab == IGNORE_INDEX for lab in ex.labels[:header])


def test_a_user_message_the_template_rewrites_cannot_be_trained_and_is_named(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = tok.chat_template.replace("message['content']", "message['content'] | upper")
    c = conv(("user", "reset"), ("assistant", "To reset, hold it: reset"))  # the reply repeats the word
    with pytest.raises(DataError, match=r"user message's content as written") as e:
        tokenize_conversations([c], tok, max_length=64, trained_roles=USER_TOO)
    assert e.value.field == "messages[0].content"


def test_trained_requests_do_not_keep_a_conversation_whose_replies_are_gone(tiny_tokenizer):
    cut = conv(("user", "word " * 200), ("assistant", "ok"))
    unweighted = conv(("user", "hello"), ("assistant", "bad answer"), weight0=0)
    examples, stats = tokenize_conversations(
        [C, cut, unweighted], tiny_tokenizer, max_length=64, trained_roles=USER_TOO
    )
    assert [e.source_index for e in examples] == [0] and stats.dropped_indices == [1, 2]


def test_conversation_cut_before_any_assistant_token_is_dropped_and_counted(tiny_tokenizer):
    long_user = conv(("user", "word " * 200), ("assistant", "ok"))
    examples, stats = tokenize_conversations([C, long_user], tiny_tokenizer, max_length=64)
    assert stats.conversations == 2 and stats.kept == 1 and stats.dropped_no_target == 1
    assert stats.dropped_indices == [1] and [e.source_index for e in examples] == [0]


def test_truncation_is_counted(tiny_tokenizer):
    long_answer = conv(("user", "hi"), ("assistant", "hello " * 100))
    (ex,), stats = tokenize_conversations([long_answer], tiny_tokenizer, max_length=32)
    assert len(ex) == 32 and stats.truncated == 1


def test_template_that_is_not_prefix_stable_is_reported(tiny_tokenizer):
    # A template that drops earlier assistant turns (as some "thinking" templates do) cannot be masked.
    import copy

    odd = copy.deepcopy(tiny_tokenizer)
    odd.chat_template = "{% for m in messages %}{% if loop.last or m['role'] != 'assistant' %}{{ m['role'] }}: {{ m['content'] }}\n{% endif %}{% endfor %}"
    with pytest.raises(DataError, match="prefix"):
        render_segments(C, odd)


def test_fast_renderer_matches_apply_chat_template(tiny_tokenizer):
    from chattune.data.tokenize import ChatRenderer

    render = ChatRenderer(tiny_tokenizer)
    assert render._template is not None  # the fast path is in use for a plain template
    for gen_prompt in (False, True):
        for n in range(1, len(C.messages) + 1):
            msgs = C.as_dicts()[:n]
            assert render(msgs, gen_prompt) == tiny_tokenizer.apply_chat_template(
                msgs, tokenize=False, add_generation_prompt=gen_prompt
            )


def test_token_ids_from_the_rust_backend_equal_the_tokenizer_call(tiny_tokenizer):
    texts = [
        "<|im_start|>user\nHow do I pair the kettle?<|im_end|>\n",
        "  spaces,\nnew lines and ünïcode ",
        "",
    ]
    assert token_ids(tiny_tokenizer, texts) == tiny_tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert token_ids(tiny_tokenizer, []) == []


def test_a_record_the_chat_template_refuses_is_named_by_file_and_line(tiny_tokenizer, tmp_path):
    """Found when the run tokenises its data, before the first step, not hours into training."""
    from chattune.data.conversation import read_jsonl
    from tests.helpers import write_jsonl

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = (
        "{% for m in messages %}{% if m.content == 'BOOM' %}{{ raise_exception('no BOOM here') }}{% endif %}"
        "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    bad = {"messages": [{"role": "user", "content": "BOOM"}, {"role": "assistant", "content": "hello"}]}
    path = tmp_path / "train.jsonl"
    write_jsonl(path, [good, good, bad])
    with pytest.raises(DataError, match=rf"^{path}:3: cannot be tokenised: TemplateError: no BOOM here$"):
        tokenize_conversations(read_jsonl(path), tok, max_length=64)


def test_reused_layouts_render_exactly_what_the_template_renders(tiny_tokenizer):
    """Data prepare fills each sequence of roles' layout instead of running jinja; every rendering,
    prefixes with the generation prompt included, must be the template's own text."""
    from chattune.data.tokenize import ChatRenderer

    exact, fast = ChatRenderer(tiny_tokenizer), ChatRenderer(tiny_tokenizer, reuse_layouts=True)
    assert fast.reuse_layouts
    convs = [
        C,
        conv(("user", "  padded {{ braces }} \n"), ("assistant", "<|im_end|> inside\ttext ")),
        conv(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")),
    ]
    for c in convs * 40:  # past CHECK_EVERY, so the periodic check runs too
        messages = c.as_dicts()
        for i in range(1, len(messages) + 1):
            for gen in (False, True):
                assert fast(messages[:i], gen) == exact(messages[:i], gen)
    assert fast.reuse_layouts  # nothing differed
    assert render_segments(C, tiny_tokenizer, fast) == render_segments(C, tiny_tokenizer, exact)


def test_a_template_that_changes_contents_gets_no_layouts(tiny_tokenizer):
    """A template that trims contents fails the start-up probe; one that rewrites a word the probe
    lacks is caught at the first render that differs, and from then on jinja renders everything."""
    from chattune.data.tokenize import ChatRenderer

    def with_template(template: str):
        tok = copy.deepcopy(tiny_tokenizer)
        tok.chat_template = template
        return tok

    loop = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ CONTENT }}<|im_end|>\n{% endfor %}"
    trims = with_template(loop.replace("CONTENT", "m['content'] | trim"))
    assert not ChatRenderer(trims, reuse_layouts=True).reuse_layouts

    rewrites = with_template(loop.replace("CONTENT", "m['content'] | replace('kettle', 'KETTLE')"))
    fast = ChatRenderer(rewrites, reuse_layouts=True)
    assert fast.reuse_layouts
    plain = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert fast(plain) == ChatRenderer(rewrites)(plain)
    for _ in range(ChatRenderer.CHECK_EVERY):
        text = fast([{"role": "user", "content": "my kettle"}, {"role": "assistant", "content": "ok"}])
    assert "KETTLE" in text and not fast.reuse_layouts


def test_a_conversation_the_template_refuses_is_a_roundtrip_failure_not_a_crash(tiny_tokenizer):
    """Templates raise on shapes they do not take (Llama's on unordered roles); data prepare then drops
    that one record as roundtrip_failed and goes on with the rest."""
    from chattune.data.prepare.stages import Measurer

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = tok.chat_template.replace(
        "{%- for", "{% if messages | length > 4 %}{{ raise_exception('too long') }}{% endif %}{%- for", 1
    )
    short, long = conv(("user", "a"), ("assistant", "b")), C
    (tokens, trained, ok), (_, _, refused) = Measurer(tok)([short, long])
    assert tokens > trained > 0 and ok == ""
    assert refused.startswith("the chat template refused it:") and "too long" in refused
