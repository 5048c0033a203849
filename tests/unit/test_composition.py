"""The composition root: settings become each module's typed configuration, once."""

from __future__ import annotations

import pytest

from daemon.composition import auth_policy, compose, default_cpu_processes, pipeline_config
from daemon.modules.analysis import (
    DEFAULT_SEVERITY_RULES,
    DEFAULT_TAXONOMY,
    AnalyzerSet,
    HeuristicAnalyzer,
    Provider,
)
from daemon.modules.auth import AuthPolicy
from daemon.modules.cases import RoutingRules
from daemon.shared.config import Settings
from daemon.shared.errors import ConfigError


def test_defaults_agree_with_the_modules_own():
    components = compose(Settings())
    assert components.auth == AuthPolicy()
    assert components.analysis.taxonomy is DEFAULT_TAXONOMY
    assert components.analysis.severity_rules is DEFAULT_SEVERITY_RULES
    assert components.routing == RoutingRules()
    assert components.analysis.provider is Provider.HEURISTIC
    assert components.analysis.llm is None


def test_one_cpu_pool_of_each_kind_serves_every_module():
    components = compose(Settings())
    assert components.auth.cpu is components.cpu  # argon2 releases the GIL: threads
    assert components.analysis.cpu is components.processes  # the analysis holds it
    analyzer = AnalyzerSet(components.analysis).default
    assert isinstance(analyzer, HeuristicAnalyzer)
    assert analyzer.cpu is components.processes
    config = pipeline_config(components)
    assert config.cpu is components.cpu and config.processes is components.processes


@pytest.mark.parametrize(("usable", "processes"), [(1, 1), (2, 1), (3, 2), (4, 3), (5, 4), (64, 4)])
def test_cpu_worker_processes_leave_the_event_loop_a_core(usable, processes):
    assert default_cpu_processes(usable) == processes


def test_the_composed_cpu_worker_processes_are_the_default_unless_configured(monkeypatch):
    monkeypatch.setattr("daemon.composition.usable_cpus", lambda: 8)
    assert compose(Settings()).processes.processes == 4
    monkeypatch.setattr("daemon.composition.usable_cpus", lambda: 3)
    assert compose(Settings()).processes.processes == 2
    assert compose(Settings(cpu_processes=7)).processes.processes == 7


def test_rule_texts_are_parsed_once_against_the_configured_taxonomy():
    components = compose(
        Settings(
            taxonomy='{"hr": ["harassment"]}',
            severity_rules='{"keywords": {"harassment": "high"}}',
            routing_rules='{"min_severity": "high"}',
        )
    )
    assert components.taxonomy.names[0] == "hr"
    assert components.analysis.severity_rules.matched("harassment here")
    assert components.routing.min_severity is not None


@pytest.mark.parametrize(
    ("settings", "variables"),
    [
        ({"taxonomy": "[1, 2]"}, ["TRIAGED_TAXONOMY"]),
        ({"severity_rules": '{"categories": {"securty": "high"}}'}, ["TRIAGED_SEVERITY_RULES"]),
        ({"routing_rules": '{"categories": ["securty"]}'}, ["TRIAGED_ROUTING_RULES"]),
        (
            {"taxonomy": "{", "routing_rules": '{"min_severity": "extreme"}'},
            ["TRIAGED_TAXONOMY", "TRIAGED_ROUTING_RULES"],
        ),
    ],
)
def test_bad_rule_texts_are_configuration_errors_naming_the_variable(settings, variables):
    with pytest.raises(ConfigError) as caught:
        compose(Settings(**settings))
    assert [p.split(":")[0] for p in caught.value.problems] == variables


def test_an_openai_analyzer_gets_the_configured_server_and_model():
    components = compose(
        Settings(
            analyzer="openai",
            llm_base_url="http://127.0.0.1:9/v1",
            llm_model="m1",
            llm_api_key="sk-secret",
            llm_timeout_seconds=7,
        )
    )
    config = components.analysis
    assert config.provider is Provider.OPENAI and config.llm is not None
    llm = config.llm("m2")
    assert llm.model == "m2" and llm.total_timeout == 7
    assert llm.api_key is not None and llm.api_key.get_secret_value() == "sk-secret"


def test_a_server_without_a_default_model_serves_only_named_models():
    config = compose(Settings(llm_base_url="http://127.0.0.1:9/v1")).analysis
    analyzers = AnalyzerSet(config)
    with pytest.raises(ValueError, match="provider: openai is not configured"):
        analyzers.get("openai")
    assert analyzers.get("openai", "m3").model == "m3"


def test_auth_policy_alone_matches_the_composed_one():
    settings = Settings(auth_session_ttl_seconds=600, auth_account_lock_failures=30)
    assert auth_policy(settings) == compose(settings).auth
