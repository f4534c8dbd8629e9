"""What loop stopping reads of a request: the tool calls it carries back, each with how
many times the model made that call since the user's last turn (each dialect's codec
counts them: `Codec.last_tool_calls`, extproc/dialects/tool_turns.py). Here: the bounds
of what a call's run record keeps of them."""

from __future__ import annotations

MAX_COUNTED = 8          # tool names kept on a call's record
NAME_CHARS = 64          # of a tool's name, in messages and records
