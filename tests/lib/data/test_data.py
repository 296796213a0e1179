"""course_lib.data: the tokenizers and the date task (batches: test_batching.py; the SWORD Bible
reader: test_bible.py).

Oracles: the dates parsed back with datetime.strptime.
"""
import datetime as dt
import re

import pytest

from course_lib.data import dates
from course_lib.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID, BPETokenizer, CharTokenizer

# --- tokenizers -------------------------------------------------------------------------


def test_special_tokens_come_first():
    assert SPECIAL_TOKENS == ("<pad>", "<bos>", "<eos>", "<unk>")
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    tok = CharTokenizer("ba")
    assert tok.itos[:4] == list(SPECIAL_TOKENS) and tok.itos[4:] == ["a", "b"] and tok.vocab_size == 6


def test_char_tokenizer_round_trip_and_unknowns():
    tok = CharTokenizer.from_texts(["3 March 2021", "03/03/21"])
    ids = tok.encode("3 March 2021")
    assert len(ids) == len("3 March 2021") and min(ids) >= 4
    assert tok.decode(ids) == "3 March 2021"
    assert tok.encode("Z") == [UNK_ID]
    assert tok.decode([BOS_ID] + tok.encode("21") + [EOS_ID] + tok.encode("3") + [PAD_ID]) == "21"
    assert tok.tokens([BOS_ID, tok.encode("M")[0]]) == ["<bos>", "M"]


SENTENCES = ["¿Dónde está el niño? ¡Aquí!", "In the beginning, God created the heavens and the earth.",
             "Porque de tal manera amó Dios al mundo, que ha dado á su Hijo unigénito.",
             "“Don’t be afraid,” he said; “it is I.”", "El año 1909: «ñandú», pingüino."]


def test_bpe_tokenizer_round_trip(tmp_path):
    tok = BPETokenizer.train(SENTENCES * 20, vocab_size=120, min_frequency=1)
    assert [tok.tokenizer.id_to_token(i) for i in range(4)] == list(SPECIAL_TOKENS)
    assert tok.vocab_size <= 120
    for s in SENTENCES:
        ids = tok.encode(s)
        assert min(ids) >= 4 and tok.decode(ids) == s
        assert tok.decode([BOS_ID] + ids + [EOS_ID, PAD_ID, 9]) == s
    # a decomposed "é" (e + combining accent) is normalised to the composed one
    assert tok.encode("e\u0301") == tok.encode("\u00e9")
    assert tok.encode_batch(SENTENCES[:2]) == [tok.encode(s) for s in SENTENCES[:2]]
    tok.save(tmp_path / "bpe.json")
    again = BPETokenizer.load(tmp_path / "bpe.json")
    assert all(again.encode(s) == tok.encode(s) for s in SENTENCES)


def test_bpe_merges_frequent_words():
    tok = BPETokenizer.train(["the cat and the dog and the bird"] * 50, vocab_size=60, min_frequency=2)
    assert tok.tokens(tok.encode("the"))[0] == "▁the"  # one token for the most frequent word


# --- dates --------------------------------------------------------------------------------

def parse_human_date(text: str) -> str:
    """An independent parser: strptime with one pattern per format, two-digit years -> 1950-2049."""
    text = re.sub(r"(\d+)(st|nd|rd|th)\b", r"\1", text)
    text = re.sub(r"^the |\bof ", "", text).replace(" ,", ",")
    patterns = ["%d %B %Y", "%B %d, %Y", "%A %d %B %Y", "%a, %d %b %y", "%d %b %Y", "%b %d %Y",
                "%d/%m/%Y", "%d/%m/%y", "%d.%m.%Y", "%d %B, %Y", "%A, %B %d, %Y"]
    for pattern in patterns:
        try:
            parsed = dt.datetime.strptime(text, pattern).date()
        except ValueError:
            continue
        if "%y" in pattern:  # strptime maps 69-99 to 19xx; the task maps 50-99
            year = parsed.year % 100
            parsed = parsed.replace(year=1900 + year if year >= 50 else 2000 + year)
        if "%A" in pattern or "%a" in pattern:
            weekday = text.split()[0].strip(",").lower()
            assert dates.WEEKDAYS[parsed.weekday()].lower().startswith(weekday), text
        return parsed.isoformat()
    raise AssertionError(f"no pattern parses {text!r}")


def test_every_date_format_parses_back_to_its_iso_date():
    splits = dates.date_splits({"train": 3000, "test": 500}, fractions={"train": 0.9, "test": 0.1})
    for split in splits.values():
        for human, iso in split:
            assert parse_human_date(human) == iso, human
    used = {re.sub(r"\d", "9", h) for h, _ in splits["train"]}
    assert len(used) > 30  # many surface forms
    assert all(len(iso) == 10 and dates.FIRST_DAY.isoformat() <= iso <= dates.LAST_DAY.isoformat()
               for split in splits.values() for _, iso in split)


def test_date_formats_on_a_known_day():
    day = dt.date(2021, 3, 3)
    texts = [dates.human_date(day, i) for i in range(len(dates.FORMATS))]
    for expected in ("3rd of March 2021", "March 3, 2021", "03/03/2021", "Wednesday 3 March 2021",
                     "Wed, 3 Mar 21", "3/3/21", "MAR 03 2021"):
        assert expected in texts
    assert dates.iso_date(day) == "2021-03-03"
    assert dates.human_date(dt.date(1999, 12, 11), 1) == "11th of December 1999"
    assert dates.human_date(dt.date(1999, 12, 22), 1) == "22nd of December 1999"


def test_date_splits_are_reproducible_and_held_out_by_day():
    a = dates.date_splits(seed=3)
    b = dates.date_splits(seed=3)
    assert a == b and dates.date_splits(seed=4) != a
    assert {k: len(v) for k, v in a.items()} == {"train": 20000, "val": 1000, "test": 1000}
    train_days = {iso for _, iso in a["train"]}
    assert not train_days & {iso for _, iso in a["test"]}
    assert not train_days & {iso for _, iso in a["val"]}
    with pytest.raises(ValueError):
        dates.date_splits({"train": 10}, fractions={"train": 0.5, "test": 0.5})
