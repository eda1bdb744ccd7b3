"""Special tokens, the sentence cleaner, and the error a bad corpus raises.

The cleaner is the one of the lyricist notebooks (itself the TensorFlow NMT tutorial's
``preprocess_sentence``), widened from ASCII to every alphabet::

    w = w.lower().strip()
    w = re.sub(r"([?.!,¿])", r" \\1 ", w)        # a space around each mark
    w = re.sub(r'[" "]+', " ", w)                # squeeze spaces
    w = re.sub(r"[^a-zA-Z?.!,¿]+", " ", w)       # anything else becomes ONE space
    w = "<start> " + w.strip() + " <end>"

Two consequences worth knowing, both kept on purpose to match the notebooks:

* other characters are replaced by a space, not deleted: ``"can't"`` becomes ``"can t"``
  and ``"@_is"`` becomes ``"is"``;
* digits are not letters: ``"24 hours"`` becomes ``"hours"``.
"""

from __future__ import annotations

import unicodedata

from lstm_sweep.errors import CorpusError  # noqa: F401  (re-exported: data_pipeline.CorpusError)

PAD = "<pad>"  # id 0: right padding, masked out of the loss
UNK = "<unk>"  # id 1: any word outside the vocabulary
START = "<start>"  # id 2: opens every sentence
END = "<end>"  # id 3: closes every sentence

# The punctuation marks that survive cleaning, each as a token of its own.
MARKS = "?.!,¿"


class _CleaningTable(dict):
    """``str.translate`` table built on demand: letter -> itself, mark -> ' mark ', other -> ' '.

    Letters are Unicode categories L* (é, ñ, ß, ð ...) and M* (combining accents, Indic vowel
    signs), so no word is split in the middle. Digits (N*) and '_' (Pc) are not letters.
    Caching each code point's answer keeps the table small and ``translate`` in C.
    """

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        if ch in MARKS:
            value = f" {ch} "
        elif unicodedata.category(ch)[0] in "LM":
            value = ch
        else:
            value = " "
        self[code] = value
        return value


_TABLE = _CleaningTable()


def clean_line(line: str) -> str | None:
    """Clean one raw line into ``"<start> words <end>"``, or ``None`` for a line to drop.

    The steps, in order: lowercase; put a space around each of ``? . ! , ¿``; replace every run
    of other characters (digits, '_', apostrophes, brackets, symbols, whitespace) with a single
    space; strip; wrap in ``<start>`` / ``<end>``. Text is NFC-normalized first so an accent
    typed as a separate combining character gives the same word as the precomposed one.

    A line is dropped (``None``) when nothing is left after cleaning, or when the raw line,
    stripped, ends with ``':'`` -- section labels such as ``"[Chorus:"`` or ``"Verse 1:"``. The
    notebooks drop such lines whole, even a lyric that merely ends in ``"... Chorus:"``; we do too.

    Args:
        line: one raw line of text.

    Returns:
        The cleaned sentence, tokens separated by single spaces, or ``None``.

    Example:
        >>> clean_line("This @_is ;;;sample        sentence.")
        '<start> this is sample sentence . <end>'
        >>> clean_line("¿Qué pasa?")
        '<start> ¿ qué pasa ? <end>'
        >>> clean_line("[Chorus:") is None
        True
    """
    if not isinstance(line, str):
        raise ValueError(f"line={line!r} must be a str")
    if is_section_label(line):
        return None
    words = clean_words(line)
    if not words:
        return None
    return f"{START} {' '.join(words)} {END}"


def clean_words(text: str) -> list[str]:
    """The words of ``text`` by :func:`clean_line`'s character rules, without ``<start>``/``<end>``.

    NFC, lowercase, a space around each of ``? . ! , ¿``, every run of other non-letters to
    one space, split. Nothing is dropped here: the section-label rule is :func:`is_section_label`.

    Example:
        >>> clean_words("Can't stop, WON'T stop!")
        ['can', 't', 'stop', ',', 'won', 't', 'stop', '!']
    """
    stripped = text.strip()
    if not stripped.isascii():
        stripped = unicodedata.normalize("NFC", stripped)
    return stripped.lower().translate(_TABLE).split()


def is_section_label(line: str) -> bool:
    """Whether :func:`clean_line` drops ``line`` whole: blank, or ending in ``':'`` (``"[Chorus:"``)."""
    stripped = line.strip()
    return not stripped or stripped.endswith(":")


def clean_document(text: str) -> list[str]:
    """The words of one classification example (a CSV cell, a .txt file), cleaned as the corpus is.

    Each line is cleaned by :func:`clean_line`'s rules, a section-label line (``"[Chorus:"``)
    is left out, and the lines' words are joined in order: a review or a song is one sequence,
    with no ``<start>``/``<end>`` around it. An empty list means nothing was left.

    Example:
        >>> clean_document("[Chorus:\nHey, Jude!\nDon't make it bad.")
        ['hey', ',', 'jude', '!', 'don', 't', 'make', 'it', 'bad', '.']
    """
    if not isinstance(text, str):
        raise ValueError(f"text={text!r} must be a str")
    return [word for line in text.splitlines() if not is_section_label(line) for word in clean_words(line)]


def has_words(words: list[str]) -> bool:
    """Whether cleaned ``words`` hold a word: marks alone (``? . ! , ¿``) are not one."""
    return any(word not in MARKS for word in words)


def prompt_words(prompt: str) -> list[str]:
    """The cleaned words of a generation prompt (:func:`clean_line`'s rules, no ``<start>``/``<end>``).

    Raises:
        CorpusError: nothing but marks is left (``""``, ``"!!!"``, ``"123"``, ``"[Chorus:"``).

    Example:
        >>> prompt_words("Love, zorg!")
        ['love', ',', 'zorg', '!']
    """
    if not isinstance(prompt, str):
        raise ValueError(f"prompt={prompt!r} must be a str")
    cleaned = clean_line(prompt)
    words = [] if cleaned is None else cleaned.split()[1:-1]  # drop <start> ... <end>
    if not has_words(words):
        raise CorpusError(f"prompt {prompt!r} has no words after cleaning (letters are kept; digits, "
                          "symbols and lines ending in ':' are not): pass a prompt such as \"i love\"")
    return words


def char_prompt_text(prompt: str, clean: bool) -> str:
    """A character model's generation prompt as its corpus was prepared: cleaned
    (:func:`clean_text`) when the corpus was (``data.clean``), else as typed.

    Raises:
        CorpusError: no character is left (an empty prompt; with ``clean``, one of no letters).

    Example:
        >>> char_prompt_text("Hi, 123", clean=False)
        'Hi, 123'
    """
    if not isinstance(prompt, str):
        raise ValueError(f"prompt={prompt!r} must be a str")
    text = clean_text(prompt) if clean else prompt
    if not text:
        rule = " after cleaning (letters are kept; data.clean: false keeps them all)" if clean else ""
        raise CorpusError(f"prompt {prompt!r} has no characters{rule}: pass a prompt such as \"i love\"")
    return text


def text_words(text: str, number: int = 1) -> list[str]:
    """The cleaned words of one text to classify (:func:`clean_document`), the ``number``-th given.

    Raises:
        CorpusError: nothing but marks is left, as :func:`prompt_words` refuses a prompt.

    Example:
        >>> text_words("Hey, Jude!")
        ['hey', ',', 'jude', '!']
    """
    words = clean_document(text)
    if not has_words(words):
        raise CorpusError(f"text {number} ({text[:40]!r}) has no words after cleaning (letters are kept; digits, "
                          "symbols and lines ending in ':' are not): give text with letters")
    return words


def clean_text(text: str) -> str:
    """A character corpus (or prompt) cleaned line by line by :func:`clean_line`'s rules, kept as text.

    Each line becomes its cleaned words joined by single spaces (lowercase, a space around each
    of ``? . ! ,  ¿``, other non-letters to one space); a section-label line (``"[Chorus:"``) or a
    line with nothing left is dropped; the lines are joined by ``"\\n"``. For ``data.clean: true``
    with ``data.tokens: char``.

    Example:
        >>> clean_text("[Chorus:\\nHey, Jude!\\n\\nDon't")
        'hey , jude !\\ndon t'
    """
    if not isinstance(text, str):
        raise ValueError(f"text={text!r} must be a str")
    lines = (" ".join(clean_words(line)) for line in text.splitlines() if not is_section_label(line))
    return "\n".join(line for line in lines if line)
