"""The word vocabulary: token <-> id, built by frequency, saved as JSON.

Ids are fixed for the special tokens and then follow frequency::

    0 <pad>   1 <unk>   2 <start>   3 <end>   4.. words by (-count, word)

Ordering by ``(-count, word)`` makes ties independent of hash order, so the same lines give
the same ids on every machine and every run.

The ids are exactly those of ``keras.layers.TextVectorization(vocabulary=vocab.tokens[2:],
standardize=None, split="whitespace")``, which puts its own ``''`` at 0 and ``'[UNK]'`` at 1:
an exported model can take raw cleaned text through such a layer and see the ids it trained on.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from lstm_sweep import atomic

from .text import END, PAD, START, UNK, CorpusError

SPECIALS = (PAD, UNK, START, END)
PAD_ID, UNK_ID, START_ID, END_ID = range(4)
_JSON_FORMAT = "lstm-sweep-vocabulary"
_JSON_VERSION = 1


class Vocabulary:
    """A fixed list of tokens; a token's id is its index.

    Build one with :meth:`Vocabulary.build` from cleaned lines, or load one with
    :meth:`Vocabulary.from_json`. A word outside the list encodes to ``<unk>`` (id 1).

    Args:
        tokens: the tokens by id; must start with ``<pad>, <unk>, <start>, <end>`` and hold no
            duplicate, no empty string and no whitespace inside a token.

    Example:
        >>> vocab = Vocabulary.build(["<start> la la love <end>", "<start> love me <end>"], 6)
        >>> vocab.tokens
        ['<pad>', '<unk>', '<start>', '<end>', 'la', 'love']
        >>> vocab.encode("<start> love you <end>")
        [2, 5, 1, 3]
        >>> vocab.decode([2, 5, 1, 3, 0, 0])
        '<start> love <unk> <end>'
    """

    kind = "word"  # vocab.json's "kind"; a character vocabulary's is "char" (CharVocabulary)

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tuple(tokens[:4]) != SPECIALS:
            raise ValueError(f"tokens must start with {list(SPECIALS)}, got {tokens[:4]}")
        for token in tokens:
            if not isinstance(token, str) or not token or len(token.split()) != 1 or token != token.strip():
                raise ValueError(f"token {token!r} must be a non-empty str without whitespace")
        if len(set(tokens)) != len(tokens):
            duplicates = sorted({t for t in tokens if tokens.count(t) > 1})
            raise ValueError(f"tokens must be unique, these repeat: {duplicates[:5]}")
        self.tokens: list[str] = tokens
        self._ids: dict[str, int] = {token: i for i, token in enumerate(tokens)}

    @classmethod
    def build(cls, lines: Iterable[str], vocab_size: int) -> Vocabulary:
        """Keep the ``vocab_size - 4`` most frequent words of ``lines`` after the 4 special tokens.

        Args:
            lines: cleaned sentences (see :func:`clean_line`); tokens split on whitespace.
                ``<start>``, ``<end>``, ``<pad>`` and ``<unk>`` in them are not counted: they
                have fixed ids.
            vocab_size: the most ids, the 4 special tokens included; >= 4. The vocabulary is
                smaller when the lines hold fewer distinct words.

        Example:
            >>> len(Vocabulary.build(["<start> a b c d e <end>"], vocab_size=6))
            6
        """
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 4:
            raise ValueError(f"vocab_size={vocab_size!r} must be an int >= 4 "
                             f"(the 4 special tokens {list(SPECIALS)} included)")
        if isinstance(lines, str):
            raise ValueError("lines must be an iterable of sentences, not one str")
        counts = Counter(token for line in lines for token in line.split())
        for special in SPECIALS:
            counts.pop(special, None)
        words = sorted(counts, key=lambda w: (-counts[w], w))[: vocab_size - len(SPECIALS)]
        return cls([*SPECIALS, *words])

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens: {' '.join(self.tokens[4:9])} ...)"

    def id_of(self, token: str) -> int:
        """The id of ``token``; 1 (``<unk>``) for a token outside the vocabulary."""
        return self._ids.get(token, UNK_ID)

    def encode(self, line: str) -> list[int]:
        """Ids of the whitespace-separated tokens of ``line`` (a cleaned sentence); no padding."""
        if not isinstance(line, str):
            raise ValueError(f"line={line!r} must be a str")
        ids = self._ids
        return [ids.get(token, UNK_ID) for token in line.split()]

    def decode(self, ids: Iterable[int]) -> str:
        """Tokens of ``ids`` joined by spaces, padding (id 0) skipped."""
        return " ".join(_tokens_of(self.tokens, ids))

    def to_json(self, path: str | Path) -> None:
        """Write the tokens to ``path`` as JSON, atomically (:mod:`lstm_sweep.atomic`).

        Example:
            >>> vocab.to_json("export/vocab.json")  # doctest: +SKIP
            >>> Vocabulary.from_json("export/vocab.json") == vocab  # doctest: +SKIP
            True
        """
        text = json.dumps({"format": _JSON_FORMAT, "version": _JSON_VERSION, "tokens": self.tokens},
                          ensure_ascii=False, indent=0)
        atomic.write_text(path, text)  # mode 0644 as a rule: a model server of another user reads it

    @classmethod
    def from_json(cls, path: str | Path) -> Vocabulary:
        """Load a vocabulary written by :meth:`to_json`.

        A character vocabulary's file (``"kind": "char"``) loads as a :class:`CharVocabulary`.

        Raises:
            CorpusError: the file is missing or is not a vocabulary written by ``to_json``.
        """
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("format") != _JSON_FORMAT or raw.get("version") != _JSON_VERSION:
                raise ValueError(f"format/version is {raw.get('format')!r}/{raw.get('version')!r}")
            if raw.get("kind", "word") == CharVocabulary.kind:  # a character model's (tokens: char)
                return CharVocabulary(raw["tokens"], clean=raw.get("clean", False))
            return cls(raw["tokens"])
        except (OSError, ValueError, KeyError, AttributeError, TypeError) as e:
            raise CorpusError(f"cannot load the vocabulary {path}: {e}: "
                              "pass the vocab.json written next to the exported model") from None


CHAR_SPECIALS = (PAD, UNK)  # a character vocabulary has no sentences: no <start>, no <end>


class CharVocabulary(Vocabulary):
    """A fixed list of characters after ``<pad>`` (0) and ``<unk>`` (1); a character's id is its index.

    Build one with :meth:`CharVocabulary.build` from text; :meth:`Vocabulary.from_json` loads
    one back (its JSON says ``"kind": "char"``). ``clean`` records whether the text was cleaned
    (:func:`data_pipeline.text.clean_words`' rules) before it was split into characters, so a
    prompt is prepared as the corpus was (:func:`data_pipeline.text.char_prompt_text`). Any
    character is a token, the space and the newline included.

    Example:
        >>> vocab = CharVocabulary.build("hello\\nhi", vocab_size=6)
        >>> vocab.tokens
        ['<pad>', '<unk>', 'h', 'l', '\\n', 'e']
        >>> vocab.encode("hex")
        [2, 5, 1]
        >>> vocab.decode([2, 5, 1, 0])
        'he<unk>'
    """

    kind = "char"

    def __init__(self, tokens: Sequence[str], clean: bool = False) -> None:
        tokens = list(tokens)
        if tuple(tokens[:2]) != CHAR_SPECIALS:
            raise ValueError(f"tokens must start with {list(CHAR_SPECIALS)}, got {tokens[:2]}")
        for token in tokens[2:]:
            if not isinstance(token, str) or len(token) != 1:
                raise ValueError(f"token {token!r} must be one character")
        if len(set(tokens)) != len(tokens):
            raise ValueError(f"tokens must be unique, these repeat: {sorted({t for t in tokens if tokens.count(t) > 1})[:5]}")
        if not isinstance(clean, bool):
            raise ValueError(f"clean={clean!r} must be true or false")
        self.tokens = tokens
        self.clean = clean
        self._ids = {token: i for i, token in enumerate(tokens)}

    @classmethod
    def build(cls, text: str, vocab_size: int, clean: bool = False) -> CharVocabulary:  # type: ignore[override]
        """Keep the ``vocab_size - 2`` most frequent characters of ``text`` (ties by code point).

        Example:
            >>> len(CharVocabulary.build("abcabd", vocab_size=4))
            4
        """
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 3:
            raise ValueError(f"vocab_size={vocab_size!r} must be an int >= 3 (<pad>, <unk> and one character)")
        if not isinstance(text, str):
            raise ValueError("text must be one str")
        counts = Counter(text)
        chars = sorted(counts, key=lambda c: (-counts[c], c))[: vocab_size - len(CHAR_SPECIALS)]
        return cls([*CHAR_SPECIALS, *chars], clean=clean)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocabulary) and self.tokens == other.tokens and self.clean == other.clean

    def __repr__(self) -> str:
        return f"CharVocabulary({len(self)} characters: {''.join(self.tokens[2:12])!r} ...)"

    def encode(self, text: str) -> list[int]:
        """Ids of the characters of ``text``; a character outside the vocabulary is 1 (``<unk>``)."""
        if not isinstance(text, str):
            raise ValueError(f"text={text!r} must be a str")
        ids = self._ids
        return [ids.get(ch, UNK_ID) for ch in text]

    def decode(self, ids: Iterable[int]) -> str:
        """The characters of ``ids`` joined (no separator), padding (id 0) skipped."""
        return "".join(_tokens_of(self.tokens, ids))

    def to_json(self, path: str | Path) -> None:
        text = json.dumps({"format": _JSON_FORMAT, "version": _JSON_VERSION, "kind": self.kind, "clean": self.clean,
                           "tokens": self.tokens}, ensure_ascii=False, indent=0)
        atomic.write_text(path, text)


def _tokens_of(tokens, ids: Iterable[int]) -> list[str]:
    """The tokens of ``ids``, padding (id 0) skipped; an id outside ``tokens`` is a ValueError."""
    out = []
    for i in ids:
        i = int(i)
        if not 0 <= i < len(tokens):
            raise ValueError(f"id {i} is outside the vocabulary [0, {len(tokens)})")
        if i != PAD_ID:
            out.append(tokens[i])
    return out
