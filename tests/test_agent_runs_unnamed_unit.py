"""What the dialects read for runs that name none and for the same-answer loop: a
conversation's start and history (dialects/conversation_start.py), the latest assistant
text answers in a row (dialects/repeated_answers.py), per dialect; and a client told by a
user-agent's named variant."""

from __future__ import annotations

from extproc.dialects import conversation_start as start
from extproc.dialects import repeated_answers as repeated
from extproc.runs.identity import client_of


def test_a_conversations_start_is_its_system_prompt_and_first_user_turn():
    chat = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                         {"role": "assistant", "content": "A"}, {"role": "user", "content": "U2"}]}
    head, history = start.chat_start(chat)
    assert history is chat["messages"]
    assert start.chat_start({**chat, "messages": chat["messages"][:2]})[0] == head       # grows: same start
    assert start.chat_start({"messages": [{"role": "system", "content": "S"},
                                          {"role": "user", "content": "other"}]})[0] != head
    assert start.chat_start({"messages": [{"role": "system", "content": "S"}]}) is None   # no user turn
    assert start.responses_start({"instructions": "I", "input": "hi"})[1] == ["hi"]
    assert start.messages_start({"system": "S", "messages": [{"role": "user", "content": "U"}]}) is not None
    assert start.gemini_start({"contents": [{"parts": [{"text": "U"}]}]}) is not None
    assert start.gemini_start({"contents": "junk"}) is None


def test_the_same_answer_in_a_row_is_counted_in_each_dialect():
    turns = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A"},
             {"role": "user", "content": "again"}, {"role": "assistant", "content": "A"},
             {"role": "user", "content": "again"}]
    assert repeated.chat_repeated_answer({"messages": turns}) == ("A", 2)
    assert repeated.chat_repeated_answer({"messages": turns[:3] + [
        {"role": "assistant", "content": "B"}, turns[4]]}) == ("B", 1)
    tool_turn = {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}
    assert repeated.chat_repeated_answer({"messages": turns[:1] + [tool_turn, {"role": "tool"}]}) == ("", 0)
    assert repeated.messages_repeated_answer({"messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "t"}, {"type": "text", "text": "A"}]},
        {"role": "user", "content": "again"}, {"role": "assistant", "content": "A"}]}) == ("A", 2)
    assert repeated.responses_repeated_answer({"input": [
        {"role": "user", "content": "q"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A"}]},
        {"role": "user", "content": "q"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A"}]}]}) == ("A", 2)
    assert repeated.gemini_repeated_answer({"contents": [
        {"role": "user", "parts": [{"text": "q"}]}, {"role": "model", "parts": [{"text": "A"}]},
        {"role": "user", "parts": [{"text": "q"}]}, {"role": "model", "parts": [{"text": "A"}]}]}) == ("A", 2)
    assert repeated.gemini_repeated_answer({"contents": [
        {"role": "model", "parts": [{"functionCall": {"name": "ls"}}]}]}) == ("", 0)


def test_a_clients_named_variant_is_that_client():
    assert client_of({"user-agent": "GeminiCLI-nonint/0.61.0/gemini-2.5-flash (linux; x64)"}).name == "gemini-cli"
    assert client_of({"user-agent": "claude-cli/2.1.197 (external, cli)"}).name == "claude-code"
    assert client_of({"user-agent": "some-thing/1.0"}).name == ""
