"""The fillers of the demo's templates: order numbers, products, amounts, dates, people.

A :class:`Slots` draws each value the first time a template asks for it and keeps it, so that the
customer's message, the tool result and the assistant's answer of one ticket name the same order,
the same product and the same amount.
"""

from __future__ import annotations

import random
from collections.abc import Callable

#: The products Acme Home sold before the launch; the assistant's help center covers them.
PRODUCTS = ("Acme Hub", "Acme Cam 2", "Acme Cam Mini", "Acme Thermo", "Acme Doorbell", "Acme Plug")
PLANS = ("Protect Basic", "Protect Plus")
PLAN_PRICES = {"Protect Basic": "$3.99", "Protect Plus": "$10.99"}
PRICES = {
    "Acme Hub": "$89.00",
    "Acme Cam 2": "$129.99",
    "Acme Cam Mini": "$59.99",
    "Acme Thermo": "$149.00",
    "Acme Doorbell": "$179.00",
    "Acme Plug": "$24.99",
}
CARRIERS = ("UPS", "FedEx", "DHL", "USPS")
FIRST_NAMES = (
    "Maria", "James", "Aisha", "Tom", "Priya", "Lukas", "Sofia", "Daniel", "Mei", "Omar", "Emma", "Carlos",
    "Hannah", "Kenji", "Fatima", "Noah", "Olivia", "Jonas", "Grace", "Mateo",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Garcia", "Khan", "Müller", "Chen", "Okafor", "Rossi", "Nguyen", "Brown", "Novak", "Silva",
    "Kowalski",
)  # fmt: skip
CITIES = (
    "Austin",
    "Denver",
    "Leeds",
    "Toronto",
    "Portland",
    "Manchester",
    "Chicago",
    "Dublin",
    "Seattle",
    "Atlanta",
)
COUNTRIES = ("Canada", "Ireland", "Mexico", "Australia", "Germany", "Norway")
DATES = (
    "yesterday", "last Tuesday", "on Monday", "two weeks ago", "last week", "3 days ago", "on the 2nd",
    "at the start of the month", "on Friday", "10 days ago",
)  # fmt: skip
OTHER_ECOSYSTEMS = ("Google Home", "Alexa", "Apple Home", "SmartThings", "my old router")
PARTS = ("lens", "mounting bracket", "front panel", "display", "charging port", "faceplate")
PHONES = ("iPhone 13", "iPhone 15 Pro", "Pixel 7", "Galaxy S22", "Galaxy A54", "OnePlus 11")
ORDER_STATUSES = (
    ("in transit", "out for delivery tomorrow"),
    ("in transit", "due on Thursday"),
    ("on its way", "due within 2 business days"),
    ("delayed at the carrier's hub", "now expected early next week"),
    ("waiting at the carrier's local depot", "due tomorrow"),
)


def _order(rng: random.Random, s: Slots) -> str:
    return f"A-{rng.randrange(1_000_000, 9_999_999)}"


def _plan2(rng: random.Random, s: Slots) -> str:
    return PLANS[1] if s["plan"] == PLANS[0] else PLANS[0]


def _amount(rng: random.Random, s: Slots) -> str:
    return rng.choice((*PRICES.values(), "$3.99", "$10.99", "$47.88", "$131.88"))


def _amount2(rng: random.Random, s: Slots) -> str:
    paid = float(s["amount"].lstrip("$"))
    return f"${paid + rng.choice((10, 15, 24.99, 30)):.2f}"


def _email(rng: random.Random, s: Slots) -> str:
    first = s["name"].lower()
    last = rng.choice(LAST_NAMES).lower().replace("ü", "u")
    digits = rng.choice(("", "", str(rng.randrange(1, 99))))
    return f"{first}.{last}{digits}@{rng.choice(('example.com', 'example.org', 'example.net'))}"


def _tracking(rng: random.Random, s: Slots) -> str:
    if s["carrier"] == "UPS":
        return f"1Z{rng.randrange(16**16):016X}"
    return str(rng.randrange(10**11, 10**12))


def _pick(values: tuple[str, ...]) -> Callable[[random.Random, Slots], str]:
    return lambda rng, s: rng.choice(values)


def _status(rng: random.Random, s: Slots) -> str:
    status, eta = rng.choice(ORDER_STATUSES)
    s["eta"] = eta
    return status


def _eta(rng: random.Random, s: Slots) -> str:
    s["status"]  # drawing the status sets the matching estimate
    return str(dict.__getitem__(s, "eta"))


MAKERS: dict[str, Callable[[random.Random, Slots], str]] = {
    "order": _order,
    "product": _pick(PRODUCTS),
    "price": lambda rng, s: PRICES[s["product"]],
    "plan": _pick(PLANS),
    "plan2": _plan2,
    "plan_price": lambda rng, s: PLAN_PRICES[s["plan"]],
    "plan2_price": lambda rng, s: PLAN_PRICES[s["plan2"]],
    "amount": _amount,
    "amount2": _amount2,
    "date": _pick(DATES),
    "n_days": lambda rng, s: str(rng.randint(3, 12)),
    "city": _pick(CITIES),
    "country": _pick(COUNTRIES),
    "carrier": _pick(CARRIERS),
    "name": _pick(FIRST_NAMES),
    "email": _email,
    "ecosystem": _pick(OTHER_ECOSYSTEMS),
    "part": _pick(PARTS),
    "phone": _pick(PHONES),
    "app_version": lambda rng, s: f"4.{rng.randint(8, 14)}.{rng.randint(0, 3)}",
    "error_code": lambda rng, s: f"E-{rng.choice((201, 203, 310, 412, 502))}",
    "temp": lambda rng, s: str(rng.randint(16, 24)),
    "pct": lambda rng, s: str(rng.choice((12, 37, 45, 62, 88, 99))),
    "thickness": lambda rng, s: str(rng.randint(32, 62)),
    "tracking": _tracking,
    "status": _status,
    "eta": _eta,
    "refund_days": lambda rng, s: rng.choice(("5", "7", "5-10")),
    "agent_wait": lambda rng, s: rng.choice(("a few minutes", "about 10 minutes", "under an hour")),
}


class Slots(dict[str, str]):
    """Template values of one ticket, drawn on first use from ``rng`` and then fixed."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self.rng = rng

    def __missing__(self, key: str) -> str:
        value = MAKERS[key](self.rng, self)
        self[key] = value
        return value

    def fill(self, template: str) -> str:
        return template.format_map(self)
