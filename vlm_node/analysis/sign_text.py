"""What OCR's text on a sign says: a number with its unit, a word such as STOP, or letters.

PP-OCR returns strings with scores; a sign legend is short and the recogniser confuses digits
and letters in known ways ("1O0", "S0"). These rules turn its strings into what a sign reader
may publish: a number only when it parses whole and is a value the sign class can carry
(`vocab.VALUE_RULES`, so a speed of 7 or 1000 is a misreading and is dropped), a word up to
one error, and "letters" when the legend is words, not a misread number. Pure functions on
strings: the crops, the recogniser and the sign logic stay in `ocr_backend`.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from vlm_node import vocab


@dataclass(frozen=True, slots=True)
class TextRead:
    """One recogniser output for one crop."""

    text: str
    score: float


# Letters PP-OCR returns for digits on signs, used only next to real digits ("1O0" -> "100").
_DIGIT_CONFUSIONS = str.maketrans({"O": "0", "o": "0", "D": "0", "Q": "0", "U": "0",
                                   "I": "1", "l": "1", "i": "1", "|": "1", "!": "1",
                                   "S": "5", "s": "5", "B": "8", "Z": "2", "z": "2"})
_NUMBER = re.compile(r"^(?P<num>[0-9OoDQUIli|!SsBZz]{1,4}(?:[.,][0-9OoDQUIli|SsBZz])?)"
                     r"(?P<unit>km/?h|kmh|mph|t|m)?$", re.IGNORECASE)


LETTERS_SCORE = 0.6
"""Recogniser score from which letters read on a legend contradict a number (`reads_letters`).
On the development photos (GTSDB 00000-00599, Kaggle road0-437) no right speed value had its
legend read as letters at >= 0.6 (one 17 px 80 read "ac" at 0.52); a "C" on a protester's card,
which the classifier took for a 100, read at 0.88."""


def reads_letters(reads: Sequence[TextRead]) -> bool:
    """Whether the recogniser read a legend as words, not a number: its best read has no digit,
    holds a letter that PP-OCR does not return for a digit (`_DIGIT_CONFUSIONS`), and scores
    >= LETTERS_SCORE. A classifier's value on such a legend has two readers against each
    other, like a different number, and is dropped."""
    best = max(reads, key=lambda r: r.score, default=None)
    if best is None or best.score < LETTERS_SCORE:
        return False
    text = best.text.strip()
    return (not any(c.isdigit() for c in text)
            and any(c.isalpha() for c in text.translate(_DIGIT_CONFUSIONS)))


def digit_count(text: str) -> int:
    """How many digits a recognised text holds, letters PP-OCR returns for digits included:
    what a legend's counted glyphs are checked against."""
    return len(re.sub(r"\D", "", text.translate(_DIGIT_CONFUSIONS)))


@dataclass(frozen=True, slots=True)
class ParsedNumber:
    value: float
    unit: str  # "", "km/h", "mph", "t" or "m" as printed on the sign


def parse_number(text: str) -> ParsedNumber | None:
    """The number (and printed unit) in a legend's text, tolerating OCR confusions in digit
    context; None when the text is not a number. "1O0" -> 100, "7.5t" -> 7.5 t, "STOP" -> None.
    """
    t = re.sub(r"\s+", "", text).strip(".,:;-_'\"`()[]{}（）【】|")
    m = _NUMBER.match(t)
    if not m:
        return None
    raw = m.group("num")
    if not any(ch.isdigit() for ch in raw):
        return None  # letters alone are words, not misread digits
    digits = raw.translate(_DIGIT_CONFUSIONS).replace(",", ".")
    try:
        value = float(digits)
    except ValueError:
        return None
    if "." not in digits and len(digits) > 1 and digits.startswith("0"):
        return None  # "05" is not how a sign prints a number
    unit = (m.group("unit") or "").lower()
    unit = {"kmh": "km/h", "km/h": "km/h", "kmh/": "km/h"}.get(unit, unit)
    return ParsedNumber(value, unit)


def plausible(sign_class: str, value: float, unit: str) -> bool:
    """Whether `value` in `unit` can be on a `sign_class` sign (vocab.VALUE_RULES); speeds
    must also be a multiple of vocab.SPEED_STEP."""
    rule = vocab.VALUE_RULES.get(sign_class)
    if rule is None:
        return False
    units, lo, hi = rule
    if unit not in units or not lo <= value <= hi:
        return False
    if unit in ("km/h", "mph"):
        return float(value).is_integer() and value % vocab.SPEED_STEP == 0
    return True


def letters(text: str) -> str:
    """Upper-case letters of `text`, with the digits OCR puts in words mapped back."""
    return re.sub(r"[^A-Z]", "", text.upper().translate(str.maketrans("0518", "OSIB")))


def _near(word: str, target: str) -> bool:
    """`word` equals `target` up to one substitution, insertion or deletion."""
    if word == target:
        return True
    if abs(len(word) - len(target)) > 1:
        return False
    if len(word) == len(target):
        return sum(a != b for a, b in zip(word, target)) <= 1
    short, long_ = sorted((word, target), key=len)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def says(text: str, target: str) -> bool:
    """Whether OCR `text` contains the word `target` (e.g. STOP), allowing one error."""
    word = letters(text)
    if target in word:
        return True
    n = len(target)
    return any(_near(word[i:i + k], target) for k in (n - 1, n, n + 1)
               for i in range(0, max(1, len(word) - k + 1)))
