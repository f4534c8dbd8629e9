"""Envoy's ext_proc messages read from and written as their protobuf bytes, for the fields
the gateway reads and writes, without protobuf's message objects (compiled with mypyc).

Through protobuf's Python objects a JSON call's three messages and replies cost ~20 µs of
a worker's CPU: each field read makes a wrapper object, each header one more, and each
reply is built field by field through the C boundary. Here a request becomes one plain
object (its phase, its headers as a dict, its body, its metadata and attributes as Python
values) in one pass over its bytes, and a reply is written straight to bytes.

`reading.read_request` reads Envoy's layout and gives up (None) on anything protobuf would
read otherwise or refuse: a field met twice that protobuf would merge, a wire type it
would not expect, bytes that end early. pipeline/protocol.py then parses with protobuf,
so a message is read exactly as protobuf reads it (tests/test_wire.py holds the two to
it on arbitrary messages and on broken bytes).

Imports nothing from extproc.
"""
