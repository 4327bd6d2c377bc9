"""Demo data: a deterministic customer-support scenario that decays after a product launch, and a
labelled review queue of its answers."""

from prodloop.demo.annotation import label_demo_queue
from prodloop.demo.load import has_traces, load_demo
from prodloop.demo.scenario import (
    DemoScenario,
    DemoTrace,
    Ticket,
    default_end,
    generate_scenario,
    launch_day,
    launch_share,
    prompt_change_day,
)

__all__ = [
    "DemoScenario",
    "DemoTrace",
    "Ticket",
    "default_end",
    "generate_scenario",
    "has_traces",
    "label_demo_queue",
    "launch_day",
    "launch_share",
    "load_demo",
    "prompt_change_day",
]
