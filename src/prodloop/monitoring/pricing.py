"""Model prices, for the ``cost_usd`` descriptor of a trace.

:data:`MODEL_PRICES` holds the providers' published list prices in US dollars per million tokens
(input and output, standard tier, no caching or batch discount), as they stood in mid-2025. Prices
change: pass ``prices={"my-model": (0.5, 1.5)}`` to any function that takes ``prices`` to add models or
override these; a caller's entry wins over the table.

A model id is looked up as it is, then without a date suffix that providers add to pinned snapshots
(``gpt-4o-mini-2024-07-18`` -> ``gpt-4o-mini``, ``claude-3-5-haiku-20241022`` -> ``claude-3-5-haiku``)
or a ``-latest`` suffix, then without a ``provider/`` prefix (``openai/gpt-4o``). A model found nowhere has
no price, and its traces have no cost (``None``, never a guess).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from prodloop.errors import ValidationFailed


@dataclass(frozen=True)
class ModelPrice:
    """US dollars per million input (prompt) and output (completion) tokens."""

    input_per_million: float
    output_per_million: float

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        return (input_tokens * self.input_per_million + output_tokens * self.output_per_million) / 1e6


def _p(input_per_million: float, output_per_million: float) -> ModelPrice:
    return ModelPrice(input_per_million, output_per_million)


#: List prices (USD per 1M tokens, input / output), mid-2025.
MODEL_PRICES: Mapping[str, ModelPrice] = {
    # OpenAI
    "gpt-4o": _p(2.50, 10.00),
    "gpt-4o-mini": _p(0.15, 0.60),
    "gpt-4.1": _p(2.00, 8.00),
    "gpt-4.1-mini": _p(0.40, 1.60),
    "gpt-4.1-nano": _p(0.10, 0.40),
    "gpt-4-turbo": _p(10.00, 30.00),
    "gpt-3.5-turbo": _p(0.50, 1.50),
    "o1": _p(15.00, 60.00),
    "o3": _p(2.00, 8.00),
    "o3-mini": _p(1.10, 4.40),
    "o4-mini": _p(1.10, 4.40),
    # Anthropic
    "claude-opus-4": _p(15.00, 75.00),
    "claude-sonnet-4": _p(3.00, 15.00),
    "claude-3-7-sonnet": _p(3.00, 15.00),
    "claude-3-5-sonnet": _p(3.00, 15.00),
    "claude-3-5-haiku": _p(0.80, 4.00),
    "claude-3-opus": _p(15.00, 75.00),
    "claude-3-haiku": _p(0.25, 1.25),
    # Google (prompts up to 200k tokens)
    "gemini-2.5-pro": _p(1.25, 10.00),
    "gemini-2.5-flash": _p(0.30, 2.50),
    "gemini-2.0-flash": _p(0.10, 0.40),
    "gemini-1.5-pro": _p(1.25, 5.00),
    "gemini-1.5-flash": _p(0.075, 0.30),
    # Mistral
    "mistral-large": _p(2.00, 6.00),
    "mistral-small": _p(0.10, 0.30),
}

PriceLike = ModelPrice | tuple[float, float]

_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def price_table(prices: Mapping[str, PriceLike] | None = None) -> dict[str, ModelPrice]:
    """:data:`MODEL_PRICES` with the caller's ``prices`` laid over it (theirs win); 422 for a price
    that is not two non-negative numbers."""
    table = dict(MODEL_PRICES)
    for model, price in (prices or {}).items():
        if not isinstance(price, ModelPrice):
            try:
                input_price, output_price = (float(v) for v in price)
            except (TypeError, ValueError) as exc:
                raise ValidationFailed(
                    f"price of model {model!r} must be (input, output) USD per million tokens, not {price!r}",
                    {"model": model},
                ) from exc
            price = ModelPrice(input_price, output_price)
        if not (price.input_per_million >= 0 and price.output_per_million >= 0):
            raise ValidationFailed(
                f"price of model {model!r} must not be negative (got {price.input_per_million}, "
                f"{price.output_per_million} USD per million tokens)",
                {"model": model},
            )
        table[model] = price
    return table


def price_for(model: str | None, prices: Mapping[str, PriceLike] | None = None) -> ModelPrice | None:
    """The price of ``model`` (see the module docstring for how ids are matched), from
    :data:`MODEL_PRICES` with ``prices`` laid over it; ``None`` if unknown."""
    if not model:
        return None
    table = price_table(prices)
    candidates = [model]
    if "/" in model:
        candidates.append(model.rsplit("/", 1)[1])
    for name in list(candidates):
        candidates.append(_SNAPSHOT.sub("", name))
    for name in candidates:
        found = table.get(name) or table.get(name.lower())
        if found is not None:
            return found
    return None


__all__ = ["MODEL_PRICES", "ModelPrice", "PriceLike", "price_for", "price_table"]
