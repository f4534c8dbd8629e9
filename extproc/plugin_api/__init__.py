"""Generated from protos/guardrail_plugin.proto (grpcio-tools); do not edit."""
