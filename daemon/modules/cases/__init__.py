"""Cases: what a human must look at. For now, the pure routing rules that decide, from an
analysis, whether a case opens, its SLA due time, assignee and tags.

Public face::

    from daemon.modules.cases import RoutingRules, RoutingDecision, decide, parse_routing_rules

Case storage and the cases API come with the ingestion pipeline.
"""

from __future__ import annotations

from daemon.modules.cases.routing import (
    DEFAULT_CASE_CATEGORIES,
    DEFAULT_SLA,
    RoutingDecision,
    RoutingRules,
    decide,
    parse_duration,
    parse_routing_rules,
)

__all__ = [
    "DEFAULT_CASE_CATEGORIES",
    "DEFAULT_SLA",
    "RoutingDecision",
    "RoutingRules",
    "decide",
    "parse_duration",
    "parse_routing_rules",
]
