"""Signing through a provider with an e-identification: the interface every provider
adapter implements (`signing.provider`) and the adapters (`signing.scrive`).

A round is signed by one of three methods, chosen per round: the signing link (the
service's own simple electronic signature), paper (the scanned signed copy recorded by
the coordinator), or a provider (`provider_for`). Only the provider needs this package;
nothing in it imports Temporal.
"""

from __future__ import annotations

from models.config import Settings
from signing.provider import (
    ProviderDocument,
    ProviderError,
    ProviderRefused,
    ProviderSigner,
    ProviderStatus,
    ProviderUnavailable,
    SignerState,
    SigningProvider,
    SigningRequest,
)

PROVIDERS = ("scrive",)


def provider_for(name: str, config: Settings) -> SigningProvider:
    """The adapter for a provider by its name, set up from the settings: another
    provider (Inera, Addo, Freja) is one more module and one more line here."""
    if name == "scrive":
        from signing.scrive import ScriveProvider

        return ScriveProvider.from_settings(config)
    raise ProviderRefused(f"no signing provider named {name!r} (known: {', '.join(PROVIDERS)})")


__all__ = [
    "PROVIDERS",
    "ProviderDocument",
    "ProviderError",
    "ProviderRefused",
    "ProviderSigner",
    "ProviderStatus",
    "ProviderUnavailable",
    "SignerState",
    "SigningProvider",
    "SigningRequest",
    "provider_for",
]
