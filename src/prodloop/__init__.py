"""prodloop: keep production AI features from rotting silently, and make them improve."""

__version__ = "0.1.0"

from prodloop.capture.sdk import AsyncClient, Client

__all__ = ["AsyncClient", "Client", "__version__"]
