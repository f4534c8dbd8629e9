"""Credentials the gateway mints for providers instead of reading them: OAuth access
tokens (Vertex AI's from a Google service account or workload identity, google.py),
refreshed by a thread of their own before they expire, never on a request's path.

A minted credential reads like a configured one (`reveal()` gives the current value),
so a provider's attempt sets it the same way. Imports nothing from the rest of the
package but its config's `Secret` shape; nothing here logs a token or a key.
"""

from .minted import MintedToken, start_minting, stop_minting

__all__ = ["MintedToken", "start_minting", "stop_minting"]
