"""Example guardrail plugins (see protos/guardrail_plugin.proto), and the training of the
injection classifier's model (classifier.py, public_corpora.py; the model itself is
guardrails/injection_model.py). Imports the plugin API and the guardrails only."""
