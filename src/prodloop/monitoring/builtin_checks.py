"""prodloop's own monitor checks, registered by name: see :mod:`prodloop.monitoring.checks`."""

from __future__ import annotations
