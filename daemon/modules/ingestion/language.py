"""A small, deterministic language guesser: stop-word frequencies.

Each word of the text's first :data:`MAX_WORDS` words that is a common function word of a
language counts for that language; a word common to several languages (``de``, ``la``,
``in``) is split between them. The best-scoring language wins if the text is long
enough, the evidence strong enough and the lead clear; otherwise the answer is
``und`` (ISO 639-2 "undetermined"). No model, no dependency, same answer every time;
good enough to route and to pick an analyzer prompt, not to tell dialects apart.
"""

from __future__ import annotations

import re
from collections import Counter

UNDETERMINED = "und"
MAX_WORDS = 5000
SCAN_CHARS = 100_000
MIN_WORDS = 5  # shorter texts are "und": a few words prove nothing
MIN_SCORE = 2.0  # at least this much stop-word evidence for the winner
MIN_LEAD = 1.25  # the winner must score this many times the runner-up

_STOP_WORDS: dict[str, str] = {
    "en": """the and of to a in is it that was for on are with as be this have from or by
        not but what all were when we there can an your which their if will has would been
        they you he she our its than them these about into should could do does did how
        who please thank my me i""",
    "de": """der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als
        auch es an werden aus er hat dass sie nach wird bei einer um am sind noch wie einem
        über einen so zum war haben nur oder aber vor zur bis mehr durch man sein wurde ich
        wir uns ihr ihre bitte sehr kein keine wenn unsere können muss diese dieser""",
    "fr": """le la les de des du et en un une est que qui dans pour pas sur au aux avec ce
        cette il elle ne se par plus sont ont mais ou nous vous leur été être fait comme
        tout aussi son sa ses je on y très merci votre vos notre""",
    "es": """el la los las de del y en que un una es por con no para se su sus al lo como
        más pero fue ha este esta son también muy hay entre cuando sin sobre ya todo porque
        usted nuestro gracias está están desde donde""",
    "it": """il lo la i gli le di del della dei delle che e è un una per non in con su sono
        da al alla come più ma anche questo questa ci si nel nella ha hanno essere stato
        molto grazie tutti perché quando sul dal degli""",
    "nl": """de het een en van in is dat op te zijn voor met niet aan er die ook als maar om
        bij dan nog of wordt naar uit door over kan wij we u ons onze heeft hebben deze dit
        was werd graag alstublieft geen veel wel""",
    "pt": """o a os as de do da dos das e em no na nos nas um uma que é para com não por se
        ao mais como mas foi pelo pela são seu sua está ou também muito isso este esta
        quando obrigado você ser tem já há""",
}

LANGUAGES: tuple[str, ...] = tuple(_STOP_WORDS)
"""The ISO 639-1 codes the guesser can answer, besides ``und``."""

_WORD = re.compile(r"[^\W\d_]+")


def _weights() -> dict[str, dict[str, float]]:
    """word -> {language: weight}, a word shared by k languages weighing 1/k in each."""
    owners: dict[str, list[str]] = {}
    for language, words in _STOP_WORDS.items():
        for word in dict.fromkeys(words.split()):
            owners.setdefault(word, []).append(language)
    return {word: {lang: 1 / len(langs) for lang in langs} for word, langs in owners.items()}


_WEIGHTS = _weights()


def guess_language(text: str) -> str:
    """The ISO 639-1 code of the language ``text`` is most likely in (one of
    :data:`LANGUAGES`), or ``und`` when it is too short, not in one of them, or
    ambiguous. Pure and deterministic; looks at the first :data:`MAX_WORDS` words (of
    the first :data:`SCAN_CHARS` characters)."""
    # The first words (within SCAN_CHARS: a bound on the work for a huge text).
    words = _WORD.findall(text, 0, SCAN_CHARS)[:MAX_WORDS]
    if len(words) < MIN_WORDS:
        return UNDETERMINED
    scores: Counter[str] = Counter()
    for word, count in Counter(map(str.casefold, words)).items():
        for language, weight in _WEIGHTS.get(word, {}).items():
            scores[language] += weight * count
    # Ties are ordered by LANGUAGES (insertion order), and a tie never wins (MIN_LEAD).
    ranked = sorted(LANGUAGES, key=lambda language: -scores[language])
    best, second = scores[ranked[0]], scores[ranked[1]]
    if best < MIN_SCORE or best < MIN_LEAD * second:
        return UNDETERMINED
    return ranked[0]
