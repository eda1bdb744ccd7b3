"""data_pipeline: cleaning, reading, vocabulary, prepare() and its cache, lm_dataset, the built-in corpus.

Real files in tmp_path, no mocks. The one slow test reads the real lyrics corpus if it is there.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest

from lstm_sweep.data_pipeline import (END, PAD, START, UNK, CorpusError, DataSettings, PreparedData, Vocabulary,
                           clean_line, lm_dataset, prepare, read_lines, synthetic_lines)


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def letters(i: int) -> str:
    """A word made of letters for each number (digits would be cleaned away): 0 -> 'a', 27 -> 'bb'."""
    return letters(i // 26 - 1) + chr(97 + i % 26) if i >= 26 else chr(97 + i)


def corpus(folder: Path, n: int = 200) -> Path:
    """A small folder corpus: n lines of 2-9 words (4-11 tokens) over a 20-word vocabulary."""
    words = [f"w{letters(i)}" for i in range(20)]
    lines = [" ".join(words[(i * 7 + j) % 20] for j in range(2 + i % 8)) for i in range(n)]
    write(folder, "a.txt", "\n".join(lines[: n // 2]) + "\n")
    write(folder, "sub/b.txt", "\n".join(lines[n // 2:]) + "\n")
    return folder


# ---------------------------------------------------------------- clean_line

@pytest.mark.parametrize("raw, cleaned", [
    ("This @_is ;;;sample        sentence.", "<start> this is sample sentence . <end>"),
    ("¿Qué pasa?", "<start> ¿ qué pasa ? <end>"),
    ("24 hours, 7 days", "<start> hours , days <end>"),  # digits are not letters
    ("HELLO     World\t!", "<start> hello world ! <end>"),  # lowered, spaces squeezed
    ("Can't stop", "<start> can t stop <end>"),  # other characters become a space, as in the notebooks
    ("Oh...", "<start> oh . . . <end>"),
    ("  Señor Straße  ", "<start> señor straße <end>"),
    ("cafe\u0301 = café", "<start> café café <end>"),  # NFC: a combining accent is the same word
    ("I said: go", "<start> i said go <end>"),  # ':' inside a line is dropped, the line kept
])
def test_clean_line(raw, cleaned):
    assert clean_line(raw) == cleaned


@pytest.mark.parametrize("raw", ["", "   ", "123 ###", "[Chorus:", "Verse 1:", "  Bridge:  ",
                                 "Help, help oh oh. Chorus:"])
def test_clean_line_drops(raw):
    assert clean_line(raw) is None


def test_clean_line_rejects_non_str():
    with pytest.raises(ValueError, match="must be a str"):
        clean_line(None)


# ---------------------------------------------------------------- Vocabulary

def test_vocabulary_ids_follow_count_then_token():
    vocab = Vocabulary.build(["<start> b a c a <end>", "<start> c b a <end>", "<start> d <end>"], 100)
    assert vocab.tokens == [PAD, UNK, START, END, "a", "b", "c", "d"]  # a:3, b:2 c:2 tie -> b first
    assert [vocab.id_of(t) for t in (PAD, UNK, START, END)] == [0, 1, 2, 3]


def test_vocabulary_cap_and_unknown():
    lines = ["<start> the the the cat cat dog <end>"] * 3
    vocab = Vocabulary.build(lines, vocab_size=6)
    assert len(vocab) == 6 and vocab.tokens[4:] == ["the", "cat"]
    assert vocab.id_of("dog") == 1 and vocab.id_of("never-seen") == 1
    assert vocab.encode("<start> the dog <end>") == [2, 4, 1, 3]
    assert vocab.decode([2, 4, 1, 3, 0, 0]) == "<start> the <unk> <end>"


def test_vocabulary_json_round_trip(tmp_path):
    lines = ["<start> ¿ qué pasa ? <end>", "<start> love me tender <end>"]
    vocab = Vocabulary.build(lines, 50)
    vocab.to_json(tmp_path / "export" / "vocab.json")
    loaded = Vocabulary.from_json(tmp_path / "export" / "vocab.json")
    assert loaded == vocab and loaded.tokens == vocab.tokens
    assert [p.name for p in (tmp_path / "export").iterdir()] == ["vocab.json"]  # no temp file left
    for line in lines:
        assert loaded.decode(loaded.encode(line)) == line


def test_vocabulary_rejects_bad_input(tmp_path):
    for size in (3, 0, True, 7.0):
        with pytest.raises(ValueError, match="vocab_size"):
            Vocabulary.build(["<start> a <end>"], size)
    with pytest.raises(ValueError, match="must start with"):
        Vocabulary(["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="unique"):
        Vocabulary([PAD, UNK, START, END, "a", "a"])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        Vocabulary.build(["<start> a <end>"], 10).decode([99])
    write(tmp_path, "bad.json", "{not json")
    with pytest.raises(CorpusError, match="bad.json"):
        Vocabulary.from_json(tmp_path / "bad.json")
    with pytest.raises(CorpusError, match="missing.json"):
        Vocabulary.from_json(tmp_path / "missing.json")


def test_vocabulary_ids_match_keras_text_vectorization():
    import keras

    lines = [clean_line(line) for line in synthetic_lines(300, seed=3)]
    vocab = Vocabulary.build([line for line in lines if line], vocab_size=120)
    layer = keras.layers.TextVectorization(vocabulary=vocab.tokens[2:], standardize=None,
                                           split="whitespace")
    assert layer.get_vocabulary()[2:] == vocab.tokens[2:]
    text = "<start> when the rain falls , i zzzunknown you <end>"
    assert np.asarray(layer([text]))[0].tolist() == vocab.encode(text)


# ---------------------------------------------------------------- read_lines

def test_read_lines_recursive_in_sorted_order(tmp_path):
    write(tmp_path, "b.txt", "b1\nb2\n")
    write(tmp_path, "a/z.txt", "az1\r\naz2\r\n")  # CRLF
    write(tmp_path, "a/b/c.txt", "abc1")  # no final newline
    write(tmp_path, "notes.md", "not read")
    write(tmp_path, ".ipynb_checkpoints/b-checkpoint.txt", "hidden")
    assert read_lines(tmp_path) == ["abc1", "az1", "az2", "b1", "b2"]
    assert read_lines(tmp_path / "b.txt") == ["b1", "b2"]  # a single file is accepted


def test_read_lines_replaces_bad_utf8_with_a_warning(tmp_path):
    write(tmp_path, "good.txt", "fine\n")
    write(tmp_path, "latin1.txt", "caf\xe9 au lait\n".encode("latin-1"))
    with pytest.warns(UserWarning, match="latin1.txt"):
        lines = read_lines(tmp_path)
    assert lines == ["fine", "caf\ufffd au lait"]


def test_read_lines_skips_binary_with_a_warning(tmp_path):
    write(tmp_path, "text.txt", "words\n")
    write(tmp_path, "blob.txt", b"\x89PNG\x00\x00\x01binary")
    with pytest.warns(UserWarning, match="blob.txt"):
        assert read_lines(tmp_path) == ["words"]


def test_read_lines_user_errors(tmp_path):
    with pytest.raises(CorpusError, match="does not exist.*--data"):
        read_lines(tmp_path / "nope")
    with pytest.raises(CorpusError, match="no .txt files"):
        read_lines(tmp_path)
    write(tmp_path, "empty.txt", "\n  \n")
    with pytest.raises(CorpusError, match="blank or binary"):
        read_lines(tmp_path)
    write(tmp_path, "empty.txt", b"\x00\x01")
    with pytest.warns(UserWarning), pytest.raises(CorpusError, match="binary"):
        read_lines(tmp_path)


# ---------------------------------------------------------------- DataSettings

@pytest.mark.parametrize("field, value", [
    ("path", ""), ("vocab_size", 3), ("vocab_size", 7000.0), ("max_tokens", 2), ("seed", -1),
    ("val_fraction", 0), ("val_fraction", 1.0), ("val_fraction", float("nan")), ("builtin_lines", 0),
    ("max_tokens", True),
])
def test_data_settings_reject_bad_fields(field, value):
    with pytest.raises(ValueError, match=field):
        DataSettings(**{field: value})


def test_data_settings_accept_paths_and_numpy_ints(tmp_path):
    s = DataSettings(path=tmp_path, vocab_size=np.int64(100))
    assert s.path == str(tmp_path) and type(s.vocab_size) is int


# ---------------------------------------------------------------- prepare

def test_prepare_builds_padded_arrays_and_stats(tmp_path):
    data = prepare(DataSettings(path=str(corpus(tmp_path / "c")), max_tokens=12, vocab_size=30),
                   cache_dir=tmp_path / "cache")
    assert isinstance(data, PreparedData)
    s = data.stats
    assert (s["raw_lines"], s["cleaned_lines"], s["kept"], s["dropped_too_long"]) == (200, 200, 200, 0)
    assert (s["train"], s["val"]) == (160, 40) and s["from_cache"] is False
    for rows in (data.train, data.val):
        assert rows.dtype == np.int32 and rows.shape[1] == 12
        assert (rows[:, 0] == 2).all()  # every row opens with <start>
        lengths = (rows != 0).sum(axis=1)
        assert (rows[np.arange(len(rows)), lengths - 1] == 3).all()  # ... and closes with <end>
        assert all((row[n:] == 0).all() for row, n in zip(rows, lengths))  # right-padded
    assert len(data.vocab) == 24 and s["vocab_size"] == 24  # 20 words + 4 specials


def test_prepare_length_filter_counts(tmp_path):
    # 2, 3, ..., 9 words -> 4..11 tokens; max_tokens=7 keeps 2..5 words
    write(tmp_path / "c", "x.txt", "\n".join(" ".join(["la"] * n) for n in range(2, 10)) + "\n[Chorus:\n\n")
    s = prepare(DataSettings(path=str(tmp_path / "c"), max_tokens=7, val_fraction=0.25),
                cache_dir=tmp_path / "cache").stats
    assert (s["raw_lines"], s["dropped_by_cleaning"], s["cleaned_lines"]) == (10, 2, 8)
    assert (s["kept"], s["dropped_too_long"], s["train"], s["val"]) == (4, 4, 3, 1)


def test_prepare_every_line_too_long(tmp_path):
    write(tmp_path / "c", "x.txt", "one two\nthree four five\n")
    with pytest.raises(CorpusError, match="longer than max_tokens=3.*raise data.max_tokens"):
        prepare(DataSettings(path=str(tmp_path / "c"), max_tokens=3), cache_dir=tmp_path / "cache")


def test_prepare_too_few_sentences_to_split(tmp_path):
    write(tmp_path / "c", "x.txt", "only one line\n")
    with pytest.raises(CorpusError, match="val_fraction"):
        prepare(DataSettings(path=str(tmp_path / "c")), cache_dir=tmp_path / "cache")


def test_prepare_split_is_seeded(tmp_path):
    folder = str(corpus(tmp_path / "c"))
    a = prepare(DataSettings(path=folder, seed=1), cache_dir=tmp_path / "a")
    b = prepare(DataSettings(path=folder, seed=1), cache_dir=tmp_path / "b")
    c = prepare(DataSettings(path=folder, seed=2), cache_dir=tmp_path / "a")
    assert np.array_equal(a.train, b.train) and np.array_equal(a.val, b.val) and a.vocab == b.vocab
    assert not np.array_equal(a.val, c.val)
    assert sorted(map(a.vocab.decode, [*a.train, *a.val])) == sorted(map(c.vocab.decode, [*c.train, *c.val]))


def test_prepare_vocabulary_from_train_only(tmp_path):
    # every line has a word of its own: those of validation lines must be <unk>
    write(tmp_path / "c", "x.txt", "\n".join(f"common word{letters(i)}" for i in range(100)) + "\n")
    data = prepare(DataSettings(path=str(tmp_path / "c")), cache_dir=tmp_path / "cache")
    assert len(data.vocab) == 4 + 1 + 80
    assert (data.val[:, 2] == 1).all() and (data.train[:, 2] != 1).all()
    assert data.stats["unk_rate_val"] == 0.5  # "common" known, "wordN" unknown


def test_prepare_cache_hit_and_invalidation(tmp_path, caplog):
    folder, cache = corpus(tmp_path / "c"), tmp_path / "cache"
    settings = DataSettings(path=str(folder))
    first = prepare(settings, cache_dir=cache)
    (file,) = cache.glob("*.npz")
    assert file.name == f"{first.fingerprint[:16]}.npz"
    mtime = file.stat().st_mtime_ns

    with caplog.at_level(logging.INFO, logger="lstm_sweep.data"):
        second = prepare(settings, cache_dir=cache)
    assert second.stats["from_cache"] is True and file.stat().st_mtime_ns == mtime
    assert "loaded from cache" in caplog.text
    assert np.array_equal(first.train, second.train) and first.vocab == second.vocab
    assert {k: v for k, v in first.stats.items() if k not in ("from_cache", "seconds")} == \
           {k: v for k, v in second.stats.items() if k not in ("from_cache", "seconds")}

    moved = folder.rename(tmp_path / "moved")  # the fingerprint is the content, not the path
    assert prepare(DataSettings(path=str(moved)), cache_dir=cache).stats["from_cache"] is True

    changed = prepare(DataSettings(path=str(moved), max_tokens=10), cache_dir=cache)
    assert changed.stats["from_cache"] is False and changed.fingerprint != first.fingerprint
    write(moved, "sub/b.txt", "a brand new line\n")
    edited = prepare(DataSettings(path=str(moved)), cache_dir=cache)
    assert edited.stats["from_cache"] is False and edited.fingerprint != first.fingerprint
    assert len(list(cache.glob("*.npz"))) == 3 and not list(cache.glob("*.tmp"))


def test_prepare_rebuilds_a_corrupt_cache(tmp_path):
    settings, cache = DataSettings(path=str(corpus(tmp_path / "c"))), tmp_path / "cache"
    first = prepare(settings, cache_dir=cache)
    (file,) = cache.glob("*.npz")
    file.write_bytes(file.read_bytes()[:100])  # a torn file, as a crash mid-write would leave
    rebuilt = prepare(settings, cache_dir=cache)
    assert rebuilt.stats["from_cache"] is False and np.array_equal(rebuilt.train, first.train)
    assert prepare(settings, cache_dir=cache).stats["from_cache"] is True


def test_prepare_default_cache_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTM_SWEEP_CACHE", str(tmp_path / "env-cache"))
    data = prepare(DataSettings(builtin_lines=500))
    assert (tmp_path / "env-cache" / f"{data.fingerprint[:16]}.npz").is_file()


def test_prepare_builtin(tmp_path):
    data = prepare(DataSettings(builtin_lines=3000, vocab_size=7000), cache_dir=tmp_path)
    s = data.stats
    assert s["raw_lines"] == 3000 and s["dropped_by_cleaning"] > 0 and s["dropped_too_long"] > 0
    assert 0.7 < s["kept_share"] < 0.97 and s["unk_rate_val"] < 0.01
    assert 250 < len(data.vocab) < 600
    other_seed = prepare(DataSettings(builtin_lines=3000, seed=5), cache_dir=tmp_path)
    assert other_seed.stats["kept"] == s["kept"]  # same corpus, only the split moves


# ---------------------------------------------------------------- lm_dataset

def test_lm_dataset_shifts_and_trims():
    rows = np.array([[2, 5, 6, 7, 3, 0], [2, 8, 3, 0, 0, 0], [2, 9, 3, 0, 0, 0]], np.int32)
    batches = [(s.numpy(), t.numpy()) for s, t in lm_dataset(rows, batch_size=2, shuffle=False)]
    (s1, t1), (s2, t2) = batches
    assert s1.tolist() == [[2, 5, 6, 7], [2, 8, 3, 0]] and t1.tolist() == [[5, 6, 7, 3], [8, 3, 0, 0]]
    assert s2.tolist() == [[2, 9]] and t2.tolist() == [[9, 3]]  # cut to its own longest sentence
    assert s1.dtype == t1.dtype == np.int32


def test_lm_dataset_on_prepared_data(tmp_path):
    data = prepare(DataSettings(builtin_lines=1500, max_tokens=15), cache_dir=tmp_path)
    ds = lm_dataset(data.train, batch_size=64, shuffle=True, seed=3)
    seen, widths = [], []
    for source, target in ds:
        source, target = source.numpy(), target.numpy()
        assert source.shape == target.shape and source.shape[1] <= 14
        assert np.array_equal(source[:, 1:], target[:, :-1])  # target = source shifted by one
        widths.append(source.shape[1])
        whole = np.concatenate([source[:, :1], target], axis=1)  # the sentences, padding cut short
        seen.extend(tuple(row[row != 0]) for row in whole)
    assert sorted(seen) == sorted(tuple(row[row != 0]) for row in data.train)  # each once an epoch
    assert len(set(widths)) > 1

    def first_batch(ds):
        return next(iter(ds))[0].numpy().tolist()

    fresh = lm_dataset(data.train, 64, seed=3)
    epoch1, epoch2 = first_batch(fresh), first_batch(fresh)
    assert epoch1 == first_batch(lm_dataset(data.train, 64, seed=3))  # the same seed, the same order
    assert epoch1 != epoch2  # ... reshuffled each epoch
    assert epoch1 != first_batch(lm_dataset(data.train, 64, seed=4))
    sizes = [len(s) for s, _ in lm_dataset(data.train, 500, drop_remainder=True)]
    assert sizes == [500] * (len(data.train) // 500)


def test_lm_dataset_buckets_hold_one_length_and_every_sentence_once(tmp_path):
    data = prepare(DataSettings(builtin_lines=1500, max_tokens=15), cache_dir=tmp_path)
    seen, lengths = [], set()
    for source, target in lm_dataset(data.train, batch_size=32, shuffle=True, seed=3, buckets=True):
        source, target = source.numpy(), target.numpy()
        assert len(source) <= 32 and (target != 0).all()  # not one padded position
        lengths.add(source.shape[1])
        seen.extend(tuple(np.concatenate([s[:1], t])) for s, t in zip(source, target))
    assert sorted(seen) == sorted(tuple(row[row != 0]) for row in data.train)
    assert len(lengths) > 5

    def batches(seed):
        return [s.numpy().tolist() for s, _ in lm_dataset(data.train, 32, seed=seed, buckets=True).take(3)]

    assert batches(3) == batches(3) != batches(4)  # seeded like the unbucketed order


@pytest.mark.parametrize("buckets", [False, True])
@pytest.mark.parametrize("batch_size, drop_remainder", [(1, False), (32, False), (32, True), (5000, False)])
def test_lm_dataset_declares_the_batches_every_pass_yields(tmp_path, buckets, batch_size, drop_remainder):
    # Keras reads the declared count as an epoch's steps: a wrong one would cut epochs short or fail.
    data = prepare(DataSettings(builtin_lines=1500, max_tokens=15), cache_dir=tmp_path)
    ds = lm_dataset(data.train, batch_size, shuffle=True, seed=1, drop_remainder=drop_remainder, buckets=buckets)
    for _ in range(2):  # a second pass reshuffles: same count
        assert sum(1 for _ in ds) == int(ds.cardinality()) > 0


def test_classify_dataset_declares_its_batches():
    from lstm_sweep.data_pipeline import classify_dataset

    ds = classify_dataset(np.arange(70).reshape(35, 2), np.arange(35) % 2, batch_size=8, shuffle=True, seed=2)
    assert int(ds.cardinality()) == sum(1 for _ in ds) == 5


@pytest.mark.parametrize("make", ["lm", "classify"])
def test_a_trials_datasets_delete_their_iterators_at_once(make):
    # With tf.data's autotuning on, deleting the iterator at the end of Keras's fit took 3-5 s
    # on one core, which a reused worker's next trial waited for (data_pipeline.batching).
    from lstm_sweep.data_pipeline import classify_dataset

    rows = np.array([[2, 5, 6, 3], [2, 8, 3, 0], [2, 9, 3, 0]], np.int32)
    ds = lm_dataset(rows, batch_size=2) if make == "lm" else classify_dataset(rows, np.array([0, 1, 0]), 2)
    assert ds.options().autotune.enabled is False
    assert sum(1 for _ in ds) == int(ds.cardinality()) == 2  # one batch ahead, every batch still there


def test_lm_dataset_rejects_bad_arguments():
    rows = np.array([[2, 5, 3]])
    for bad in (0, -1, 2.0):
        with pytest.raises(ValueError, match="batch_size"):
            lm_dataset(rows, batch_size=bad)
    with pytest.raises(ValueError, match="2-D"):
        lm_dataset(np.array([2, 5, 3]), batch_size=1)
    with pytest.raises(ValueError, match="integer"):
        lm_dataset(rows.astype(float), batch_size=1)


# ---------------------------------------------------------------- synthetic_lines

def test_synthetic_lines_deterministic_and_structured():
    lines = synthetic_lines(4000, seed=0)
    assert len(lines) == 4000 and lines == synthetic_lines(4000, seed=0)
    assert lines != synthetic_lines(4000, seed=1)
    cleaned = [c for c in map(clean_line, lines) if c]
    assert len(cleaned) < len(lines)  # section labels and blank lines are dropped
    words = {w for line in cleaned for w in line.split()}
    assert 300 <= len(words) <= 600
    lengths = np.array([len(line.split()) - 2 for line in cleaned])
    assert 0.7 < np.mean((lengths >= 4) & (lengths <= 14)) and 0.03 < np.mean(lengths > 13)
    text = "\n".join(cleaned)
    assert " he loves " in text and " i love " in text
    for wrong in ("<start> he love ", "<start> i loves ", "<start> she are ", "<start> i is "):
        assert wrong not in text
    assert any(c != c.lower() for c in lines) and any(any(ch.isdigit() for ch in c) for c in lines)


def test_synthetic_lines_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_lines"):
        synthetic_lines(0)
    with pytest.raises(ValueError, match="seed"):
        synthetic_lines(10, seed=-1)


# ---------------------------------------------------------------- the real corpus

@pytest.mark.slow
def test_real_lyrics_corpus(lyrics, tmp_path):
    """The 54-file lyrics corpus. Measured (2 shared CPU cores): 190,135 lines (splitlines; `wc -l`
    says 190,087: 47 files lack a final newline), 179,845 kept by the cleaner, 155,741 (86.6%) at
    <= 15 tokens; prepare() about 2.7 s cold, 0.03 s from the cache; <unk> 3.9% of val words."""
    assert 185_000 <= len(read_lines(lyrics)) <= 195_000
    started = time.perf_counter()
    data = prepare(DataSettings(path=str(lyrics), vocab_size=7000), cache_dir=tmp_path)
    cold = time.perf_counter() - started
    s = data.stats
    print(f"\nlyrics: {s['raw_lines']} lines, {s['cleaned_lines']} cleaned, {s['kept']} kept "
          f"({s['kept_share']:.1%}) at <= 15 tokens, unk {s['unk_rate_val']:.1%}, prepare {cold:.1f}s")
    assert 185_000 <= s["raw_lines"] <= 195_000 and s["files"] == 54
    assert 0.3 <= s["kept_share"] <= 0.99
    assert len(data.vocab) == 7000 and s["unk_rate_val"] < 0.1
    assert cold < 30, f"prepare() took {cold:.1f}s on the real corpus"
    assert prepare(DataSettings(path=str(lyrics), vocab_size=7000), cache_dir=tmp_path).stats["from_cache"]
