"""Generate the Wordle word lists shipped in ``src/palaestra/envs/data/``.

Sources (both MIT-licensed PyPI packages; see ``src/palaestra/envs/data/NOTICE.txt``):

- ``english-words==2.0.2``: its ``web2`` list, Webster's Second International Dictionary (1934) as shipped
  in FreeBSD's ``/usr/share/dict/web2`` (public domain). Lower-case entries only, so proper nouns (which
  web2 capitalises) are left out.
- ``pyspellchecker==0.9.1``: its English word-frequency table (counts from OpenSubtitles), used to rank
  words by how common they are and to add common inflected forms (plurals, past tenses) that web2 lacks.

Lists produced:

- ``wordle_answers.txt``: the ``--answers`` most frequent 5-letter web2 words (common words, so the hidden
  word is fair to guess), minus a hand-written block list of names, slurs and sexual terms.
- ``wordle_vocabulary.txt``: every accepted guess: all 5-letter lower-case web2 words, plus the common
  inflected forms (``--min-count`` or more occurrences) of web2 words, minus the block list.

Usage::

    pip install -c constraints.txt english-words==2.0.2 pyspellchecker==0.9.1
    python scripts/make_wordlists.py            # writes the two files; prints their sizes
"""

from __future__ import annotations

import argparse
import gzip
import json
from importlib import resources
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "src" / "palaestra" / "envs" / "data"

# Hand-checked against the most frequent 2,600 candidates: first names, surnames, places, nationalities,
# slurs, sexual and otherwise offensive terms, and contractions written without their apostrophe; then
# the same for the inflected forms added to the vocabulary.
_BLOCKED_TEXT = """
    allan ariel barry benny betty bilbo billy bitch blair blake bobby boner bowie brent brett burke
    butch cajun chang chevy chico china chink cisco clark clint clive colin costa cyrus dicky dildo dixie
    donna dutch emery enema erika ethel fecal feces gemma ganja garth ginny gypsy haole hanna harry henry
    homer horny hussy hymen irene jakes japan jenna jenny jerry jihad jimmy julio kelly kraut labia larry
    laura lewis limey lynch marco marge maria missy molly morse nancy nappy negro norma pablo paddy pansy
    pedro peggy penis perry peter ponce prick pubes pubic pussy pygmy queer ralph randy reese riley rufus
    ryder sally sammy satan semen serge silva singh sissy slave sloan sonny spank spick sperm squaw stein
    swiss tammy terry titty tolly tommy twink vulva walsh wally welsh whats whore willy
    asher boobs brits cocks coons dicks dykes gooks homos jared leeds nudes pimps rapes scots sluts turds
    turks twats yates
"""
BLOCKED = frozenset(_BLOCKED_TEXT.split())


def web2_entries() -> tuple[set[str], set[str]]:
    """web2's lower-case entries, and its capitalised entries (proper nouns) lower-cased."""
    from english_words import get_english_words_set

    words = get_english_words_set(["web2"], alpha=True, lower=False)
    return {w for w in words if w.islower()}, {w.lower() for w in words if not w.islower()}


def frequencies() -> dict[str, int]:
    """pyspellchecker's English word counts (OpenSubtitles), 5-letter alphabetic words only."""
    path = resources.files("spellchecker") / "resources" / "en.json.gz"
    with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        counts: dict[str, int] = json.load(fh)
    return {w: c for w, c in counts.items() if len(w) == 5 and w.isascii() and w.isalpha()}


def inflection_stems(word: str) -> list[str]:
    """Words that ``word`` could be a regular inflection of (plural, past tense, -ing, comparative)."""
    stems = []
    if word.endswith("s"):
        stems.append(word[:-1])
    if word.endswith(("es", "ed", "er")):
        stems.append(word[:-2])
    if word.endswith(("d", "r")):  # taped -> tape, safer -> safe
        stems.append(word[:-1])
    if word.endswith("ied"):  # cried -> cry
        stems.append(word[:-3] + "y")
    if word.endswith("ing"):
        stems.append(word[:-3])
    return [s for s in stems if s]


def build(n_answers: int, min_count: int) -> tuple[list[str], list[str]]:
    web2, proper = web2_entries()
    lower = {w for w in web2 if len(w) == 5 and w.isascii() and w.isalpha()}
    counts = frequencies()

    ranked = sorted((w for w in lower if w in counts), key=lambda w: (-counts[w], w))
    answers = sorted([w for w in ranked if w not in BLOCKED][:n_answers])

    inflected = {
        w
        for w, c in counts.items()
        if c >= min_count and w not in lower and w not in proper and any(s in web2 for s in inflection_stems(w))
    }
    vocabulary = sorted((lower | inflected | set(answers)) - BLOCKED)
    return answers, vocabulary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=2300, help="number of hidden-word candidates")
    parser.add_argument("--min-count", type=int, default=200, help="min count of an added inflected form")
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    args = parser.parse_args()

    answers, vocabulary = build(args.answers, args.min_count)
    assert set(answers) <= set(vocabulary)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "wordle_answers.txt").write_text("\n".join(answers) + "\n", encoding="utf-8")
    (args.out / "wordle_vocabulary.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    print(f"answers: {len(answers)}  vocabulary: {len(vocabulary)}  -> {args.out}")


if __name__ == "__main__":
    main()
