"""Tests for pair set files: loading, validation, id generation and saving."""

from __future__ import annotations

import copy
import os
import stat
import tomllib
import unicodedata
from pathlib import Path

import pytest

from wordorder_tui.pairs import (
    Pair,
    PairFileError,
    PairSet,
    load_pair_set,
    load_pair_sets,
    new_pair_id,
    save_pair_set,
    validate_pair_set,
)

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "pairs"
JINA = "jina-embeddings-v3"

# (id, category, a, b, language, reference) for each shipped set.
SHIPPED = {
    "word-order-en.toml": (
        "word-order-en",
        "en",
        [
            ("direction", "direction", "She flew from Paris to Tokyo.", "She drove from Tokyo to Paris.", "en", 0.8810929055764013),
            ("temporal", "temporal", "She ate dinner before watching the movie.", "She watched the movie before eating dinner.", "en", 0.9581018576771294),
            ("causal", "causal", "The rising temperature melted the snow.", "The melting snow cooled the temperature.", "en", 0.7663670043382221),
            ("comparative", "comparative", "Coffee tastes better than tea.", "Tea tastes better than coffee.", "en", 0.9538634701296309),
            ("negation", "negation", "He is standing by the table.", "He is standing far from the table.", "en", 0.8089181733708365),
        ],
    ),
    "word-order-ja.toml": (
        "word-order-ja",
        "ja",
        [
            ("direction", "direction", "彼女はパリから東京まで行った", "彼女は東京からパリまで行った", "ja", 0.9849495181142561),
            ("temporal", "temporal", "彼女は映画を見る前に夕食を食べた", "彼女は夕食を食べる前に映画を見た", "ja", 0.9429784007932432),
            ("causal", "causal", "気温が上がって雪が溶けた", "雪が溶けて気温が下がった", "ja", 0.8876550504181947),
            ("comparative", "comparative", "コーヒーは紅茶よりおいしい", "紅茶はコーヒーよりおいしい", "ja", 0.9245611137311809),
            ("negation", "negation", "彼はテーブルのそばに立っている", "彼はテーブルから離れたところに立っています", "ja", 0.8468101146022733),
        ],
    ),
    "negation.toml": (
        "negation",
        "en",
        [
            ("negation-en", "negation", "He is standing by the table.", "He is not standing by the table.", "en", 0.8280262605748225),
            ("negation-ja", "negation", "彼はテーブルのそばに立っている", "彼はテーブルのそばに立っていない", "ja", 0.8206575665424007),
        ],
    ),
    "jina-examples.toml": (
        "jina-examples",
        "en",
        [
            ("shuffle", "shuffle", "Berlin is the capital of Germany", "the Germany Berlin is capital of", "en", 0.9295),
            ("temporal", "temporal", "She ate dinner before watching the movie", "She watched the movie before eating dinner", "en", 0.9833),
            ("direction", "direction", "Flight from Berlin to Amsterdam", "Flight from Amsterdam to Berlin", "en", 0.9884),
        ],
    ),
}

HEADER = 'name = "test"\nlanguage = "en"\n'


def pair_toml(
    pair_id: str | None = "p1",
    category: str = "direction",
    a: str = '"A"',
    b: str = '"B"',
    extra: str = "",
) -> str:
    """Return the TOML source of one [[pairs]] table. The arguments a, b and extra are TOML source too."""
    lines = ["[[pairs]]"]
    if pair_id is not None:
        lines.append(f'id = "{pair_id}"')
    lines.append(f'category = "{category}"')
    lines.append(f"a = {a}")
    lines.append(f"b = {b}")
    if extra:
        lines.append(extra)
    return "\n".join(lines) + "\n"


def write(directory: Path, name: str, text: str | bytes) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def temporary_files(directory: Path) -> list[str]:
    return [entry.name for entry in directory.iterdir() if entry.name.endswith(".tmp")]


# Shipped sets


@pytest.mark.parametrize("file_name", sorted(SHIPPED))
def test_shipped_set_loads(file_name: str) -> None:
    name, language, expected_pairs = SHIPPED[file_name]
    pair_set = load_pair_set(SHIPPED_DIR / file_name)

    assert pair_set.name == name
    assert pair_set.language == language
    assert pair_set.description.strip()
    assert "\n" not in pair_set.description
    assert len(pair_set.pairs) == len(expected_pairs)
    for pair, (pair_id, category, a, b, pair_language, score) in zip(pair_set.pairs, expected_pairs, strict=True):
        assert pair.id == pair_id
        assert pair.category == category
        assert pair.a == a
        assert pair.b == b
        assert pair.language == pair_language
        assert pair.reference == {JINA: score}


@pytest.mark.parametrize("file_name", sorted(SHIPPED))
def test_shipped_set_comment_names_settings(file_name: str) -> None:
    text = (SHIPPED_DIR / file_name).read_text(encoding="utf-8")
    comment = " ".join(line for line in text.splitlines() if line.startswith("#"))

    assert JINA in comment
    assert "text-matching" in comment
    assert "1024 dimensions" in comment
    assert "float embeddings" in comment


def test_shipped_word_order_en_expects_different() -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "word-order-en.toml")

    assert {pair.expect for pair in pair_set.pairs} == {"different"}


def test_shipped_directory_loads_without_errors() -> None:
    pair_sets, errors = load_pair_sets(SHIPPED_DIR)

    assert errors == []
    assert sorted(pair_set.name for pair_set in pair_sets) == sorted(entry[0] for entry in SHIPPED.values())


# Invalid files

INVALID_CASES = [
    # (case id, file text, entry named in the message or None, field text in the message)
    ("unknown-top-key", HEADER + 'nmae = "x"\n' + pair_toml(), None, 'unknown top-level key "nmae"'),
    ("unknown-pair-key", HEADER + pair_toml(extra='text = "x"'), 'pairs[0] (id "p1")', 'unknown key "text"'),
    (
        "reference-string",
        HEADER + pair_toml(extra='[pairs.reference]\nm = "0.9"'),
        'pairs[0] (id "p1")',
        'field "reference.m" must be a number, not string',
    ),
    (
        "reference-table",
        HEADER + pair_toml(extra="[pairs.reference]\nm = { score = 0.9 }"),
        'pairs[0] (id "p1")',
        'field "reference.m" must be a number, not table',
    ),
    (
        "reference-boolean",
        HEADER + pair_toml(extra="[pairs.reference]\nm = true"),
        'pairs[0] (id "p1")',
        'field "reference.m" must be a number, not boolean',
    ),
    (
        "reference-not-table",
        HEADER + pair_toml(extra="reference = 0.9"),
        'pairs[0] (id "p1")',
        'field "reference" must be a table',
    ),
    (
        "reference-out-of-range",
        HEADER + pair_toml(extra="[pairs.reference]\nm = 1.5"),
        'pairs[0] (id "p1")',
        'field "reference.m" is 1.5, outside [-1, 1]',
    ),
    (
        "reference-nan",
        HEADER + pair_toml(extra="[pairs.reference]\nm = nan"),
        'pairs[0] (id "p1")',
        'field "reference.m" is nan, which is not finite',
    ),
    (
        "missing-a",
        HEADER + pair_toml("p1") + '[[pairs]]\nid = "p2"\ncategory = "causal"\nb = "B"\n',
        'pairs[1] (id "p2")',
        'field "a" is missing',
    ),
    (
        "missing-b",
        HEADER + '[[pairs]]\nid = "p1"\ncategory = "causal"\na = "A"\n',
        'pairs[0] (id "p1")',
        'field "b" is missing',
    ),
    (
        "missing-category",
        HEADER + '[[pairs]]\na = "A"\nb = "B"\n',
        "pairs[0]",
        'field "category" is missing',
    ),
    ("missing-name", 'language = "en"\n' + pair_toml(), None, 'field "name" is missing'),
    ("missing-language", 'name = "x"\n' + pair_toml(), None, 'field "language" is missing'),
    (
        "empty-b",
        HEADER + pair_toml("p0") + pair_toml("p1") + pair_toml("p2") + pair_toml("temporal", "temporal", b='""'),
        'pairs[3] (id "temporal")',
        'field "b" is empty',
    ),
    (
        "ideographic-space-a",
        HEADER + pair_toml(a='"\u3000\u3000"'),
        'pairs[0] (id "p1")',
        'field "a" contains only whitespace',
    ),
    (
        "ascii-space-b",
        HEADER + pair_toml(b='" \\t\\n"'),
        'pairs[0] (id "p1")',
        'field "b" contains only whitespace',
    ),
    ("empty-category", HEADER + pair_toml(category=""), 'pairs[0] (id "p1")', 'field "category" is empty'),
    ("empty-name", 'name = ""\nlanguage = "en"\n' + pair_toml(), None, 'field "name" is empty'),
    ("empty-id", HEADER + '[[pairs]]\nid = ""\ncategory = "causal"\na = "A"\nb = "B"\n', "pairs[0]", 'field "id" is empty'),
    (
        "duplicate-id",
        HEADER + pair_toml("same") + pair_toml("same"),
        'pairs[1] (id "same")',
        'duplicate id "same" (also used by pairs[0])',
    ),
    ("a-integer", HEADER + pair_toml(a="3"), 'pairs[0] (id "p1")', 'field "a" must be a string, not integer'),
    ("name-integer", 'name = 1\nlanguage = "en"\n' + pair_toml(), None, 'field "name" must be a string, not integer'),
    (
        "description-float",
        HEADER + "description = 1.5\n" + pair_toml(),
        None,
        'field "description" must be a string, not float',
    ),
    ("pairs-string", HEADER + 'pairs = "none"\n', None, 'field "pairs" must be an array of tables, not string'),
    ("pairs-integers", HEADER + "pairs = [1, 2]\n", "pairs[0]", "must be a table, not integer"),
    (
        "expect-invalid",
        HEADER + pair_toml(extra='expect = "maybe"'),
        'pairs[0] (id "p1")',
        'field "expect" has invalid value "maybe"',
    ),
    (
        "set-language-invalid",
        'name = "x"\nlanguage = "english"\n' + pair_toml(),
        None,
        'field "language" has invalid language tag "english"',
    ),
    (
        "pair-language-invalid",
        HEADER + pair_toml(extra='language = "ja_JP"'),
        'pairs[0] (id "p1")',
        'field "language" has invalid language tag "ja_JP"',
    ),
    ("no-pairs", HEADER, None, "no pairs"),
    ("empty-pairs", HEADER + "pairs = []\n", None, "no pairs"),
    ("invalid-toml", HEADER + "a = \n", None, "invalid TOML: Invalid value (at line 3, column 5)"),
    ("not-utf8", (HEADER + pair_toml(a='"caf\xe9"')).encode("latin-1"), None, "not valid UTF-8 (byte 0xe9 at offset"),
    ("byte-order-mark", b"\xef\xbb\xbf" + (HEADER + pair_toml()).encode("utf-8"), None, "byte order mark"),
]


@pytest.mark.parametrize(
    ("text", "entry", "field_text"),
    [case[1:] for case in INVALID_CASES],
    ids=[case[0] for case in INVALID_CASES],
)
def test_load_invalid_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | bytes, entry: str | None, field_text: str
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "pairs/x.toml", text)

    with pytest.raises(PairFileError) as caught:
        load_pair_set("pairs/x.toml")

    message = str(caught.value)
    assert message.startswith("pairs/x.toml: ")
    if entry is not None:
        assert f"pairs/x.toml: {entry}: " in message
    else:
        assert "pairs[" not in message.split(":")[1]
    assert field_text in message


def test_load_invalid_is_value_error(tmp_path: Path) -> None:
    path = write(tmp_path, "x.toml", HEADER)

    with pytest.raises(ValueError):
        load_pair_set(path)


def test_load_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    with pytest.raises(PairFileError, match=r"^pairs/absent\.toml: file not found$"):
        load_pair_set(Path("pairs/absent.toml"))


def test_load_directory_as_file(tmp_path: Path) -> None:
    (tmp_path / "dir.toml").mkdir()

    with pytest.raises(PairFileError, match="is a directory"):
        load_pair_set(tmp_path / "dir.toml")


def test_load_unknown_key_lists_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, "x.toml", HEADER + pair_toml(extra='txt = "x"'))

    with pytest.raises(PairFileError) as caught:
        load_pair_set(path)

    assert "id, category, a, b, language, expect, note, reference" in str(caught.value)


# Byte-exact texts


def test_load_keeps_ideographic_space(tmp_path: Path) -> None:
    a = "\u3000彼は\u3000立っている\u3000"
    path = write(tmp_path, "x.toml", HEADER + pair_toml(a=f'"{a}"'))

    pair = load_pair_set(path).pairs[0]

    assert pair.a == a


def test_load_keeps_nfc_and_nfd(tmp_path: Path) -> None:
    nfc = "caf\u00e9"
    nfd = "cafe\u0301"
    path = write(tmp_path, "x.toml", HEADER + pair_toml(a=f'"{nfc}"', b=f'"{nfd}"'))

    pair = load_pair_set(path).pairs[0]

    assert pair.a == nfc
    assert pair.b == nfd
    assert pair.a != pair.b
    assert unicodedata.is_normalized("NFD", pair.b)


def test_load_keeps_surrounding_spaces(tmp_path: Path) -> None:
    path = write(tmp_path, "x.toml", HEADER + pair_toml(a='"  A  "', b='"\\tB\\n"'))

    pair = load_pair_set(path).pairs[0]

    assert pair.a == "  A  "
    assert pair.b == "\tB\n"


SPECIAL_TEXTS = [
    "line one\nline two",
    "windows\r\nline",
    'a "quoted" word',
    "back\\slash and \\n literal",
    "tab\there",
    "\u3000leading and trailing\u3000",
    "cafe\u0301 (NFD)",
    "caf\u00e9 (NFC)",
    "'''triple single''' and \"\"\"triple double\"\"\"",
    "control \x01\x1f\x7f characters",
    "emoji \U0001f600 and RTL \u05e9\u05dc\u05d5\u05dd",
    "zero width\u200bspace and no-break\u00a0space",
]


@pytest.mark.parametrize("text", SPECIAL_TEXTS)
def test_save_special_text_round_trip(tmp_path: Path, text: str) -> None:
    pair_set = PairSet(
        path=None,
        name="special",
        language="en",
        description="",
        pairs=[Pair(id="p", category="direction", a=text, b=text + "!", language="en")],
    )

    path = save_pair_set(pair_set, tmp_path / "special.toml")
    loaded = load_pair_set(path)

    assert loaded.pairs[0].a == text
    assert loaded.pairs[0].b == text + "!"


@pytest.mark.parametrize("text", SPECIAL_TEXTS)
def test_save_special_text_in_existing_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "x.toml", HEADER + pair_toml())
    pair_set = load_pair_set(path)
    pair_set.pairs[0].b = text

    save_pair_set(pair_set)

    assert load_pair_set(path).pairs[0].b == text


# Ids


def test_ids_generated_from_category(tmp_path: Path) -> None:
    text = HEADER + pair_toml(None, "temporal") + pair_toml(None, "temporal") + pair_toml(None, "Word Order")
    path = write(tmp_path, "x.toml", text)

    ids = [pair.id for pair in load_pair_set(path).pairs]

    assert ids == ["temporal", "temporal-2", "word-order"]


def test_ids_generated_skip_explicit(tmp_path: Path) -> None:
    text = HEADER + pair_toml(None, "temporal") + pair_toml("temporal", "causal")
    path = write(tmp_path, "x.toml", text)

    ids = [pair.id for pair in load_pair_set(path).pairs]

    assert ids == ["temporal-2", "temporal"]


def test_generated_id_in_message(tmp_path: Path) -> None:
    path = write(tmp_path, "x.toml", HEADER + pair_toml(None, "temporal", b='""'))

    with pytest.raises(PairFileError, match=r'pairs\[0\] \(id "temporal"\): field "b" is empty'):
        load_pair_set(path)


def test_new_pair_id_free() -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "negation.toml")

    assert new_pair_id(pair_set, "direction") == "direction"


def test_new_pair_id_clash() -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "word-order-en.toml")

    assert new_pair_id(pair_set, "direction") == "direction-2"


def test_new_pair_id_second_clash() -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "word-order-en.toml")
    pair_set.pairs.append(Pair(id="direction-2", category="direction", a="x", b="y", language="en"))

    assert new_pair_id(pair_set, "direction") == "direction-3"


def test_new_pair_id_non_ascii() -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "negation.toml")

    assert new_pair_id(pair_set, "語順 (方向)") == "語順-方向"


def test_new_pair_id_symbols_only() -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "negation.toml")

    assert new_pair_id(pair_set, "!!!") == "pair"


def test_save_writes_generated_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "x.toml", HEADER + pair_toml(None, "temporal") + pair_toml(None, "temporal"))
    pair_set = load_pair_set(path)

    save_pair_set(pair_set)
    raw = tomllib.loads(path.read_text(encoding="utf-8"))

    assert [entry["id"] for entry in raw["pairs"]] == ["temporal", "temporal-2"]
    assert next(iter(raw["pairs"][0])) == "id"


# Pair set API


def test_pair_lookup() -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "word-order-en.toml")

    assert pair_set.pair("causal").b == "The melting snow cooled the temperature."


def test_pair_lookup_missing() -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "word-order-en.toml")

    with pytest.raises(KeyError, match="no-such-id"):
        pair_set.pair("no-such-id")


def test_content_hash_ignores_note() -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "word-order-en.toml")
    edited = copy.deepcopy(pair_set)
    edited.pairs[0].note = "a note"
    edited.description = "another description"
    edited.pairs[0].reference = {}

    assert edited.content_hash() == pair_set.content_hash()


def test_content_hash_changes_with_text() -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "word-order-en.toml")
    edited = copy.deepcopy(pair_set)
    edited.pairs[0].b = edited.pairs[0].b + " "

    assert edited.content_hash() != pair_set.content_hash()


def test_content_hash_changes_with_expect() -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "word-order-en.toml")
    edited = copy.deepcopy(pair_set)
    edited.pairs[0].expect = "same"

    assert edited.content_hash() != pair_set.content_hash()


def test_content_hash_stable_across_save(tmp_path: Path) -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "word-order-ja.toml")

    path = save_pair_set(pair_set, tmp_path / "copy.toml")

    assert load_pair_set(path).content_hash() == pair_set.content_hash()


def test_validate_edited_set_unsaved() -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "negation.toml")
    pair_set.path = None
    pair_set.pairs[1].b = "\u3000"

    with pytest.raises(PairFileError) as caught:
        validate_pair_set(pair_set)

    message = str(caught.value)
    assert message.startswith('pair set "negation" (not saved): ')
    assert 'pairs[1] (id "negation-ja")' in message
    assert 'field "b" contains only whitespace' in message


def test_validate_edited_set_wrong_type() -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "negation.toml")
    pair_set.pairs[0].a = None  # type: ignore[assignment]

    with pytest.raises(PairFileError, match=r'pairs\[0\] \(id "negation-en"\): field "a" must be a string, not None'):
        validate_pair_set(pair_set)


def test_validate_edited_set_duplicate_id() -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "negation.toml")
    pair_set.pairs[1].id = "negation-en"

    with pytest.raises(PairFileError, match='duplicate id "negation-en"'):
        validate_pair_set(pair_set)


def test_validate_edited_set_lone_surrogate() -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "negation.toml")
    pair_set.pairs[0].a = "broken \ud800"

    with pytest.raises(PairFileError, match="lone surrogate"):
        validate_pair_set(pair_set)


def test_load_integer_reference_as_float(tmp_path: Path) -> None:
    path = write(tmp_path, "x.toml", HEADER + pair_toml(extra="[pairs.reference]\nm = 1\nn = -1"))

    reference = load_pair_set(path).pairs[0].reference

    assert reference == {"m": 1.0, "n": -1.0}
    assert all(type(score) is float for score in reference.values())


def test_load_inline_array_of_tables(tmp_path: Path) -> None:
    path = write(tmp_path, "x.toml", HEADER + 'pairs = [{ category = "causal", a = "A", b = "B" }]\n')

    pair_set = load_pair_set(path)

    assert pair_set.pairs[0].id == "causal"


# Saving

ROUND_TRIP_FILE = """\
# Pair set used to test saving.
name = "roundtrip"
language = "en"
description = "Pairs for the save test."

# comment above the first pair
[[pairs]]
id = "keep"
category = "direction"
a = "From A to B."  # inline comment
b = 'From B to A.'

# comment above the edited pair
[[pairs]]
id = "edit"
category = "temporal"
a = "Before."
b = "After."  # inline comment on an edited line

# comment above the deleted pair
[[pairs]]
id = "drop"
category = "causal"
a = "Cause."
b = "Effect."

# comment above the last pair
[[pairs]]
id = "last"
category = "comparative"
language = "en-GB"
a = "More."
b = "Less."
expect = "different"

[pairs.reference]
model-x = 0.5  # reference comment
"""

KEEP_BLOCK = """\
# comment above the first pair
[[pairs]]
id = "keep"
category = "direction"
a = "From A to B."  # inline comment
b = 'From B to A.'
"""

LAST_BLOCK = """\
# comment above the last pair
[[pairs]]
id = "last"
category = "comparative"
language = "en-GB"
a = "More."
b = "Less."
expect = "different"

[pairs.reference]
model-x = 0.5  # reference comment
"""


def edit_round_trip_set(pair_set: PairSet) -> PairSet:
    """Edit one b, delete the pair "drop" and add a negation pair."""
    pair_set.pair("edit").b = "After, edited.\nSecond line with \u3000 and \"quotes\"."
    pair_set.pairs = [pair for pair in pair_set.pairs if pair.id != "drop"]
    pair_set.pairs.append(
        Pair(
            id=new_pair_id(pair_set, "negation"),
            category="negation",
            a="He is here.",
            b="He is not here.",
            language="ja",
            expect="different",
            note="added by the test",
            reference={"model-x": 0.75, "model y": 1},
        )
    )
    return pair_set


@pytest.fixture
def round_trip_path(tmp_path: Path) -> Path:
    return write(tmp_path, "roundtrip.toml", ROUND_TRIP_FILE)


def test_save_round_trip_data(round_trip_path: Path) -> None:
    pair_set = edit_round_trip_set(load_pair_set(round_trip_path))

    save_pair_set(pair_set)
    loaded = load_pair_set(round_trip_path)

    assert loaded.name == pair_set.name
    assert loaded.language == pair_set.language
    assert loaded.description == pair_set.description
    assert loaded.pairs == pair_set.pairs
    assert [pair.id for pair in loaded.pairs] == ["keep", "edit", "last", "negation"]


def test_save_round_trip_keeps_comments(round_trip_path: Path) -> None:
    pair_set = edit_round_trip_set(load_pair_set(round_trip_path))

    save_pair_set(pair_set)
    text = round_trip_path.read_text(encoding="utf-8")

    assert text.startswith("# Pair set used to test saving.\nname = ")
    assert KEEP_BLOCK in text
    assert LAST_BLOCK in text
    assert "# comment above the edited pair\n[[pairs]]\nid = \"edit\"" in text
    assert "# inline comment on an edited line" in text


def test_save_round_trip_drops_deleted(round_trip_path: Path) -> None:
    pair_set = edit_round_trip_set(load_pair_set(round_trip_path))

    save_pair_set(pair_set)
    text = round_trip_path.read_text(encoding="utf-8")

    assert "comment above the deleted pair" not in text
    assert '"drop"' not in text
    assert "Effect." not in text


def test_save_round_trip_edits_b(round_trip_path: Path) -> None:
    pair_set = edit_round_trip_set(load_pair_set(round_trip_path))

    save_pair_set(pair_set)
    raw = tomllib.loads(round_trip_path.read_text(encoding="utf-8"))

    assert raw["pairs"][1]["b"] == "After, edited.\nSecond line with \u3000 and \"quotes\"."


def test_save_new_pair_fields(round_trip_path: Path) -> None:
    pair_set = edit_round_trip_set(load_pair_set(round_trip_path))

    save_pair_set(pair_set)
    raw = tomllib.loads(round_trip_path.read_text(encoding="utf-8"))

    assert raw["pairs"][3] == {
        "id": "negation",
        "category": "negation",
        "language": "ja",
        "a": "He is here.",
        "b": "He is not here.",
        "expect": "different",
        "note": "added by the test",
        "reference": {"model-x": 0.75, "model y": 1.0},
    }


def test_save_unchanged_is_identical(round_trip_path: Path) -> None:
    pair_set = load_pair_set(round_trip_path)

    save_pair_set(pair_set)

    assert round_trip_path.read_text(encoding="utf-8") == ROUND_TRIP_FILE


def test_save_delete_first_pair(round_trip_path: Path) -> None:
    pair_set = load_pair_set(round_trip_path)
    pair_set.pairs = pair_set.pairs[1:]

    save_pair_set(pair_set)
    text = round_trip_path.read_text(encoding="utf-8")

    assert 'description = "Pairs for the save test."\n\n# comment above the edited pair\n[[pairs]]' in text
    assert "comment above the first pair" not in text


def test_save_reorder_moves_comments(round_trip_path: Path) -> None:
    pair_set = load_pair_set(round_trip_path)
    pair_set.pairs.reverse()

    save_pair_set(pair_set)
    text = round_trip_path.read_text(encoding="utf-8")

    assert [pair.id for pair in load_pair_set(round_trip_path).pairs] == ["last", "drop", "edit", "keep"]
    assert text.index("comment above the last pair") < text.index("comment above the deleted pair")
    assert KEEP_BLOCK in text


def test_save_added_keys_stay_in_table(round_trip_path: Path) -> None:
    pair_set = load_pair_set(round_trip_path)
    pair_set.pair("keep").note = "new note"
    pair_set.pair("keep").reference = {"model-x": -0.25}

    save_pair_set(pair_set)
    text = round_trip_path.read_text(encoding="utf-8")

    assert "b = 'From B to A.'\nnote = \"new note\"\n" in text
    assert load_pair_set(round_trip_path).pair("keep").reference == {"model-x": -0.25}


def test_save_removes_optional_keys(round_trip_path: Path) -> None:
    pair_set = load_pair_set(round_trip_path)
    pair_set.pair("last").expect = None
    pair_set.pair("last").reference = {}

    save_pair_set(pair_set)
    raw = tomllib.loads(round_trip_path.read_text(encoding="utf-8"))

    assert "expect" not in raw["pairs"][3]
    assert "reference" not in raw["pairs"][3]


def test_save_changes_reference_score(round_trip_path: Path) -> None:
    pair_set = load_pair_set(round_trip_path)
    pair_set.pair("last").reference["model-x"] = 0.625

    save_pair_set(pair_set)
    text = round_trip_path.read_text(encoding="utf-8")

    assert "model-x = 0.625  # reference comment\n" in text


def test_save_rewrites_inline_pairs(tmp_path: Path) -> None:
    path = write(tmp_path, "x.toml", HEADER + 'pairs = [{ category = "causal", a = "A", b = "B" }]\n')
    pair_set = load_pair_set(path)
    pair_set.pairs[0].b = "B2"

    save_pair_set(pair_set)

    assert load_pair_set(path).pairs == pair_set.pairs


@pytest.mark.parametrize("file_name", sorted(SHIPPED))
def test_save_new_file_round_trip(tmp_path: Path, file_name: str) -> None:
    pair_set = load_pair_set(SHIPPED_DIR / file_name)

    path = save_pair_set(pair_set, tmp_path / file_name)
    loaded = load_pair_set(path)

    assert loaded.pairs == pair_set.pairs
    assert (loaded.name, loaded.language, loaded.description) == (
        pair_set.name,
        pair_set.language,
        pair_set.description,
    )


def test_save_without_path() -> None:
    pair_set = PairSet(path=None, name="n", language="en", description="", pairs=[])

    with pytest.raises(PairFileError, match="pass a path"):
        save_pair_set(pair_set)


def test_save_leaves_no_temporary_files(round_trip_path: Path) -> None:
    pair_set = edit_round_trip_set(load_pair_set(round_trip_path))

    save_pair_set(pair_set)
    save_pair_set(pair_set, round_trip_path.parent / "second.toml")

    assert temporary_files(round_trip_path.parent) == []
    assert sorted(entry.name for entry in round_trip_path.parent.iterdir()) == ["roundtrip.toml", "second.toml"]


def test_save_invalid_keeps_file(round_trip_path: Path) -> None:
    pair_set = load_pair_set(round_trip_path)
    pair_set.pair("edit").b = "   "

    with pytest.raises(PairFileError, match=r'pairs\[1\] \(id "edit"\): field "b" contains only whitespace'):
        save_pair_set(pair_set)

    assert round_trip_path.read_text(encoding="utf-8") == ROUND_TRIP_FILE
    assert temporary_files(round_trip_path.parent) == []


def test_save_refuses_unloadable_result(tmp_path: Path) -> None:
    original = HEADER + "extra = 1\n" + pair_toml()
    path = write(tmp_path, "x.toml", original)
    pair_set = PairSet(
        path=path,
        name="test",
        language="en",
        description="",
        pairs=[Pair(id="p1", category="direction", a="A", b="B2", language="en")],
    )

    with pytest.raises(PairFileError, match='would not load back.*unknown top-level key "extra".*Nothing was written'):
        save_pair_set(pair_set)

    assert path.read_text(encoding="utf-8") == original
    assert temporary_files(tmp_path) == []


def test_save_missing_directory(tmp_path: Path) -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "negation.toml")
    target = tmp_path / "absent" / "x.toml"

    with pytest.raises(PairFileError, match="cannot write file"):
        save_pair_set(pair_set, target)


def test_save_keeps_permissions(round_trip_path: Path) -> None:
    os.chmod(round_trip_path, 0o640)
    pair_set = edit_round_trip_set(load_pair_set(round_trip_path))

    save_pair_set(pair_set)

    assert stat.S_IMODE(round_trip_path.stat().st_mode) == 0o640


def test_save_leaves_path_unchanged(tmp_path: Path) -> None:
    pair_set = load_pair_set(SHIPPED_DIR / "negation.toml")

    returned = save_pair_set(pair_set, tmp_path / "copy.toml")

    assert returned == tmp_path / "copy.toml"
    assert pair_set.path == SHIPPED_DIR / "negation.toml"


def test_save_failed_replace_cleans_up(round_trip_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pair_set = edit_round_trip_set(load_pair_set(round_trip_path))

    def fail_replace(source: object, target: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(PairFileError, match="cannot write file: No space left on device"):
        save_pair_set(pair_set)

    assert round_trip_path.read_text(encoding="utf-8") == ROUND_TRIP_FILE
    assert temporary_files(round_trip_path.parent) == []


def test_save_dotted_reference(tmp_path: Path) -> None:
    path = write(tmp_path, "x.toml", HEADER + pair_toml(extra="reference.m = 0.25"))
    pair_set = load_pair_set(path)
    pair_set.pairs[0].reference = {"m": 0.5, "n": -0.5}

    save_pair_set(pair_set)

    assert load_pair_set(path).pairs[0].reference == {"m": 0.5, "n": -0.5}


def test_save_inline_reference(tmp_path: Path) -> None:
    path = write(tmp_path, "x.toml", HEADER + pair_toml(extra="reference = { m = 0.25, o = 0.1 }"))
    pair_set = load_pair_set(path)
    pair_set.pairs[0].reference = {"m": 0.5, "n": -0.5}

    save_pair_set(pair_set)

    assert load_pair_set(path).pairs[0].reference == {"m": 0.5, "n": -0.5}


def test_save_through_symlink(round_trip_path: Path) -> None:
    link = round_trip_path.parent / "link.toml"
    link.symlink_to(round_trip_path.name)
    pair_set = edit_round_trip_set(load_pair_set(link))

    save_pair_set(pair_set)

    assert link.is_symlink()
    assert load_pair_set(round_trip_path).pairs == pair_set.pairs


# Directories


def test_load_pair_sets_mixed(tmp_path: Path) -> None:
    write(tmp_path, "b-valid.toml", 'name = "b"\nlanguage = "en"\n' + pair_toml())
    write(tmp_path, "a-valid.toml", 'name = "a"\nlanguage = "ja"\n' + pair_toml())
    write(tmp_path, "c-broken.toml", 'name = "c"\nlanguage = "en"\n' + pair_toml(b='""'))
    write(tmp_path, "notes.txt", "not a pair set")

    pair_sets, errors = load_pair_sets(tmp_path)

    assert [pair_set.name for pair_set in pair_sets] == ["a", "b"]
    assert len(errors) == 1
    assert str(errors[0]).startswith(f"{tmp_path / 'c-broken.toml'}: ")
    assert 'field "b" is empty' in str(errors[0])


def test_load_pair_sets_duplicate_name(tmp_path: Path) -> None:
    write(tmp_path, "first.toml", HEADER + pair_toml())
    write(tmp_path, "second.toml", HEADER + pair_toml())

    pair_sets, errors = load_pair_sets(tmp_path)

    assert [pair_set.path for pair_set in pair_sets] == [tmp_path / "first.toml"]
    assert len(errors) == 1
    assert 'name "test" is already used by' in str(errors[0])


def test_load_pair_sets_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(PairFileError, match="directory not found"):
        load_pair_sets(tmp_path / "absent")

