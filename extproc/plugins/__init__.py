"""Example guardrail plugins (see protos/guardrail_plugin.proto)."""
