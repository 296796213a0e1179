"""course_lib.data: tokenizers, batches and masks, the date task, the SWORD Bible reader.

Oracles: masks built by explicit loops; the dates parsed back with datetime.strptime; a
zText module written by this test with struct and zlib; the real Debian modules checked on
known verses (John 3:16, Genesis 1:1) and on alignment counts (skipped, saying why, when the
packages can be neither found nor downloaded).
"""
import datetime as dt
import re
import struct
import zlib
from collections import Counter

import pytest
import torch

from course_lib.data import bible, dates
from course_lib.data.tokenizers import (BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID, BatchLoader,
                                        BPETokenizer, CharTokenizer, make_batch, pad_sequences)

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


def test_pad_sequences():
    out = pad_sequences([[5, 6, 7], [8]])
    assert out.dtype == torch.long and out.tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID]]
    with pytest.raises(ValueError):
        pad_sequences([])


def test_make_batch_shifts_targets_and_builds_masks():
    sources, targets = [[5, 6, 7], [8]], [[9], [10, 11, 12]]
    b = make_batch(sources, targets)
    assert b.src.tolist() == [[5, 6, 7, EOS_ID], [8, EOS_ID, PAD_ID, PAD_ID]]
    assert b.tgt_in.tolist() == [[BOS_ID, 9, PAD_ID, PAD_ID], [BOS_ID, 10, 11, 12]]
    assert b.tgt_out.tolist() == [[9, EOS_ID, PAD_ID, PAD_ID], [10, 11, 12, EOS_ID]]
    assert b.num_tokens == 2 + 4
    # the masks, from their definition, one entry at a time
    assert b.src_mask.shape == (2, 1, 4) and b.src_mask.dtype == torch.bool
    for i in range(2):
        for s in range(4):
            assert b.src_mask[i, 0, s] == (b.src[i, s] != PAD_ID)
    assert b.tgt_mask.shape == (2, 4, 4) and b.tgt_mask.dtype == torch.bool
    for i in range(2):
        for t in range(4):
            for s in range(4):
                assert b.tgt_mask[i, t, s] == (s <= t and b.tgt_in[i, s] != PAD_ID)
    assert b.to("cpu").src.equal(b.src)
    with pytest.raises(ValueError, match="as many sources as targets"):
        make_batch([[1]], [])


def test_batch_loader_covers_every_pair_once_per_pass():
    pairs = [([4] * (1 + i % 9), [5] * (1 + i % 4)) for i in range(103)]
    loader = BatchLoader(pairs, batch_size=10, shuffle=True, seed=1)
    seen_orders = []
    for _ in range(2):
        seen = []
        for b in loader:
            assert b.src.shape[0] <= 10
            seen += [(tuple(s[s > 3].tolist()), tuple(t[t > 3].tolist())) for s, t in zip(b.src, b.tgt_out)]
        assert sorted(seen) == sorted((tuple(s), tuple(t)) for s, t in pairs)
        seen_orders.append(seen)
    assert seen_orders[0] != seen_orders[1], "each pass draws a new order"
    again = BatchLoader(pairs, batch_size=10, shuffle=True, seed=1)
    assert [b.src.tolist() for b in again][:3] == [b.src.tolist() for b in BatchLoader(pairs, 10, seed=1)][:3]
    capped = BatchLoader(pairs, batch_size=50, shuffle=False, max_tokens=60)
    assert all(b.src.numel() <= 60 and b.tgt_in.numel() <= 60 for b in capped)
    assert sum(b.src.shape[0] for b in capped) == 103 and len(capped) == len(list(capped))


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


# --- the SWORD reader on a module written here --------------------------------------------

def write_ztext(folder, testament, slots, per_block=3):
    """Write slots (strings) as a zText testament: blocks of ``per_block`` slots, zlib-compressed."""
    bzs, bzv, bzz = bytearray(), bytearray(), bytearray()
    for first in range(0, len(slots), per_block):
        block = bytearray()
        for text in slots[first:first + per_block]:
            data = text.encode()
            bzv += struct.pack("<IIH", first // per_block, len(block), len(data))
            block += data
        packed = zlib.compress(bytes(block))
        bzs += struct.pack("<III", len(bzz), len(packed), len(block))
        bzz += packed
    for suffix, data in ((".bzs", bzs), (".bzv", bzv), (".bzz", bzz)):
        (folder / (testament + suffix)).write_bytes(bytes(data))


def test_read_ztext_on_a_module_written_here(tmp_path):
    slots = ["", "<milestone type=\"x-importer\"/>",
             '<div osisID="Gen" sID="b1" type="book"/>',             # book heading
             '<chapter n="1" osisID="Gen.1" sID="Gen.1"/>',
             "<w>In the beginning</w>, God<note>a footnote</note> created.", "Second verse.", "",
             '<chapter n="2" osisID="Gen.2" sID="Gen.2"/>', "Chapter two, verse one.",
             '<div osisID="Exod" sID="b2" type="book"/> Exodus intro',  # next book's heading
             '<chapter n="1" osisID="Exod.1" sID="Exod.1"/>', "Exodus one one."]
    write_ztext(tmp_path, "ot", slots)
    verses = bible.read_ztext(tmp_path)
    assert sorted(verses) == [("Exod", 1, 1), ("Gen", 1, 1), ("Gen", 1, 2), ("Gen", 2, 1)]
    assert bible.osis_to_text(verses[("Gen", 1, 1)]) == "In the beginning, God created."
    with pytest.raises(ValueError, match="no verses"):
        write_ztext(tmp_path, "nt", ["", ""])
        (tmp_path / "ot.bzv").unlink()
        bible.read_ztext(tmp_path)


def test_osis_to_text():
    osis = ('<q who="Jesus"><w lemma="strong:G1">Don’t</w> be afraid</q> <note placement="foot">'
            '<reference>1:1</reference>a note</note>! <l level="1"/>&amp; more  text')
    assert bible.osis_to_text(osis) == "Don’t be afraid! & more text"


def test_restore_chapter_case():
    counts = Counter({"aconteció": 5, "Aconteció": 1, "Jehová": 9, "jehová": 0, "Ezechîas": 2})
    assert bible.restore_chapter_case("EN el principio", counts) == "En el principio"
    assert bible.restore_chapter_case("Y ACONTECIÓ en los días", counts) == "Y aconteció en los días"
    assert bible.restore_chapter_case("Y JEHOVÁ dijo", counts) == "Y Jehová dijo"
    assert bible.restore_chapter_case("Y EZECHÎAS comenzó", counts) == "Y Ezechîas comenzó"
    assert bible.restore_chapter_case("Salmo. ¡OH Jehová", counts) == "Salmo. ¡Oh Jehová"
    assert bible.restore_chapter_case("EL REY DE REYES", counts) == "EL REY DE REYES"
    assert bible.restore_chapter_case("Y dijo", counts) == "Y dijo"


def test_align_and_split_by_book():
    en = {("Gen", 1, 1): "In the beginning", ("Gen", 1, 2): "only English", ("Ruth", 1, 1): "It happened",
          ("Mark", 1, 1): "The beginning", ("Obad", 1, 1): "The vision", ("Gen", 1, 3): "short"}
    es = {("Gen", 1, 1): "En el principio", ("Ruth", 1, 1): "Y aconteció", ("Mark", 1, 1): "Principio",
          ("Obad", 1, 1): "Visión", ("Gen", 1, 3): "una frase mucho más larga que la inglesa"}
    pairs = bible.align(en, es)
    assert [(p.book, p.chapter, p.verse) for p in pairs] == [("Gen", 1, 1), ("Ruth", 1, 1), ("Mark", 1, 1),
                                                              ("Obad", 1, 1)]
    split = bible.split_by_book(pairs, val_books=("Obad",), test_books=("Ruth", "Mark"))
    assert [p.book for p in split["train"]] == ["Gen"]
    assert sorted(p.book for p in split["test"]) == ["Mark", "Ruth"]
    assert [p.book for p in split["val"]] == ["Obad"]
    with pytest.raises(ValueError, match="unknown books"):
        bible.split_by_book(pairs, test_books=("Genesis",))
    with pytest.raises(ValueError, match="both"):
        bible.split_by_book(pairs, val_books=("Gen",), test_books=("Gen",))


# --- the real Debian modules ------------------------------------------------------------

@pytest.fixture(scope="module")
def modules():
    """The two real modules' folders: installed, cached, or fetched with apt-get download."""
    try:
        return {lang: bible.module_dir(lang) for lang in ("en", "es")}
    except RuntimeError as error:
        pytest.skip(f"the SWORD modules are not available: {error}")


def test_known_verses(modules):
    en, es = bible.read_ztext(modules["en"]), bible.read_ztext(modules["es"])
    john = bible.osis_to_text(en[("John", 3, 16)])
    assert john.startswith("For God so loved the world, that he gave his") and john.endswith("eternal life.")
    assert "only born" in john and "μονογενη" not in john  # the footnote is gone
    assert bible.osis_to_text(es[("John", 3, 16)]) == (
        "Porque de tal manera amó Dios al mundo, que ha dado á su Hijo unigénito, para que todo aquel "
        "que en él cree, no se pierda, mas tenga vida eterna.")
    assert bible.osis_to_text(en[("Gen", 1, 1)]) == "In the beginning, God created the heavens and the earth."
    assert bible.osis_to_text(es[("Gen", 1, 1)]) == "EN el principio crió Dios los cielos y la tierra."
    # the last verses of books (the slot after them is the next book's heading)
    assert bible.osis_to_text(en[("Gen", 50, 26)]).startswith("So Joseph died")
    assert ("Gen", 50, 27) not in en and ("Gen", 51, 1) not in en
    assert max(v for b, c, v in es if (b, c) == ("Ps", 119)) == 176
    # the Reina-Valera has the 66 books of the Protestant canon, the WEB also the Deuterocanon
    assert len({b for b, _, _ in es}) == 66 and {"Tob", "Sir", "1Macc"} <= {b for b, _, _ in en}
    assert 31000 <= len(es) <= 31110  # KJV numbering: 31,102 verses, a few empty


def test_alignment_counts(modules, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    monkeypatch.setattr(bible, "module_dir", modules.__getitem__)
    pairs = bible.load_pairs()
    assert 30900 <= len(pairs) <= 31102
    assert len({p.book for p in pairs}) == 66
    assert (tmp_path / bible.PAIRS_FILE).exists() and bible.load_pairs() == pairs  # read back from the cache
    split = bible.split_by_book(pairs)
    assert sum(map(len, split.values())) == len(pairs)
    assert not {p.book for p in split["train"]} & (set(bible.TEST_BOOKS) | set(bible.VAL_BOOKS))
    by_key = {(p.book, p.chapter, p.verse): p for p in pairs}
    assert by_key[("John", 11, 35)].en == "Jesus wept." and by_key[("John", 11, 35)].es == "Y lloró Jesús."
    assert by_key[("Gen", 1, 1)].es == "En el principio crió Dios los cielos y la tierra."
    assert by_key[("Jonah", 3, 1)].es.startswith("Y fué palabra de Jehová")
