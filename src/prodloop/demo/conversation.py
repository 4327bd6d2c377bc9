"""The words of one ticket: the customer's message, the prompt, the tool call and the assistant's answer."""

from __future__ import annotations

import json
import random
from typing import Any

from prodloop.demo.catalog import ARTICLES, TOPICS, VAGUE_ANSWERS, WRONG_ANSWERS, Topic
from prodloop.demo.launch import GENERIC_ADVICE, HEDGES, INTENT
from prodloop.demo.slots import Slots

SYSTEM_PROMPTS = {
    "support-v1": (
        "You are Acme Home's friendly customer support assistant. Answer the customer's question using the "
        "help-center articles provided. Be warm and thorough. Acme Home sells the Acme Hub, Acme Cam 2, Acme "
        "Cam Mini, Acme Thermo, Acme Doorbell and Acme Plug, and the Protect Basic and Protect Plus plans."
    ),
    "support-v2": (
        "You are Acme Home's support assistant. Answer using only the help-center articles and tool results "
        "below. Be concise: at most four sentences, no greetings. Never invent order details. If the "
        "articles do not answer the question, say so and offer to connect the customer with a human agent. "
        "Products: Acme Hub, Acme Cam 2, Acme Cam Mini, Acme Thermo, Acme Doorbell, Acme Plug; plans: "
        "Protect Basic, Protect Plus."
    ),
}

FALLBACK_ANSWER = "Sorry, something went wrong on our side. Please try again in a moment."

_OPENERS = ("Hi,", "Hello!", "hey", "Good morning,", "Hi there -", "Hello support team,", "Hi Acme,")
_CLOSERS = (
    "Thanks!", "thx", "Thank you in advance.", "Please help.", "This is really frustrating.",
    "Regards, {name}", "Thanks, {name}", "I need this sorted today.",
)  # fmt: skip
_BY_INTENT = {intent: tuple(t for t in TOPICS if t.intent == intent) for intent in {t.intent for t in TOPICS}}


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.random()
    if kind < 0.4:
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    if kind < 0.7:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def _roughen(text: str, rng: random.Random) -> str:
    """What people do to text they type in a hurry: typos, no capitals, no final full stop."""
    words = text.split(" ")
    for _ in range(rng.choice((1, 1, 2, 3))):
        i = rng.randrange(len(words))
        words[i] = _typo(words[i], rng)
    text = " ".join(words)
    if rng.random() < 0.4:
        text = text.lower()
    if rng.random() < 0.5:
        text = text.rstrip(".")
    return text


def customer_message(topic: Topic, slots: Slots, rng: random.Random) -> str:
    """What the customer wrote: one phrasing of the topic, filled, sometimes with a greeting, a sign-off
    and typos."""
    body = slots.fill(rng.choice(topic.messages))
    if rng.random() < 0.22:
        body = _roughen(body, rng)
    parts = [body]
    if rng.random() < 0.35:
        parts.insert(0, rng.choice(_OPENERS))
    if rng.random() < 0.25:
        parts.append(slots.fill(rng.choice(_CLOSERS)))
    return " ".join(parts)


def _styled(answer: str, release: str, rng: random.Random) -> str:
    """The first prompt asks for warmth, the second for brevity and a hand-off offer."""
    if release == "support-v1":
        if rng.random() < 0.45:
            answer = rng.choice(("Thanks for reaching out! ", "Hi there! ", "Great question! ")) + answer
        if rng.random() < 0.35:
            answer += " Is there anything else I can help you with?"
    elif rng.random() < 0.3:
        answer += " If that doesn't solve it, reply 'agent' and I'll connect you with a person."
    return answer


def assistant_answer(topic: Topic, quality: str, release: str, slots: Slots, rng: random.Random) -> str:
    """The answer of the given quality: ``good`` solves the request, ``partial`` is on topic but does
    not solve it, ``bad`` answers another question, invents a policy, or (new product) hedges or gives
    instructions for another device."""
    if quality == "good":
        answer = rng.choice(topic.answers)
    elif topic.intent == INTENT:
        if quality == "partial":
            answer = rng.choice(GENERIC_ADVICE)
        else:
            answer = rng.choice(HEDGES) if rng.random() < 0.55 else rng.choice(topic.wrong)
    elif quality == "partial":
        answer = rng.choice(VAGUE_ANSWERS[topic.intent])
    elif rng.random() < 0.5:
        others = [t for t in _BY_INTENT[topic.intent] if t.key != topic.key]
        answer = rng.choice(rng.choice(others).answers)
    else:
        answer = rng.choice(WRONG_ANSWERS[topic.intent])
    return _styled(slots.fill(answer), release, rng)


def corrected_answer(topic: Topic, slots: Slots) -> str:
    """What the answer should have said (the text of a correction)."""
    return slots.fill(topic.answers[0])


def tool_call(tool: str, slots: Slots, customer: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Arguments and result of one tool call."""
    if tool == "lookup_order":
        result = {
            "order_id": slots["order"],
            "status": slots["status"],
            "estimate": slots["eta"],
            "carrier": slots["carrier"],
            "tracking_number": slots["tracking"],
            "items": [slots["product"]],
        }
        return {"order_id": slots["order"]}, result
    if tool == "lookup_refund":
        return {"order_id": slots["order"]}, {
            "order_id": slots["order"],
            "refund": slots["amount"],
            "status": "issued",
        }
    if tool == "list_charges":
        charges = [{"amount": slots["amount"], "description": f"{slots['plan']} subscription"}]
        return {"customer_id": customer, "months": 2}, {"charges": charges}
    return {"customer_id": customer}, {
        "locked": True,
        "two_factor": "sms",
        "last_sign_in_city": slots["city"],
    }


def prompt_messages(
    release: str, article_ids: list[str], message: str, tool: tuple[str, dict[str, Any]] | None
) -> list[dict[str, str]]:
    """The chat messages the assistant sends to the model."""
    context = "\n".join(f"[{a}] {ARTICLES[a].title}: {ARTICLES[a].text}" for a in article_ids[:3])
    user = f"Help-center articles:\n{context}\n\n"
    if tool is not None:
        user += f"Tool {tool[0]} returned: {json.dumps(tool[1], ensure_ascii=False)}\n\n"
    user += f"Customer message:\n{message}"
    return [{"role": "system", "content": SYSTEM_PROMPTS[release]}, {"role": "user", "content": user}]
