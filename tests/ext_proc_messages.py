"""Envoy's messages through a pipeline as a worker hands them over: built with protobuf's
objects, read from their bytes as a worker reads them, the reply parsed back."""

from __future__ import annotations

from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from extproc.pipeline.protocol import read_message


async def handled(pipeline, call, message: ep.ProcessingRequest) -> ep.ProcessingResponse:
    """The pipeline's reply to `message`, as protobuf reads it."""
    return ep.ProcessingResponse.FromString(await pipeline.handle(call, read_message(message.SerializeToString())))
