"""HPACK for the workers' HTTP/2 (http2.py): the client's header blocks decoded with
`hpack` (python-hyper's; the client's dynamic table matters), the server's own fields
written as literals that never touch a table, so no encoder state is kept."""

from __future__ import annotations

from hpack import Decoder
from hpack.exceptions import HPACKError, OversizedHeaderListError

from .frames import COMPRESSION_ERROR, ENHANCE_YOUR_CALM, ConnectionFault

REMEMBERED_BLOCKS = 64          # HeaderBlocks keeps this many decoded blocks ...
REMEMBERED_UP_TO = 1024         # ... of at most this many bytes (Envoy's are under 100)


def literal(name: bytes, value: bytes) -> bytes:
    """An HPACK literal header field without indexing, new name (RFC 7541 6.2.2)."""
    return b"\x00" + _length(name) + name + _length(value) + value


def _length(data: bytes) -> bytes:
    """An HPACK string length: 7-bit prefix integer, no Huffman (RFC 7541 5.1)."""
    size = len(data)
    if size < 127:
        return bytes((size,))
    out, size = bytearray((127,)), size - 127
    while size >= 128:
        out.append(size % 128 + 128)
        size //= 128
    out.append(size)
    return bytes(out)


class HeaderBlocks:
    """hpack's decoder, remembering what a block decoded to while the client's dynamic
    table stays the same. Envoy opens every ext_proc stream with the same block (its
    `:path` a literal that is never indexed, the rest table references): ~30 µs a
    decode with hpack, a dict lookup here. A block that changed the table is never
    remembered, and every change forgets the blocks before it (their indices may now
    name other entries). Only short blocks are remembered, so what is kept stays small
    whatever the client sends.

    A block that does not decode, or decodes to more than `max_list_size` (RFC 9113
    SETTINGS_MAX_HEADER_LIST_SIZE: names, values and 32 bytes a field), is a connection
    error: decoding stopped half way, the client's table can no longer be followed."""

    def __init__(self, max_list_size: int = 65_536) -> None:
        self.decoder = Decoder(max_header_list_size=max_list_size)
        self.known: dict[bytes, tuple] = {}

    def decode(self, block: bytes) -> tuple:
        headers = self.known.get(block)
        if headers is not None:
            return headers
        before = self._table_state()
        try:
            headers = tuple(self.decoder.decode(block))
        except OversizedHeaderListError:
            raise ConnectionFault(ENHANCE_YOUR_CALM, "header list larger than SETTINGS_MAX_HEADER_LIST_SIZE") from None
        except (HPACKError, ValueError, IndexError):
            raise ConnectionFault(COMPRESSION_ERROR, "a header block that does not decode") from None
        if self._table_state() != before:
            self.known.clear()
        elif len(self.known) < REMEMBERED_BLOCKS and len(block) <= REMEMBERED_UP_TO:
            self.known[block] = headers
        return headers

    def _table_state(self) -> tuple:
        """Changes with every insertion (at the front: a new object while the old lives)
        and every size update."""
        table = self.decoder.header_table
        entries = table.dynamic_entries
        return id(entries[0]) if entries else None, len(entries), table.maxsize
