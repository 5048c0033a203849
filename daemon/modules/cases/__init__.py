"""Cases: what a human must look at. The pure routing rules that decide, from an
analysis, whether a case opens, its SLA due time, assignee and tags; and the cases
table (opened by the pipeline's routing step, listed and shown by the API).

Public face::

    from daemon.modules.cases import RoutingRules, RoutingDecision, decide, parse_routing_rules
    from daemon.modules.cases import Case, get_case, list_cases, case_of_document
    from daemon.modules.cases import record_case_event, raise_case_severity
"""

from __future__ import annotations

from daemon.modules.cases.errors import (
    CaseNotFound,
)
from daemon.modules.cases.routing import (
    DEFAULT_CASE_CATEGORIES,
    DEFAULT_SLA,
    RoutingDecision,
    RoutingRules,
    decide,
    parse_duration,
    parse_routing_rules,
)
from daemon.modules.cases.store import (
    Case,
    case_of_document,
    get_case,
    list_cases,
    open_cases,
    raise_case_severity,
    record_case_event,
)

__all__ = [
    "DEFAULT_CASE_CATEGORIES",
    "DEFAULT_SLA",
    "Case",
    "CaseNotFound",
    "RoutingDecision",
    "RoutingRules",
    "case_of_document",
    "decide",
    "get_case",
    "list_cases",
    "open_cases",
    "parse_duration",
    "parse_routing_rules",
    "raise_case_severity",
    "record_case_event",
]
