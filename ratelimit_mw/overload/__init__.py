"""Overload protection: adaptive concurrency limits and priority classes (per process)."""

from ratelimit_mw.overload.controllers import ControllerConfig, ControllerState, WindowStats, update
from ratelimit_mw.overload.gate import LimitChange, OverloadGate, Ticket

__all__ = ["ControllerConfig", "ControllerState", "LimitChange", "OverloadGate", "Ticket", "WindowStats", "update"]
