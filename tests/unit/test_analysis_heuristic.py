"""The heuristic analyzer: keyword matching, category and severity, summary, entities,
confidence, chunk merging, determinism, and the async provider around it."""

from __future__ import annotations

import itertools

import pytest
import trio

from daemon.modules.analysis import (
    DEFAULT_SEVERITY_RULES,
    DEFAULT_TAXONOMY,
    MAX_ENTITIES,
    OTHER,
    SUMMARY_MAX_CHARS,
    AnalysisOutcome,
    AnalysisRequest,
    Analyzer,
    EntityType,
    HeuristicAnalyzer,
    Severity,
    extract_entities,
    heuristic_analysis,
    parse_severity_rules,
    parse_taxonomy,
    summarize,
)
from daemon.modules.analysis import heuristic as heuristic_module
from daemon.modules.analysis.keywords import TermMatcher

RANSOMWARE = (
    "Hi team,\n\n"
    "At 06:40 UTC our EDR flagged ransomware on the file server fs-02 (10.20.4.17). "
    "Shares on that host are being encrypted and a ransom note demands $250,000 in "
    "bitcoin by 2024-06-03. The entry point is probably CVE-2023-4966 on the VPN "
    "appliance. Incident INC0012345 is open; updates on "
    "https://status.example.com/incidents/77 and from soc@example.com.\n\nRegards,\nDana"
)
OUTAGE = (
    "Since 14:05 UTC the checkout API returns 503 errors for every request from the EU "
    "region. The status page shows a complete outage and customers cannot pay. Our "
    "on-call engineer is investigating the load balancer."
)
BILLING = (
    "Hello,\n\nI was charged twice for my Pro subscription in May. Invoice "
    "INV-2024-0042 lists €49.00 but my card statement shows two payments of €49.00 on "
    "3 May 2024. Please refund the second payment to the same card.\n\nThanks, Omar"
)
LEGAL = (
    "Dear Sir or Madam, we act for Northwind Ltd. Your continued use of our client's "
    "trademark is a breach of contract under the licence of 12 March 2021. Unless you "
    "cease and desist within 14 days our client will commence legal action."
)
PRIVACY = (
    "Under Article 15 GDPR I hereby make a subject access request for all personal data "
    "you hold about me, including the purposes of processing and the recipients."
)
COMPLAINT = (
    "I am very disappointed with your support. The agent on the phone was rude, hung up "
    "on me twice, and nobody called back. This is unacceptable and I want to file a "
    "formal complaint."
)
REQUEST = (
    "Could you please provide your latest SOC 2 report? Our procurement team would like "
    "to review it before we sign."
)
LUNCH = "The canteen serves pasta, salad and fruit on Friday. Bring your own cup."


def analyse(text, title="", **kwargs):
    request = AnalysisRequest(title=title, chunks=[text], **kwargs)
    return heuristic_analysis(request, taxonomy=DEFAULT_TAXONOMY, rules=DEFAULT_SEVERITY_RULES)


# -- Keyword matching -------------------------------------------------------------------


def test_terms_match_whole_words_in_any_case():
    matcher = TermMatcher(["charge", "refund*", "data breach", "breach", "zero-day"])
    assert matcher.count("The patient was discharged; charges apply.") == {}
    assert matcher.count("CHARGE it. Charge!") == {"charge": 2}
    assert matcher.count("Refunded, refunds, REFUND, prerefund") == {"refund*": 3}
    # The longest term wins where terms overlap; whitespace runs match inside phrases.
    assert matcher.count("A data\n   breach, then another breach.") == {
        "data breach": 1,
        "breach": 1,
    }
    assert matcher.count("a zero-day and a zero day") == {"zero-day": 1}
    assert matcher.count("") == {} and TermMatcher([]).count("anything") == {}


def test_lowercased_matching_counts_what_case_insensitive_matching_counts():
    # count() matches a lowercased copy of the text; the reference matches the text as
    # it is with IGNORECASE. Letters whose case mappings are irregular included.
    terms = ["straße", "kelvin", "sigma", "istanbul", "refund*", "data breach", "\u017ftop"]
    matcher = TermMatcher(terms)
    reference = matcher._regex
    assert reference is not None
    pieces = [
        "Straße", "STRASSE", "\u212aelvin", "KELVIN", "ΣIGMA", "sigma", "İstanbul",
        "ISTANBUL", "Refunded", "DATA\n BREACH", "\u017ftop", "STOP", "x", "-", " ", ". ",
    ]  # fmt: skip
    for size in (1, 2, 3):
        for combination in itertools.product(pieces, repeat=size):
            text = " ".join(combination)
            expected: dict[str, int] = {}
            for spelling in reference.findall(text):
                term = matcher._term_of(" ".join(spelling.lower().split()))
                if term is not None:
                    expected[term] = expected.get(term, 0) + 1
            assert matcher.count(text) == expected, text


def test_exact_term_wins_over_its_prefix_twin():
    matcher = TermMatcher(["refund", "refund*", "data*", "data breach"])
    assert matcher.count("refund refunds data breach database") == {
        "refund": 1,
        "refund*": 1,
        "data breach": 1,
        "data*": 1,
    }


def test_a_large_vocabulary_still_matches_exactly():
    terms = [f"term{i}" for i in range(3000)] + ["term12 extra"]
    matcher = TermMatcher(terms)
    assert matcher.count("term1 term12 term12 extra term2999 term3000") == {
        "term1": 1,
        "term12": 1,
        "term12 extra": 1,
        "term2999": 1,
    }


# -- Category, severity, confidence -----------------------------------------------------


@pytest.mark.parametrize(
    ("title", "text", "category", "severity"),
    [
        ("Ransomware on fs-02", RANSOMWARE, "security", Severity.CRITICAL),
        ("Checkout API down", OUTAGE, "outage", Severity.CRITICAL),
        ("Charged twice", BILLING, "billing", Severity.LOW),
        ("Notice before action", LEGAL, "legal", Severity.HIGH),
        ("Data subject request", PRIVACY, "privacy", Severity.MEDIUM),
        ("", COMPLAINT, "complaint", Severity.MEDIUM),
        ("SOC 2 report", REQUEST, "request", Severity.LOW),
        ("Friday menu", LUNCH, OTHER, Severity.LOW),
    ],
)
def test_realistic_documents(title, text, category, severity):
    analysis = analyse(text, title=title)
    assert (analysis.category, analysis.severity) == (category, severity)
    assert 0 <= analysis.confidence <= 1
    assert analysis.rationale and f"Category {category}" in analysis.rationale


def test_no_evidence_means_other_with_low_confidence():
    analysis = analyse(LUNCH)
    assert analysis.category == OTHER
    assert analysis.confidence == heuristic_module.NO_EVIDENCE_CONFIDENCE
    assert "no category keywords matched" in analysis.rationale


def test_more_evidence_gives_more_confidence():
    weak = analyse("We got an email that looks like phishing.")
    strong = analyse(RANSOMWARE, title="Ransomware: data breach in progress")
    assert weak.category == strong.category == "security"
    assert 0.2 < weak.confidence < strong.confidence <= heuristic_module.MAX_CONFIDENCE


def test_competing_evidence_lowers_confidence():
    clear = analyse("The invoice shows the wrong amount.")
    mixed = analyse("The invoice shows the wrong amount and the portal is down with an outage.")
    assert clear.category == "billing" and mixed.category == "outage"
    assert mixed.confidence < analyse("The portal is down with an outage.").confidence


TIE = parse_taxonomy('{"alpha": ["foo"], "beta": ["bar"]}')
NO_RULES = parse_severity_rules('{"keywords": {}, "categories": {}}')


def categorise(taxonomy, text, title=""):
    request = AnalysisRequest(title=title, chunks=[text])
    return heuristic_analysis(request, taxonomy=taxonomy, rules=NO_RULES)


def test_ties_go_to_the_category_declared_first():
    assert categorise(TIE, "foo and bar").category == "alpha"
    reversed_ = parse_taxonomy('{"beta": ["bar"], "alpha": ["foo"]}')
    assert categorise(reversed_, "foo and bar").category == "beta"
    assert categorise(TIE, "foo and bar").confidence == 0.2  # a tie is a guess


def test_ties_go_first_to_more_distinct_keywords():
    taxonomy = parse_taxonomy('{"alpha": {"foo": 2}, "beta": ["bar", "baz"]}')
    assert categorise(taxonomy, "foo bar baz").category == "beta"


def test_repetition_counts_at_most_three_times_per_piece():
    taxonomy = parse_taxonomy('{"alpha": ["foo"], "beta": {"bar": 2.5}}')
    assert categorise(taxonomy, "foo foo bar").category == "beta"  # 2 < 2.5
    assert categorise(taxonomy, "foo foo foo bar").category == "alpha"  # 3 > 2.5
    assert categorise(taxonomy, "foo " * 50 + "bar bar").category == "beta"  # 3 (capped) < 5


def test_a_title_hit_weighs_twice_a_body_hit():
    assert categorise(TIE, "bar", title="foo").category == "alpha"
    assert categorise(TIE, "bar bar bar", title="foo").category == "beta"


def test_severity_is_the_highest_matching_rule():
    analysis = analyse("A phishing mail led to ransomware on two laptops.")
    assert analysis.severity is Severity.CRITICAL
    assert "Severity critical: keywords ransomware" in analysis.rationale


def test_category_default_is_the_severity_floor():
    analysis = analyse("We noticed a suspicious login to the admin console from abroad.")
    assert analysis.category == "security"
    assert analysis.severity is Severity.MEDIUM  # no severity keyword; security's default
    assert "default for the category" in analysis.rationale


def test_custom_rules_apply():
    rules = parse_severity_rules('{"keywords": {"harassment": "critical"}}')
    taxonomy = parse_taxonomy('{"hr": ["harassment", "payroll"]}')
    request = AnalysisRequest(chunks=["A report of harassment in the warehouse."])
    analysis = heuristic_analysis(request, taxonomy=taxonomy, rules=rules)
    assert (analysis.category, analysis.severity) == ("hr", Severity.CRITICAL)


# -- Summary ----------------------------------------------------------------------------


def test_summary_is_the_leading_sentences_without_salutation():
    analysis = analyse(RANSOMWARE)
    assert analysis.summary.startswith("At 06:40 UTC our EDR flagged ransomware")
    assert "Hi team" not in analysis.summary
    assert len(analysis.summary) <= 300


def test_summary_respects_abbreviations_and_limits():
    text = (
        "Dear Support,\nOur dashboard (e.g. the main one) stopped loading at 9 a.m. today. "
        "Mr. Smith noticed it first! Is this known? We need it by noon."
    )
    assert summarize(text) == (
        "Our dashboard (e.g. the main one) stopped loading at 9 a.m. today. "
        "Mr. Smith noticed it first! Is this known?"
    )
    assert summarize(text, max_sentences=1).startswith("Our dashboard (e.g. the main one)")
    assert summarize(text, max_sentences=1).endswith("today.")


def test_a_long_first_sentence_is_cut_at_a_word():
    text = "word " * 400 + "end."
    summary = summarize(text)
    assert len(summary) <= 300 and summary.endswith("…") and "wor…" not in summary
    assert len(analyse(text).summary) <= SUMMARY_MAX_CHARS


def test_summary_stops_at_paragraph_breaks():
    assert summarize("Subject: VPN outage\n\nThe VPN is down") == (
        "Subject: VPN outage. The VPN is down"
    )
    assert summarize("Status: red\nsince noon") == "Status: red since noon"


def test_empty_documents_still_get_a_valid_analysis():
    empty = heuristic_analysis(
        AnalysisRequest(), taxonomy=DEFAULT_TAXONOMY, rules=DEFAULT_SEVERITY_RULES
    )
    assert empty.summary == heuristic_module.EMPTY_SUMMARY
    assert (empty.category, empty.severity, empty.entities) == (OTHER, Severity.LOW, ())
    titled = analyse("   ", title="Phishing mail received")
    assert titled.summary == "Phishing mail received"
    assert titled.category == "security"


# -- Entities ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "value", "normalized"),
    [
        ("write to Soc.Team+x@Example.co.uk today", "email", "Soc.Team+x@Example.co.uk",
         "soc.team+x@example.co.uk"),
        ("see https://Status.Example.com/a?b=1.", "url", "https://Status.Example.com/a?b=1",
         "https://status.example.com/a?b=1"),
        ("(https://en.wikipedia.org/wiki/Foo_(bar))", "url",
         "https://en.wikipedia.org/wiki/Foo_(bar)", "https://en.wikipedia.org/wiki/Foo_(bar)"),
        ("due 2024-06-03.", "date", "2024-06-03", "2024-06-03"),
        ("at 2024-02-29T13:45:00Z", "date", "2024-02-29T13:45:00Z", "2024-02-29T13:45:00+00:00"),
        ("on 5 March 2024", "date", "5 March 2024", "2024-03-05"),
        ("on 1st of May, 2023", "date", "1st of May, 2023", "2023-05-01"),
        ("on Sept. 3rd 2021", "date", "Sept. 3rd 2021", "2021-09-03"),
        ("on March 7, 2024", "date", "March 7, 2024", "2024-03-07"),
        ("on 31.01.2024", "date", "31.01.2024", "2024-01-31"),
        ("on 25/12/2024", "date", "25/12/2024", "2024-12-25"),
        ("on 12/25/2024", "date", "12/25/2024", "2024-12-25"),
        ("on 03/04/2024", "date", "03/04/2024", None),  # day-first or month-first?
        ("pay $1,234.50 now", "amount", "$1,234.50", "USD 1234.50"),
        ("pay €1.234,56 now", "amount", "€1.234,56", "EUR 1234.56"),
        ("pay 100 € now", "amount", "100 €", "EUR 100.00"),
        ("pay EUR 12,50 now", "amount", "EUR 12,50", "EUR 12.50"),
        ("pay 980 CHF now", "amount", "980 CHF", "CHF 980.00"),
        ("lost £2.5 million", "amount", "£2.5 million", "GBP 2500000.00"),
        ("ticket #48213 is open", "identifier", "ticket #48213", "ticket:48213"),
        ("Case No. 00123", "identifier", "Case No. 00123", "case:00123"),
        ("order number: 998877", "identifier", "order number: 998877", "order:998877"),
        ("Invoice INV-2024-0042 attached", "identifier", "Invoice INV-2024-0042",
         "INV-2024-0042"),
        ("see INC0012345", "identifier", "INC0012345", "INC0012345"),
        ("patch cve-2021-44228 now", "cve", "cve-2021-44228", "CVE-2021-44228"),
        ("from 192.168.1.10.", "ip_address", "192.168.1.10", "192.168.1.10"),
    ],
)  # fmt: skip
def test_entities_found(text, kind, value, normalized):
    entities = extract_entities(text)
    assert [(e.type.value, e.value, e.normalized) for e in entities] == [(kind, value, normalized)]


@pytest.mark.parametrize(
    "text",
    [
        "We met at 10.30, talked for 2.5 hours and agreed on 3 next steps.",
        "About 45% of users upgraded to version 3.11.2 last week.",
        "In any case, the order of events was unclear; see section 4.2 on page 12.",
        "The request was approved by the account manager after the case review.",
        "Call me at 9 or after 17:30; room 1204, floor 3.",
        "Dates like 2024-02-30, 31 February 2024, 13/13/2024 and 00.00.2024 do not exist.",
        "Addresses such as 256.1.1.1, 01.2.3.4 and 10.0.0.1.5 are not IPv4 addresses.",
        "Write to alice at example dot com or user@localhost, not to @handle.",
        "Prices went up by 3 points; a USDC token and a EURO coin are not amounts.",
        "Our SHA-256 and UTF-8 settings, ISO-8601 times and COVID-19 rules are unchanged.",
        "He said order 66 was executed; case 42 is closed.",
    ],
)
def test_plain_prose_yields_no_entities(text):
    assert extract_entities(text) == ()


def test_entities_inside_urls_are_not_extracted_twice():
    text = "Open https://tracker.example.com/u/bob@example.com/2024-06-03/10.0.0.1 now."
    assert [e.type for e in extract_entities(text)] == [EntityType.URL]


def test_entities_come_in_order_without_repeats_and_bounded():
    text = "Mail b@x.org, then a@x.org, then B@X.org again on 2024-01-02 and 2024-01-02."
    found = extract_entities(text)
    assert [e.normalized for e in found] == ["b@x.org", "a@x.org", "2024-01-02"]
    many = " ".join(f"user{i}@example.com" for i in range(MAX_ENTITIES + 20))
    assert len(extract_entities(many)) == MAX_ENTITIES
    assert len(analyse(many).entities) == MAX_ENTITIES


def test_analysis_entities_of_a_realistic_document():
    kinds = [(e.type.value, e.normalized) for e in analyse(RANSOMWARE).entities]
    assert kinds == [
        ("ip_address", "10.20.4.17"),
        ("amount", "USD 250000.00"),
        ("date", "2024-06-03"),
        ("cve", "CVE-2023-4966"),
        ("identifier", "INC0012345"),
        ("url", "https://status.example.com/incidents/77"),
        ("email", "soc@example.com"),
    ]


# -- Chunks -----------------------------------------------------------------------------


def test_chunks_are_merged():
    chunks = [
        "Invoice INV-2024-0042 was paid twice. Please refund one payment to ops@example.com.",
        "Our billing contact is ops@example.com. The refund should go to the same card.",
        "PS: yesterday the portal had a complete outage for an hour, see 2024-06-03.",
    ]
    analysis = heuristic_analysis(
        AnalysisRequest(title="Double payment", chunks=chunks),
        taxonomy=DEFAULT_TAXONOMY,
        rules=DEFAULT_SEVERITY_RULES,
    )
    assert analysis.category == "billing"  # total weight over all chunks
    assert analysis.severity is Severity.CRITICAL  # highest, from the last chunk
    assert analysis.summary.startswith("Invoice INV-2024-0042 was paid twice.")  # first chunk
    assert "outage" not in analysis.summary
    assert [e.normalized for e in analysis.entities] == [
        "INV-2024-0042",
        "ops@example.com",
        "2024-06-03",
    ]
    assert "Analysed 3 chunks." in analysis.rationale


def test_category_follows_total_weight_not_the_first_chunk():
    chunks = [
        "One question about the invoice.",
        "The service is down. Total outage since noon.",
        "Still an outage, and the status page is unreachable.",
    ]
    analysis = heuristic_analysis(
        AnalysisRequest(chunks=chunks), taxonomy=DEFAULT_TAXONOMY, rules=DEFAULT_SEVERITY_RULES
    )
    assert analysis.category == "outage"
    assert analysis.summary == "One question about the invoice."


def test_truncation_is_stated():
    analysis = analyse(OUTAGE, truncated=True)
    assert "truncated" in analysis.rationale


# -- Determinism ------------------------------------------------------------------------


def test_same_input_same_output():
    request = AnalysisRequest(title="Ransomware", chunks=[RANSOMWARE, BILLING, LEGAL])
    first = heuristic_analysis(request, taxonomy=DEFAULT_TAXONOMY, rules=DEFAULT_SEVERITY_RULES)
    again = heuristic_analysis(
        AnalysisRequest(title="Ransomware", chunks=[RANSOMWARE, BILLING, LEGAL]),
        taxonomy=parse_taxonomy(repr_json(DEFAULT_TAXONOMY.to_mapping())),
        rules=parse_severity_rules(repr_json(DEFAULT_SEVERITY_RULES.to_mapping())),
    )
    assert first == again
    assert first.model_dump_json() == again.model_dump_json()


def repr_json(value):
    import json

    return json.dumps(value)


# -- The provider -----------------------------------------------------------------------


def test_requests_refuse_a_bare_string_as_chunks():
    with pytest.raises(TypeError):
        AnalysisRequest(chunks="one long text")
    with pytest.raises(TypeError):
        AnalysisRequest(chunks=["ok", 3])
    assert AnalysisRequest(chunks=["a", "b"]).chunked
    assert not AnalysisRequest(chunks=["a"]).chunked


async def test_analyze_returns_the_analysis_with_accounting():
    analyzer = HeuristicAnalyzer()
    assert isinstance(analyzer, Analyzer)
    request = AnalysisRequest(title="Ransomware on fs-02", chunks=[RANSOMWARE, OUTAGE])
    outcome = await analyzer.analyze(request)
    assert isinstance(outcome, AnalysisOutcome)
    assert outcome.analysis == heuristic_analysis(
        request, taxonomy=DEFAULT_TAXONOMY, rules=DEFAULT_SEVERITY_RULES
    )
    assert (outcome.provider, outcome.model) == ("heuristic", "keyword-rules")
    assert outcome.version == analyzer.version
    assert outcome.calls == 2 and outcome.chunked and outcome.repair_rounds == 0
    assert outcome.prompt_tokens is None and outcome.completion_tokens is None
    assert outcome.latency_ms >= 0


def test_version_follows_the_configuration():
    default = HeuristicAnalyzer()
    assert default.version == HeuristicAnalyzer().version
    assert default.version.startswith(heuristic_module.RULES_VERSION + "+")
    other_rules = HeuristicAnalyzer(rules=parse_severity_rules('{"default": "medium"}'))
    other_taxonomy = HeuristicAnalyzer(taxonomy=parse_taxonomy('{"hr": ["payroll"]}'))
    assert len({default.version, other_rules.version, other_taxonomy.version}) == 3


async def test_large_requests_run_in_a_thread_small_ones_do_not(monkeypatch):
    threads = []
    real = trio.to_thread.run_sync

    async def spy(fn, *args, **kwargs):
        threads.append(fn)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(trio.to_thread, "run_sync", spy)
    analyzer = HeuristicAnalyzer(inline_max_chars=1000)
    small = await analyzer.analyze(AnalysisRequest(chunks=[OUTAGE]))
    assert threads == []
    large = await analyzer.analyze(AnalysisRequest(chunks=[OUTAGE * 10]))
    assert len(threads) == 1
    assert small.analysis.category == large.analysis.category == "outage"


class InlineRunner:
    """A CPU runner that records its calls and runs them in place."""

    def __init__(self):
        self.calls = []

    async def run(self, function, *args):
        self.calls.append((function.__name__, len(args[0])))
        await trio.lowlevel.checkpoint()
        return function(*args)


async def test_a_large_lone_request_goes_to_the_given_cpu_runner():
    cpu = InlineRunner()
    analyzer = HeuristicAnalyzer(inline_max_chars=10, cpu=cpu)
    outcome = await analyzer.analyze(AnalysisRequest(chunks=[OUTAGE]))
    assert cpu.calls == [("heuristic_analyses", 1)] and outcome.analysis.category == "outage"


async def test_a_batch_is_one_call_of_the_cpu_runner_and_analysed_as_one_by_one():
    requests = [AnalysisRequest(chunks=[text]) for text in (OUTAGE, BILLING, "", OUTAGE * 3)]
    cpu = InlineRunner()
    batched = await HeuristicAnalyzer(cpu=cpu).analyze_many(requests)
    alone = [await HeuristicAnalyzer().analyze(request) for request in requests]
    assert cpu.calls == [("heuristic_analyses", 4)]
    assert [o.analysis for o in batched] == [o.analysis for o in alone]
    assert all(o.latency_ms >= 0 and o.provider == "heuristic" for o in batched)
    # without a runner, a batch is analysed one request at a time, the same way
    unbatched = await HeuristicAnalyzer().analyze_many(requests)
    assert [o.analysis for o in unbatched] == [o.analysis for o in alone]


async def test_a_huge_document_does_not_stall_the_event_loop():
    text = (BILLING + " " + OUTAGE + " ") * 5000  # about 3.5 MB
    analyzer = HeuristicAnalyzer()
    beats = []
    done = trio.Event()

    async def heartbeat():
        while not done.is_set():
            beats.append(trio.current_time())
            await trio.sleep(0.002)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(heartbeat)
        started = trio.current_time()
        outcome = await analyzer.analyze(AnalysisRequest(chunks=[text]))
        elapsed = trio.current_time() - started
        done.set()
    assert outcome.analysis.severity is Severity.CRITICAL
    # The analysis takes a while, but the loop kept running meanwhile: run inline, its
    # longest pause would be the whole analysis. (A pure-Python thread still holds the
    # GIL between switches, so on a loaded machine single pauses near 0.1 s happen: the
    # bound is relative to the analysis, not absolute.)
    longest_pause = max(b - a for a, b in itertools.pairwise(beats))
    assert elapsed > 0.1
    assert longest_pause < elapsed / 3
    assert len(beats) > 10
