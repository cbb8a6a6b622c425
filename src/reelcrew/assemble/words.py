"""Words of a caption and when each is spoken: the units karaoke lights up and pop shows one at a time.

English splits on spaces; Chinese goes through jieba's segmenter, so a highlight covers 城市 rather
than 城 then 市. Punctuation rides with the word before it. A word's time is its share of the cue's
span, weighted by its length (characters without spaces or punctuation), the same rule the cue
chunks use.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass
class Word:
    text: str  # as drawn, with the punctuation that follows it and no surrounding spaces
    start: float
    end: float


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # it prints its dictionary loading otherwise
    return jieba


def _is_punct(token: str) -> bool:
    return all(unicodedata.category(ch)[0] in "PSZ" for ch in token)


def split_words(line: str) -> list[str]:
    """The highlight units of one line of text."""
    if not HAN.search(line):
        return line.split()
    words: list[str] = []
    for token in _jieba().lcut(line):
        if not token.strip():
            continue
        if words and _is_punct(token):
            words[-1] += token  # ， and ： stay with the word they follow
        else:
            words.append(token.strip())
    return words


def weight(word: str) -> int:
    return max(1, sum(1 for ch in word if not ch.isspace() and not _is_punct(ch)))


def time_words(lines: list[str], start: float, end: float) -> list[list[Word]]:
    """Words per line, with times that tile the span [start, end] in reading order."""
    split = [split_words(line) for line in lines]
    total = sum(weight(w) for words in split for w in words) or 1
    t, out = start, []
    for words in split:
        timed = []
        for word in words:
            span = (end - start) * weight(word) / total
            timed.append(Word(word, round(t, 3), round(t + span, 3)))
            t += span
        out.append(timed)
    if out and out[-1]:
        out[-1][-1].end = round(end, 3)
    return out
