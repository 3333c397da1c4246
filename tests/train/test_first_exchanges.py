"""The first exchange the pair finders read: system prompt, request and reply, or nothing."""

from chattune.data.conversation import Conversation, Message
from chattune.train.first_exchanges import first_exchange


def conv(*turns: tuple[str, str]) -> Conversation:
    return Conversation(messages=[Message(role=role, content=content) for role, content in turns])


def test_first_exchange_reads_system_request_and_reply_stripped():
    c = conv(("system", "You are Kit."), ("user", "  It's broken. "), ("assistant", "Could you clarify? \n"))
    assert first_exchange(c) == ("You are Kit.", "It's broken.", "Could you clarify?")


def test_first_exchange_without_system_prompt_has_none_for_it():
    c = conv(("user", "Hi"), ("assistant", "Hello!"), ("user", "Price?"), ("assistant", "$5."))
    assert first_exchange(c) == (None, "Hi", "Hello!")


def test_no_first_exchange_when_the_assistant_speaks_first_or_alone():
    assert first_exchange(conv(("assistant", "Welcome!"), ("user", "Hi"))) is None
    assert first_exchange(conv(("system", "You are Kit."), ("user", "Hi"))) is None
