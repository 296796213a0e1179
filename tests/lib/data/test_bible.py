"""course_lib.data.bible: the SWORD zText reader, the verse alignment and the split.

Oracles: zText modules written by this test with struct and zlib; the real Debian modules
checked on known verses (John 3:16, Genesis 1:1), on alignment counts, and verse by verse
against pysword, which reads each verse on its own ("the slow way") and takes the
versification from the module's .conf by its own parser. The tests of the real modules skip,
saying why, when the packages can be neither found nor downloaded.
"""
import struct
import zlib
from collections import Counter

import pytest

from course_lib.data import bible

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


BOOKS = {"ot": [("Gen", [2, 1]), ("Exod", [1])]}  # a versification small enough to write by hand


def test_read_ztext_numbers_verses_by_the_versification(tmp_path):
    slots = ["", "<milestone type=\"x-importer\"/>",
             '<div osisID="Gen" sID="b1" type="book"/>',             # book heading
             '<chapter n="1" osisID="Gen.1" sID="Gen.1"/>',
             "<w>In the beginning</w>, God<note>a footnote</note> created.", "",
             '<chapter n="2" osisID="Gen.2" sID="Gen.2"/>', "Chapter two, verse one.",
             '<div osisID="Exod" sID="b2" type="book"/> Exodus intro',  # next book's heading
             "",                                                      # a heading without its marker
             "Exodus one one."]
    write_ztext(tmp_path, "ot", slots)
    verses = bible.read_ztext(tmp_path, BOOKS)
    assert sorted(verses) == [("Exod", 1, 1), ("Gen", 1, 1), ("Gen", 2, 1)]  # Gen 1:2 is empty
    assert bible.osis_to_text(verses[("Gen", 1, 1)]) == "In the beginning, God created."
    with pytest.raises(ValueError, match="11 verse slots, its versification 12"):
        bible.read_ztext(tmp_path, {"ot": [("Gen", [2, 2]), ("Exod", [1])]})
    with pytest.raises(ValueError, match="heading of Exod 1 is marked Gen 2"):
        bible.read_ztext(tmp_path, {"ot": [("Gen", [1]), ("Exod", [2, 1])]})
    (tmp_path / "ot.bzv").unlink()
    with pytest.raises(ValueError, match="no verses"):
        bible.read_ztext(tmp_path, BOOKS)


def test_read_module_follows_its_conf(tmp_path):
    (tmp_path / "mods.d").mkdir()
    (tmp_path / "mods.d" / "Tiny.conf").write_text("[Tiny]\n# Versification=NRSVA\nDataPath=./modules/tiny/\n"
                                                  "ModDrv=zText\nCompressType=ZIP\nVersification=KJV\n")
    folder = tmp_path / "modules" / "tiny"
    folder.mkdir(parents=True)
    kjv = bible.versification("KJV")["nt"]
    assert kjv[0][0] == "Matt" and kjv[-1] == ("Rev", kjv[-1][1]) and len(kjv) == 27
    slots = ["", ""] + [s for _, chapters in kjv for s in ["book"] + [t for n in chapters for t in ["ch"] + ["v"] * n]]
    slots[-1] = "The last verse."
    write_ztext(folder, "nt", slots, per_block=500)
    verses = bible.read_module(tmp_path, "Tiny")
    assert verses[("Rev", 22, 21)] == "The last verse." and len(verses) == sum(map(sum, (c for _, c in kjv)))
    with pytest.raises(ValueError, match="unknown versification 'Nope'"):
        bible.versification("Nope")


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
    """The two real modules' verses: installed, cached, or fetched with apt-get download."""
    try:
        return {lang: bible.load_verses(lang) for lang in ("en", "es")}
    except RuntimeError as error:
        pytest.skip(f"the SWORD modules are not available: {error}")


def test_known_verses(modules):
    en, es = modules["en"], modules["es"]
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
    monkeypatch.setattr(bible, "load_verses", modules.__getitem__)
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
    assert by_key[("Dan", 12, 13)].es.startswith("Y tú irás al fin")  # the verse the old reader lost


# --- verse by verse against pysword -------------------------------------------------------

# Short books (pysword decompresses a whole book for each verse), the deuterocanonical ones
# between which the old reader went wrong, and the last of each testament.
SAMPLE = {"en": ("Ruth", "Esth", "Dan", "Jonah", "Mal", "EsthGr", "PrAzar", "Sus", "Bel", "Phlm", "Jude", "Rev"),
          "es": ("Ruth", "Esth", "Dan", "Jonah", "Mal", "Phlm", "Jude", "Rev")}


@pytest.mark.parametrize("language", ["en", "es"])
def test_verses_equal_pysword(modules, language):
    modules_of_pysword = pytest.importorskip("pysword.modules")
    library, module = bible.library_dir(language), bible.MODULES[language][1]
    oracle = modules_of_pysword.SwordModules(str(library))
    oracle.parse_modules()
    theirs = oracle.get_bible_from_module(module)
    ours = modules[language]
    books = {book.osis_name: book for testament in theirs.get_structure().get_books().values() for book in testament}
    for name in SAMPLE[language]:
        book = books[name]
        for chapter, count in enumerate(book.chapter_lengths, start=1):
            for verse in range(1, count + 1):
                text = theirs.get(books=[name], chapters=[chapter], verses=[verse], clean=False)
                assert ours.get((name, chapter, verse), "") == (text if text.strip() else ""), (name, chapter, verse)
        assert not any(key[0] == name and key[1] > book.num_chapters for key in ours)
    # the verses the old reader got wrong: Daniel's last verse, and no 14th verse in Greek Esther 10
    assert bible.osis_to_text(ours[("Dan", 12, 13)]).startswith(
        "“But go your way until the end" if language == "en" else "Y tú irás al fin")
    assert ("EsthGr", 10, 14) not in ours and ("Dan", 12, 14) not in ours
