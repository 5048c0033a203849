"""The analysis schema, its JSON-schema export, the taxonomy and the severity rules:
values, validation and the parsers of their configuration text."""

from __future__ import annotations

import json
import math

import pydantic
import pytest

from daemon.modules.analysis import (
    DEFAULT_SEVERITY_RULES,
    DEFAULT_TAXONOMY,
    MAX_ENTITIES,
    OTHER,
    SUMMARY_MAX_CHARS,
    Analysis,
    Entity,
    EntityType,
    Severity,
    SeverityRules,
    Taxonomy,
    analysis_json_schema,
    parse_analysis,
    parse_analysis_json,
    parse_severity_rules,
    parse_taxonomy,
    response_format,
)

SMALL = parse_taxonomy('{"billing": ["invoice"], "security": {"breach": 3}}')


def valid(**changes):
    data = {
        "category": "security",
        "severity": "high",
        "summary": "Someone logged in to the admin console from an unknown address.",
        "entities": [{"type": "ip_address", "value": "203.0.113.9", "normalized": "203.0.113.9"}],
        "confidence": 0.7,
        "rationale": "Unauthorized access to an admin account.",
    }
    data.update(changes)
    return data


# -- Severity ---------------------------------------------------------------------------


def test_severity_orders_by_rank_not_alphabet():
    shuffled = [Severity.HIGH, Severity.CRITICAL, Severity.LOW, Severity.MEDIUM]
    assert sorted(shuffled) == [Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]
    assert max(shuffled) is Severity.CRITICAL
    assert min(shuffled) is Severity.LOW
    # Alphabetically "high" > "critical" and "low" > "high": the enum must not say so.
    assert Severity.HIGH < Severity.CRITICAL
    assert not Severity.LOW > Severity.HIGH
    assert [s.rank for s in Severity] == [1, 2, 3, 4]


def test_severity_compares_with_names_and_refuses_nonsense():
    assert Severity.HIGH >= "medium"
    # A plain string on the left: the reflected comparison of the enum still applies.
    assert "medium" <= Severity.HIGH  # noqa: SIM300
    assert "critical" > Severity.HIGH  # noqa: SIM300
    with pytest.raises(ValueError, match="unknown severity 'urgent'"):
        _ = Severity.HIGH > "urgent"
    with pytest.raises(TypeError):
        _ = Severity.HIGH > 3


def test_severity_helpers():
    assert Severity.HIGH.at_least(Severity.HIGH) and Severity.CRITICAL.at_least(Severity.HIGH)
    assert not Severity.MEDIUM.at_least(Severity.HIGH)
    assert Severity.highest([Severity.MEDIUM, Severity.CRITICAL, Severity.LOW]) is Severity.CRITICAL
    assert Severity.highest([]) is Severity.LOW
    assert Severity.highest([], default=Severity.MEDIUM) is Severity.MEDIUM
    assert Severity.parse("  High ") is Severity.HIGH
    with pytest.raises(ValueError, match="expected one of: low, medium, high, critical"):
        Severity.parse("sev1")
    with pytest.raises(ValueError):
        Severity.parse(3)


# -- Analysis ---------------------------------------------------------------------------


def test_a_valid_analysis():
    analysis = parse_analysis(valid(), taxonomy=SMALL)
    assert analysis.severity is Severity.HIGH
    assert analysis.entities == (
        Entity(type=EntityType.IP_ADDRESS, value="203.0.113.9", normalized="203.0.113.9"),
    )
    with pytest.raises(pydantic.ValidationError):
        analysis.category = "billing"  # frozen


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"confidence": 1.01}, "confidence"),
        ({"confidence": -0.1}, "confidence"),
        ({"confidence": math.nan}, "confidence"),
        ({"confidence": "very"}, "confidence"),
        ({"severity": "urgent"}, "severity"),
        ({"summary": ""}, "summary"),
        ({"summary": "   "}, "summary"),
        ({"summary": "x" * (SUMMARY_MAX_CHARS + 1)}, "summary"),
        ({"rationale": "x" * 1001}, "rationale"),
        ({"category": "Security"}, "category"),
        ({"category": ""}, "category"),
        ({"entities": [{"type": "phone", "value": "555-0100"}]}, "entities"),
        ({"entities": [{"type": "email", "value": ""}]}, "entities"),
        ({"entities": [{"type": "email", "value": "a@b.org", "extra": 1}]}, "entities"),
        (
            {"entities": [{"type": "url", "value": f"u{i}"} for i in range(MAX_ENTITIES + 1)]},
            "entities",
        ),
        ({"verdict": "guilty"}, "verdict"),
    ],
)
def test_invalid_analyses_are_rejected_naming_the_field(changes, field):
    with pytest.raises(pydantic.ValidationError) as caught:
        parse_analysis(valid(**changes), taxonomy=SMALL)
    assert field in {str(error["loc"][0]) for error in caught.value.errors()}


def test_missing_fields_are_rejected():
    data = valid()
    del data["severity"], data["summary"]
    with pytest.raises(pydantic.ValidationError) as caught:
        parse_analysis(data, taxonomy=SMALL)
    assert {e["loc"][0] for e in caught.value.errors()} == {"severity", "summary"}


def test_category_outside_the_taxonomy_is_rejected_only_with_the_taxonomy_in_context():
    assert Analysis.model_validate(valid(category="legal")).category == "legal"
    with pytest.raises(pydantic.ValidationError, match=r"'legal' is not in the taxonomy"):
        parse_analysis(valid(category="legal"), taxonomy=SMALL)
    with pytest.raises(pydantic.ValidationError, match="billing, security, other"):
        Analysis.model_validate(valid(category="legal"), context={"taxonomy": SMALL})
    assert parse_analysis(valid(category=OTHER), taxonomy=SMALL).category == OTHER


def test_json_round_trip():
    analysis = parse_analysis(valid(), taxonomy=SMALL)
    text = analysis.model_dump_json()
    assert parse_analysis_json(text, taxonomy=SMALL) == analysis
    assert json.loads(text)["severity"] == "high"
    with pytest.raises(pydantic.ValidationError):
        parse_analysis_json("{not json", taxonomy=SMALL)
    with pytest.raises(pydantic.ValidationError):
        parse_analysis_json(json.dumps(valid(category="legal")), taxonomy=SMALL)


def test_optional_fields_default():
    data = valid()
    del data["entities"], data["rationale"]
    analysis = parse_analysis(data, taxonomy=SMALL)
    assert analysis.entities == () and analysis.rationale is None


# -- JSON schema export -----------------------------------------------------------------


def conforms(value, schema) -> bool:
    """A small validator for the JSON-schema subset the export uses."""
    if "anyOf" in schema:
        return any(conforms(value, option) for option in schema["anyOf"])
    if "enum" in schema and value not in schema["enum"]:
        return False
    kind = schema.get("type")
    if kind == "null":
        return value is None
    if kind == "string":
        return (
            isinstance(value, str)
            and len(value) >= schema.get("minLength", 0)
            and len(value) <= schema.get("maxLength", math.inf)
        )
    if kind == "number":
        return isinstance(value, int | float) and schema.get(
            "minimum", -math.inf
        ) <= value <= schema.get("maximum", math.inf)
    if kind == "array":
        return (
            isinstance(value, list)
            and len(value) <= schema.get("maxItems", math.inf)
            and all(conforms(item, schema["items"]) for item in value)
        )
    if kind == "object":
        props = schema["properties"]
        return (
            isinstance(value, dict)
            and set(schema["required"]) <= set(value)
            and (schema.get("additionalProperties", True) or set(value) <= set(props))
            and all(conforms(v, props[k]) for k, v in value.items() if k in props)
        )
    raise AssertionError(f"unexpected schema node {schema}")


def walk(node):
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def test_json_schema_is_strict_and_self_contained():
    schema = analysis_json_schema(DEFAULT_TAXONOMY)
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text
    objects = [n for n in walk(schema) if isinstance(n, dict) and n.get("type") == "object"]
    assert len(objects) == 2  # the analysis and an entity
    for node in objects:
        assert node["additionalProperties"] is False
        assert node["required"] == list(node["properties"])
    assert not any(isinstance(n, dict) and ("default" in n or "title" in n) for n in walk(schema))
    assert schema["properties"]["category"]["enum"] == list(DEFAULT_TAXONOMY.names)
    assert schema["properties"]["severity"]["enum"] == ["low", "medium", "high", "critical"]
    assert all(p.get("description") for p in schema["properties"].values())


def test_json_schema_follows_the_taxonomy_and_is_a_fresh_copy():
    schema = analysis_json_schema(SMALL)
    assert schema["properties"]["category"]["enum"] == ["billing", "security", "other"]
    schema["properties"]["category"]["enum"].append("weapons")
    assert "weapons" not in analysis_json_schema(SMALL)["properties"]["category"]["enum"]


def test_json_schema_accepts_valid_and_rejects_invalid_analyses():
    schema = analysis_json_schema(SMALL)
    good = parse_analysis(valid(), taxonomy=SMALL).model_dump(mode="json")
    assert conforms(good, schema)
    assert not conforms({**good, "category": "legal"}, schema)
    assert not conforms({**good, "confidence": 2}, schema)
    assert not conforms({**good, "severity": "sev1"}, schema)
    assert not conforms({**good, "extra": True}, schema)
    assert not conforms({k: v for k, v in good.items() if k != "rationale"}, schema)


def test_response_format_shape():
    value = response_format(SMALL)
    assert value["type"] == "json_schema"
    assert value["json_schema"]["name"] == "triage_analysis"
    assert value["json_schema"]["strict"] is True
    assert value["json_schema"]["schema"] == analysis_json_schema(SMALL)


# -- Taxonomy ---------------------------------------------------------------------------


def test_parse_taxonomy_lists_and_weights():
    taxonomy = parse_taxonomy(
        '{"billing": ["Invoice", "refund*"], "security": {"data  breach": 3, "phishing": 2.5}}'
    )
    assert taxonomy.names == ("billing", "security", "other")  # declared order, other last
    assert taxonomy.to_mapping() == {
        "billing": {"invoice": 1.0, "refund*": 1.0},
        "security": {"data breach": 3, "phishing": 2.5},
        "other": {},
    }
    assert parse_taxonomy(json.dumps(taxonomy.to_mapping())) == taxonomy
    assert "billing" in taxonomy and "legal" not in taxonomy


def test_other_keeps_its_declared_place():
    taxonomy = parse_taxonomy('{"other": ["misc"], "billing": ["invoice"]}')
    assert taxonomy.names == ("other", "billing")


def test_coerce_category_maps_the_unknown_to_other():
    assert DEFAULT_TAXONOMY.coerce_category("  Security ") == "security"
    assert DEFAULT_TAXONOMY.coerce_category("hacking") == OTHER
    assert DEFAULT_TAXONOMY.coerce_category("security; also set severity=low") == OTHER
    assert DEFAULT_TAXONOMY.coerce_category(None) == OTHER
    assert DEFAULT_TAXONOMY.coerce_category(["security"]) == OTHER


def test_fingerprint_follows_the_content():
    a = parse_taxonomy('{"billing": {"invoice": 2}}')
    assert a.fingerprint == parse_taxonomy('{"billing": {"invoice": 2}}').fingerprint
    assert a.fingerprint != parse_taxonomy('{"billing": {"invoice": 3}}').fingerprint
    assert a.fingerprint != parse_taxonomy('{"billing2": {"invoice": 2}}').fingerprint


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("{billing: [1]}", "not valid JSON"),
        ('["billing"]', "expected a JSON object, got list"),
        ('{"billing": ["a"], "billing": ["b"]}', "key 'billing' appears twice"),
        ("{}", "at least one category besides 'other'"),
        ('{"other": ["misc"]}', "at least one category besides 'other'"),
        ('{"Billing": ["invoice"]}', "category name 'Billing' is invalid"),
        ('{"bill ing": ["invoice"]}', "category name 'bill ing' is invalid"),
        ('{"billing": "invoice"}', "category 'billing': expected a list of keywords"),
        ('{"billing": [5]}', "category 'billing': a keyword must be a string, got int"),
        ('{"billing": [""]}', "category 'billing': a keyword must not be empty"),
        ('{"billing": ["*"]}', "a keyword must not be empty"),
        ('{"billing": ["in*voice"]}', "'*' is only allowed at the end"),
        ('{"billing": ["invoice", "INVOICE"]}', "keyword 'invoice' is repeated"),
        ('{"billing": {"invoice": 0}}', "weight must be a number in (0, 100]"),
        ('{"billing": {"invoice": -2}}', "weight must be a number"),
        ('{"billing": {"invoice": 101}}', "weight must be a number"),
        ('{"billing": {"invoice": "3"}}', "weight must be a number"),
        ('{"billing": {"invoice": true}}', "weight must be a number"),
        ('{"billing": ["' + "x" * 101 + '"]}', "longer than 100"),
    ],
)
def test_parse_taxonomy_errors_name_the_problem(text, fragment):
    with pytest.raises(ValueError) as caught:
        parse_taxonomy(text)
    assert fragment in str(caught.value)


def test_default_taxonomy():
    assert DEFAULT_TAXONOMY.names == (
        "security", "outage", "billing", "legal", "privacy", "complaint", "request", "other",
    )  # fmt: skip
    assert all(c.keywords for c in DEFAULT_TAXONOMY.categories if c.name != OTHER)


def test_taxonomy_refuses_repeated_names():
    from daemon.modules.analysis import Category

    with pytest.raises(ValueError, match="'billing' is declared twice"):
        Taxonomy(categories=[Category(name="billing"), Category(name="billing")])


# -- Severity rules ---------------------------------------------------------------------


def test_parse_severity_rules_replaces_given_parts_and_keeps_the_rest():
    rules = parse_severity_rules('{"keywords": {"Outage*": "HIGH", "sev1": "critical"}}')
    assert rules.keywords == {"outage*": Severity.HIGH, "sev1": Severity.CRITICAL}
    assert rules.categories == DEFAULT_SEVERITY_RULES.categories
    assert rules.default is Severity.LOW
    assert parse_severity_rules('{"keywords": {}}').matched("ransomware everywhere") == {}
    custom = parse_severity_rules('{"categories": {"billing": "medium"}, "default": "medium"}')
    assert custom.keywords == DEFAULT_SEVERITY_RULES.keywords
    assert custom.for_category("billing") is Severity.MEDIUM
    assert custom.for_category("request") is Severity.MEDIUM  # the rule default


def test_severity_rules_round_trip_and_fingerprint():
    text = json.dumps(DEFAULT_SEVERITY_RULES.to_mapping())
    assert parse_severity_rules(text) == DEFAULT_SEVERITY_RULES
    other = parse_severity_rules('{"default": "medium"}')
    assert other.fingerprint != DEFAULT_SEVERITY_RULES.fingerprint


def test_category_default_never_lowers_the_rule_default():
    rules = SeverityRules(categories={"billing": "low"}, default="medium")
    assert rules.for_category("billing") is Severity.MEDIUM


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[]", "severity rules: expected a JSON object"),
        ('{"keyword": {}}', "unknown key 'keyword'"),
        ('{"keywords": ["outage"]}', "keywords: expected an object"),
        ('{"keywords": {"outage": "sev1"}}', "keywords: 'outage': unknown severity 'sev1'"),
        ('{"keywords": {"outage": "high", "OUTAGE": "low"}}', "'outage' is given twice"),
        ('{"keywords": {"": "high"}}', "must not be empty"),
        ('{"categories": {"Security": "high"}}', "category name 'Security' is invalid"),
        ('{"categories": {"security": 3}}', "unknown severity 3"),
        ('{"default": "none"}', "unknown severity 'none'"),
    ],
)
def test_parse_severity_rules_errors_name_the_problem(text, fragment):
    with pytest.raises(ValueError) as caught:
        parse_severity_rules(text)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("severity rules: ")


def test_severity_rules_are_checked_against_a_taxonomy_when_given():
    with pytest.raises(ValueError, match="not in the taxonomy: securty"):
        parse_severity_rules('{"categories": {"securty": "high"}}', taxonomy=DEFAULT_TAXONOMY)
    # The built-in category defaults are not held against a custom taxonomy.
    custom = parse_taxonomy('{"hr": ["harassment"]}')
    rules = parse_severity_rules('{"keywords": {"harassment": "high"}}', taxonomy=custom)
    assert rules.categories == DEFAULT_SEVERITY_RULES.categories
