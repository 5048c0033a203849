"""Cases: what a human must look at. The pure routing rules that decide, from an
analysis, whether a case opens, its SLA due time, assignee and tags; the cases table
(opened by the pipeline's routing step); the case lifecycle (acknowledge, assign,
resolve, reopen) as a pure rule and its store; comments and the append-only history.

Public face::

    from daemon.modules.cases import RoutingRules, RoutingDecision, decide, parse_routing_rules
    from daemon.modules.cases import Case, get_case, list_cases, case_of_document
    from daemon.modules.cases import record_case_event, raise_case_severity
    from daemon.modules.cases import CaseFilter, CASE_FILTER_SQL, case_filter_params, CASE_SELECT
    from daemon.modules.cases import CaseAction, Request, plan, act_on_case, CaseWorkConfig
    from daemon.modules.cases import add_comment, list_comments, list_case_events, case_counts
"""

from __future__ import annotations

from daemon.modules.cases.errors import (
    CaseNotFound,
    CaseVersionRequired,
    InvalidCaseTransition,
    StaleCaseVersion,
)
from daemon.modules.cases.filters import (
    CASE_FILTER_SQL,
    CaseFilter,
    case_filter_params,
    case_filter_sql,
)
from daemon.modules.cases.lifecycle import (
    CaseAction,
    CaseState,
    CaseStatus,
    Change,
    Request,
    allowed,
    plan,
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
    CASE_SELECT,
    Case,
    case_of_document,
    case_of_document_query,
    get_case,
    list_case_views,
    list_cases,
    open_cases,
    raise_case_severity,
    record_case_event,
)
from daemon.modules.cases.work import (
    CaseCounts,
    CaseEvent,
    CaseWorkConfig,
    Comment,
    act_on_case,
    actor_of,
    add_comment,
    case_counts,
    list_case_events,
    list_comments,
)

__all__ = [
    "CASE_FILTER_SQL",
    "CASE_SELECT",
    "DEFAULT_CASE_CATEGORIES",
    "DEFAULT_SLA",
    "Case",
    "CaseAction",
    "CaseCounts",
    "CaseEvent",
    "CaseFilter",
    "CaseNotFound",
    "CaseState",
    "CaseStatus",
    "CaseVersionRequired",
    "CaseWorkConfig",
    "Change",
    "Comment",
    "InvalidCaseTransition",
    "Request",
    "RoutingDecision",
    "RoutingRules",
    "StaleCaseVersion",
    "act_on_case",
    "actor_of",
    "add_comment",
    "allowed",
    "case_counts",
    "case_filter_params",
    "case_filter_sql",
    "case_of_document",
    "case_of_document_query",
    "decide",
    "get_case",
    "list_case_events",
    "list_case_views",
    "list_cases",
    "list_comments",
    "open_cases",
    "parse_duration",
    "parse_routing_rules",
    "plan",
    "raise_case_severity",
    "record_case_event",
]
