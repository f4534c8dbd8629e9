"""The pieces of the Anthropic stream a caller reads (messages_stream.Encoder): each
event's bytes up to the value it carries, made once, so that a delta costs one join; and
the block being written, with what the encoder keeps of it."""

DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,"delta":{"type":'
DELTA_TYPES = {"text": b'"text_delta","text":', "thinking": b'"thinking_delta","thinking":',
               "tool_use": b'"input_json_delta","partial_json":'}
SIGNATURE = b'"signature_delta","signature":'
DELTA_END = b"}}\n\n"
START = b'event: content_block_start\ndata: {"type":"content_block_start","index":%d,"content_block":'
STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
TEXT_BLOCK = b'{"type":"text","text":""}'
THINKING_BLOCK = b'{"type":"thinking","thinking":"","signature":""}'
MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
NO_USAGE = {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0}

WAITING, OPEN, CLOSED = 0, 1, 2


class Block:
    """A block being written: what it is, its index and delta event up to the value as the
    caller reads them, and what of it is kept (a tool call's fragments, to know when its
    arguments are whole; a waiting block's deltas)."""
    __slots__ = ("head", "header", "index", "kind", "ours", "pieces", "signature", "state", "stopped")

    def __init__(self, kind: str, header: bytes, ours: bool) -> None:
        self.kind = kind
        self.header = header                     # its content_block, written
        self.ours = ours                         # made by Anthropic: its signature is readable
        self.index = -1
        self.head = b""
        self.pieces: list[str] = []
        self.signature = ""
        self.state = WAITING
        self.stopped = False                     # the provider said it is complete
