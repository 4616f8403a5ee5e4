"""Wordle (LMRL-Gym's information-gathering task): ``wordle-v0``.

The agent guesses a hidden 5-letter word; after each guess it gets one feedback letter per position:
``g`` (right letter, right place), ``y`` (in the word, elsewhere) or ``b`` (not in the word, or no more
copies of it). Reward -1 per guess, 0 on the guess that finds the word; at most ``max_turns`` (6) guesses.

Word lists live in ``data/`` (see ``data/NOTICE.txt`` for their source and license). The hidden words
of the train, validation and test seed ranges come from three disjoint pools of the answer list, so a
model trained on train seeds never sees a test word as an answer.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from importlib import resources
from typing import Any

import numpy as np

from palaestra.core.errors import EnvError
from palaestra.core.types import Step
from palaestra.envs.base import Env, Policy

WORD_LENGTH = 5
ALL_GREEN = 3**WORD_LENGTH - 1  # the code of "ggggg"

# Probability that the ``noisy`` policy (LMRL-Gym's dataset mixture) guesses a word consistent with the
# feedback so far; otherwise it guesses any vocabulary word.
NOISY_CONSISTENT_PROB = 0.5

# Share of the answer list held out for each evaluation split; the rest are the train pool.
_POOL_PERCENT = {"test": 15, "validation": 15}


# --------------------------------------------------------------------------- word lists


def _read_words(filename: str) -> tuple[str, ...]:
    text = (resources.files("palaestra.envs") / "data" / filename).read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@functools.cache
def vocabulary() -> tuple[str, ...]:
    """Every accepted guess, sorted."""
    return _read_words("wordle_vocabulary.txt")


@functools.cache
def answers() -> tuple[str, ...]:
    """Every possible hidden word (common words), sorted; a subset of the vocabulary."""
    return _read_words("wordle_answers.txt")


@functools.cache
def _vocabulary_set() -> frozenset[str]:
    return frozenset(vocabulary())


def answer_pool(split: str | None) -> tuple[str, ...]:
    """The hidden words used for seeds of ``split`` (``None`` or an unknown split: all answers).

    Each word is assigned by a hash of its text, so the pools are stable whatever the Python version.
    """
    return _answer_pools().get(split or "", answers())


@functools.cache
def _answer_pools() -> dict[str, tuple[str, ...]]:
    pools: dict[str, list[str]] = {"test": [], "validation": [], "train": []}
    for word in answers():
        bucket = int(hashlib.sha256(word.encode()).hexdigest(), 16) % 100
        split = "test" if bucket < _POOL_PERCENT["test"] else "train"
        if _POOL_PERCENT["test"] <= bucket < _POOL_PERCENT["test"] + _POOL_PERCENT["validation"]:
            split = "validation"
        pools[split].append(word)
    return {k: tuple(v) for k, v in pools.items()}


# --------------------------------------------------------------------------- feedback


def feedback(guess: str, answer: str) -> str:
    """Wordle feedback as a string of ``g`` / ``y`` / ``b``, handling repeated letters.

    Greens are marked first; then, left to right, a letter is yellow only while the answer still has
    unmatched copies of it (so a letter guessed twice but present once is yellow once, then black).
    """
    result = ["b"] * WORD_LENGTH
    unmatched: dict[str, int] = {}
    for i, (g, a) in enumerate(zip(guess, answer, strict=True)):
        if g == a:
            result[i] = "g"
        else:
            unmatched[a] = unmatched.get(a, 0) + 1
    for i, g in enumerate(guess):
        if result[i] != "g" and unmatched.get(g, 0) > 0:
            result[i] = "y"
            unmatched[g] -= 1
    return "".join(result)


def _code(pattern: str) -> int:
    """Base-3 code of a feedback string (b=0, y=1, g=2; first letter most significant)."""
    value = 0
    for ch in pattern:
        value = value * 3 + "byg".index(ch)
    return value


def _encode(words: tuple[str, ...]) -> np.ndarray:
    return np.frombuffer("".join(words).encode("ascii"), dtype=np.uint8).reshape(len(words), WORD_LENGTH)


@functools.cache
def _vocabulary_array() -> np.ndarray:
    return _encode(vocabulary())


@functools.cache
def _answer_array() -> np.ndarray:
    return _encode(answers())


@functools.cache
def _answer_vocabulary_index() -> np.ndarray:
    index = {w: i for i, w in enumerate(vocabulary())}
    return np.array([index[w] for w in answers()], dtype=np.int64)


def pattern_codes(guesses: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Feedback codes (as ``_code``) of every guess against every target, shape ``(n_guesses, n_targets)``.

    The same rule as :func:`feedback`, vectorised: letter ``i`` of a guess is yellow when it is not green
    and fewer earlier non-green copies of that letter were guessed than the target has unmatched copies.
    """
    shape = (len(guesses), len(targets))
    # eq[i][j]: guess letter i equals target letter j. Separate 2-D arrays keep every operation contiguous.
    eq = [[guesses[:, i, None] == targets[None, :, j] for j in range(WORD_LENGTH)] for i in range(WORD_LENGTH)]
    not_green = [~eq[i][i] for i in range(WORD_LENGTH)]
    codes = np.zeros(shape, dtype=np.uint8)  # the largest code, 242, fits
    for i in range(WORD_LENGTH):
        unmatched = np.zeros(shape, dtype=np.uint8)
        for j in range(WORD_LENGTH):
            if j != i:  # target letter i is either green or a different letter
                unmatched += eq[i][j] & not_green[j]
        earlier = np.zeros(shape, dtype=np.uint8)
        for k in range(i):
            same = guesses[:, k] == guesses[:, i]
            if same.any():
                earlier += same[:, None] & not_green[k]
        yellow = not_green[i] & (earlier < unmatched)
        codes *= 3
        codes += eq[i][i].view(np.uint8) * np.uint8(2)
        codes += yellow.view(np.uint8)
    return codes


def _consistent(words: np.ndarray, history: tuple[tuple[str, int], ...]) -> np.ndarray:
    """Indices of the rows of ``words`` that would have produced every (guess, code) in ``history``."""
    keep = np.ones(len(words), dtype=bool)
    for guess, code in history:
        keep &= pattern_codes(_encode((guess,)), words)[0] == code
    return np.flatnonzero(keep)


def _entropies(candidates: np.ndarray) -> np.ndarray:
    """Entropy (bits) of the feedback pattern of each vocabulary word over the candidate answers."""
    targets = _answer_array()[candidates]
    vocab = _vocabulary_array()
    k = len(candidates)
    out = np.empty(len(vocab))
    chunk = max(256, 2_000_000 // k)  # bounds the (chunk, k) work arrays to a few tens of megabytes
    for start in range(0, len(vocab), chunk):
        codes = pattern_codes(vocab[start : start + chunk], targets)
        rows = len(codes)
        if k <= 32:
            # Few candidates: H = log2(k) - mean over targets of log2(size of the target's pattern class),
            # which avoids building a 243-bin histogram per word.
            sizes = (codes[:, :, None] == codes[:, None, :]).sum(axis=2)
            out[start : start + rows] = np.log2(k) - np.log2(sizes).mean(axis=1)
        else:
            flat = (np.arange(rows, dtype=np.int64)[:, None] * 243 + codes).ravel()
            p = np.bincount(flat, minlength=rows * 243).reshape(rows, 243) / k
            with np.errstate(divide="ignore", invalid="ignore"):
                out[start : start + rows] = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    return out


@functools.lru_cache(maxsize=4096)
def best_guess(history: tuple[tuple[str, int], ...]) -> str:
    """The maximum-information guess after ``history`` ((guess, feedback code) pairs, in order).

    Cached: the opening guess is computed once per process, and the second guess depends only on the
    first feedback pattern, so a run of episodes reuses most of the work.
    """
    candidates = _consistent(_answer_array(), history)
    if len(candidates) == 0:
        raise EnvError("no answer is consistent with this feedback history; was it produced by wordle-v0?")
    if len(candidates) == 1:
        return answers()[int(candidates[0])]
    scores = _entropies(candidates)
    # Among (numerically) equal entropies prefer a word that could itself be the answer: it may win now.
    is_candidate = np.zeros(len(scores), dtype=bool)
    is_candidate[_answer_vocabulary_index()[candidates]] = True
    best = np.flatnonzero(scores >= scores.max() - 1e-9)
    preferred = best[is_candidate[best]]
    return vocabulary()[int((preferred if len(preferred) else best)[0])]


# --------------------------------------------------------------------------- the environment

# Whole reply: optional surrounding punctuation/whitespace, then five letters (optionally single-spaced).
_GUESS_RE = re.compile(r"[\W_]*([a-z]{5}|[a-z](?: [a-z]){4})[\W_]*", re.IGNORECASE)
_MAX_ACTION_CHARS = 100


def parse_guess(action: str) -> str | None:
    """The lower-case 5-letter word that ``action`` consists of (``" Crane."`` -> ``"crane"``), or None."""
    if not isinstance(action, str) or len(action) > _MAX_ACTION_CHARS:
        return None
    match = _GUESS_RE.fullmatch(action)
    return match.group(1).replace(" ", "").lower() if match else None


def _shown(action: str, limit: int = 40) -> str:
    """A short, printable-ASCII rendering of an action for feedback (never echo huge or odd text)."""
    text = "".join(ch if ch.isascii() and ch.isprintable() else "?" for ch in action[:limit])
    return text + ("..." if len(action) > limit else "")


class WordleEnv(Env):
    """Guess the hidden 5-letter word in at most ``spec.max_turns`` guesses."""

    def __init__(self) -> None:
        self._answer = ""
        self._history: list[tuple[str, str]] = []  # (guess, feedback) of the valid guesses
        self._turns = 0
        self._started = False
        self._done = False

    @property
    def instructions(self) -> str:  # type: ignore[override]  # reads spec.max_turns, set after __init__
        spec = getattr(self, "spec", None)
        turns = spec.max_turns if spec else 6
        return (
            f"Let's play Wordle. Guess the hidden 5-letter English word in at most {turns} guesses. "
            "Reply with exactly one 5-letter word and nothing else, for example: crane\n"
            "After each guess you get one feedback letter per position of your guess:\n"
            "  g = this letter is in the word and in the right place\n"
            "  y = this letter is in the word but in a different place\n"
            "  b = this letter is not in the word (or the word has no more copies of it)\n"
            "Example: if the hidden word is 'abbey' and you guess 'babes', the feedback is 'y y g g b': "
            "b and a are in the word elsewhere, the second b and e are right, s is not in the word.\n"
            "Each guess costs -1 reward; the guess that finds the word gives 0 and ends the game. "
            "A reply that is not a single 5-letter word, or a word that is not in the game's word list, "
            "also costs -1 and uses up a guess, without feedback."
        )

    # ------------------------------------------------------------------ rendering

    def _board(self) -> str:
        lines = []
        for n, (guess, result) in enumerate(self._history, start=1):
            lines.append(f"Guess {n}: {' '.join(guess)}")
            lines.append(f"Result:  {' '.join(result)}")
        return "\n".join(lines)

    def _guesses_left(self) -> int:
        return self._require_spec().max_turns - self._turns

    # ------------------------------------------------------------------ the environment contract

    async def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Step:
        """Start an episode. ``options={"answer": word}`` fixes the hidden word (any vocabulary word)."""
        options = dict(options or {})
        rng = random.Random(seed)
        answer = options.pop("answer", None)
        if options:
            raise EnvError(f"unknown reset options {sorted(options)}; WordleEnv accepts only 'answer'")
        if answer is None:
            answer = rng.choice(answer_pool(self._split_of(seed)))
        elif answer not in _vocabulary_set():
            raise EnvError(f"answer {answer!r} is not in the Wordle vocabulary; pass a lower-case listed word")
        self._answer, self._history, self._turns = answer, [], 0
        self._started, self._done = True, False
        text = f"Guess the hidden 5-letter word. You have {self._guesses_left()} guesses."
        return Step(text, 0.0, info={"invalid_action": False})

    async def step(self, action: str) -> Step:
        if not self._started:
            raise EnvError("call reset() before step(): the episode has not started")
        if self._done:
            raise EnvError("the episode has ended; call reset() before stepping again")
        spec = self._require_spec()
        self._turns += 1
        guess = parse_guess(action)
        info: dict[str, Any] = {"invalid_action": guess is None or guess not in _vocabulary_set()}
        terminated = False
        if guess is None:
            reward = spec.invalid_action.penalty
            shown = _shown(action) if isinstance(action, str) else type(action).__name__
            problem = f"'{shown}' is not a guess. "
            problem += "Reply with exactly one 5-letter word and nothing else, e.g. crane."
        elif info["invalid_action"]:
            reward = spec.invalid_action.penalty
            problem = f"'{guess}' is not in the word list. Guess a common 5-letter English word."
        else:
            result = feedback(guess, self._answer)
            self._history.append((guess, result))
            terminated = result == "g" * WORD_LENGTH
            reward = 0.0 if terminated else -1.0
            problem = ""
        if info["invalid_action"]:
            terminated = spec.invalid_action.mode == "terminate"
            problem += " That used up a guess."
        truncated = not terminated and self._turns >= spec.max_turns
        parts = [problem] if problem else []
        if self._history:
            parts.append(self._board())
        if terminated and not info["invalid_action"]:
            parts.append(f"You found the word in {self._turns} guess{'es' if self._turns != 1 else ''}!")
        elif terminated or truncated:
            parts.append(f"Game over. The word was {self._answer}.")
        else:
            left = self._guesses_left()
            parts.append(f"You have {left} guess{'es' if left != 1 else ''} left.")
        if terminated or truncated:
            self._done = True
            info["success"] = terminated and not info["invalid_action"]
        return Step("\n".join(parts), float(reward), terminated, truncated, info)

    # ------------------------------------------------------------------ state for scripted policies

    @property
    def history(self) -> tuple[tuple[str, str], ...]:
        """The valid guesses so far with their feedback strings."""
        return tuple(self._history)

    @property
    def answer(self) -> str:
        """The hidden word (for scripted policies and tests; agents are never shown it)."""
        if not self._started:
            raise EnvError("call reset() first: there is no hidden word yet")
        return self._answer

    def coded_history(self) -> tuple[tuple[str, int], ...]:
        return tuple((guess, _code(result)) for guess, result in self._history)

    def scripted_policies(self) -> dict[str, Policy]:
        return {
            "optimal": optimal_policy,
            "random": random_policy,
            "consistent": consistent_policy,
            "noisy": noisy_policy,
        }


def _wordle(env: Env) -> WordleEnv:
    if not isinstance(env, WordleEnv):
        raise EnvError(f"Wordle policies drive WordleEnv, not {type(env).__name__}")
    return env


def optimal_policy(env: Env, rng: random.Random) -> str:
    """The vocabulary word whose feedback over the answers still possible carries the most information."""
    return best_guess(_wordle(env).coded_history())


def random_policy(env: Env, rng: random.Random) -> str:
    """Any vocabulary word, uniformly at random (ignores the feedback)."""
    _wordle(env)
    return rng.choice(vocabulary())


def consistent_policy(env: Env, rng: random.Random) -> str:
    """A random vocabulary word that is consistent with all the feedback so far."""
    history = _wordle(env).coded_history()
    return vocabulary()[int(rng.choice(_consistent(_vocabulary_array(), history).tolist()))]


def noisy_policy(env: Env, rng: random.Random) -> str:
    """LMRL-Gym's dataset mixture: ``consistent`` with probability ``NOISY_CONSISTENT_PROB``, else ``random``.

    With the default probability its mean return is the ``avg`` (50) point of the normalised score.
    """
    if rng.random() < NOISY_CONSISTENT_PROB:
        return consistent_policy(env, rng)
    return random_policy(env, rng)
