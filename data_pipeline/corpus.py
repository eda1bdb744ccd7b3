"""Reading a corpus: a folder of ``.txt`` files (searched recursively) or one text file.

One sentence per line, as in the lyricist notebooks. The files are read in sorted path order so
the same folder always gives the same lines in the same order, on every machine.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .text import CorpusError

# A NUL byte in the first 8 KiB marks a binary file (the heuristic of git and grep).
_BINARY_SNIFF_BYTES = 8192
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def read_lines(path: str | Path) -> list[str]:
    """Read every line of a corpus, raw (not cleaned), in a reproducible order.

    ``path`` is a folder or a single file. In a folder, every ``*.txt`` under it, recursively,
    is read in sorted order of its path relative to the folder; hidden files and folders (a name
    starting with ``'.'``, such as ``.ipynb_checkpoints`` or ``.git``) are skipped. A single file
    is read whatever its extension: the user named it.

    Files are decoded as UTF-8 (a byte-order mark is dropped; a UTF-16 file with a byte-order
    mark is decoded as UTF-16). A file that is not valid UTF-8 is read with undecodable bytes
    replaced by U+FFFD, and a ``UserWarning`` names it. A binary file (a NUL byte in its first
    8 KiB) is skipped, and a ``UserWarning`` names it. Lines are split as by
    ``str.splitlines`` (``\\n``, ``\\r\\n``, ``\\r`` ...); blank lines are kept, the cleaner
    drops them.

    Args:
        path: a folder of ``.txt`` files, or one text file.

    Returns:
        The lines, without their line endings.

    Raises:
        CorpusError: the path does not exist, the folder holds no ``.txt`` file, or every file
            is binary or blank.

    Example:
        >>> lines = read_lines("data/lyrics")  # doctest: +SKIP
        >>> lines[:2]  # doctest: +SKIP
        ['Looking for some education', 'Made my way into the night']
    """
    lines: list[str] = []
    for _, data, file in corpus_files(path):
        lines.extend(decode_file(data, file).splitlines())
    if not any(line.strip() for line in lines):
        raise CorpusError(f"every file under {path} is blank or binary: "
                          "pass --data DIR with .txt files of text, one sentence per line")
    return lines


def corpus_files(path: str | Path) -> list[tuple[str, bytes, Path]]:
    """``(relative name, bytes, path)`` of each text file of a corpus, sorted, binaries skipped.

    This is what :func:`read_lines` reads and what the cache fingerprint hashes, so both always
    agree on which files make the corpus.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise CorpusError(f"data folder {root} does not exist: "
                          "pass --data DIR with .txt files, or --data builtin")
    if root.is_file():
        named = [(root.name, root)]
    elif root.is_dir():
        named = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*.txt")
                       if p.is_file() and not _is_hidden(p.relative_to(root)))
        if not named:
            raise CorpusError(f"data folder {root} holds no .txt files: "
                              "put one sentence per line in .txt files there, or pass --data builtin")
    else:
        raise CorpusError(f"data path {root} is neither a file nor a folder: "
                          "pass --data DIR with .txt files, or --data builtin")

    files = []
    for name, file in named:
        try:
            data = file.read_bytes()
        except OSError as e:
            raise CorpusError(f"cannot read {file}: {e.strerror or e}: "
                              "check its permissions, or move it out of the data folder") from None
        if b"\x00" in data[:_BINARY_SNIFF_BYTES] and not data.startswith(_UTF16_BOMS):
            warnings.warn(f"skipping binary file {file} (NUL bytes): it is not text",
                          UserWarning, stacklevel=3)
            continue
        files.append((name, data, file))
    if not files:
        raise CorpusError(f"every file under {root} is binary: "
                          "pass --data DIR with .txt files of text, one sentence per line")
    return files


def decode_file(data: bytes, file: Path) -> str:
    """Decode one file's bytes as UTF-8 (UTF-16 if it starts with its BOM), warning on bad bytes."""
    encoding = "utf-16" if data.startswith(_UTF16_BOMS) else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        warnings.warn(f"{file} is not valid {encoding.removesuffix('-sig').upper()} "
                      f"(first bad byte at offset {e.start}): undecodable bytes read as U+FFFD; "
                      "re-save it as UTF-8 to keep them", UserWarning, stacklevel=3)
        return data.decode(encoding, errors="replace")


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)
