"""Pair set files: TOML files of sentence pairs whose embeddings are compared.

A pair set file has the top-level keys ``name``, ``language`` (a BCP 47 tag),
an optional ``description`` and one ``[[pairs]]`` table per pair. Each pair has
``category``, ``a`` and ``b``, and optionally ``id``, ``language``, ``expect``
(``"same"`` or ``"different"``), ``note`` and a ``[pairs.reference]`` table that
maps model names to published cosine scores.

Texts are kept exactly as written: no Unicode normalisation and no trimming.
Loading raises PairFileError with a message that names the file, the entry and
the field. Saving updates an existing file in place with tomlkit, so comments and
the formatting of unchanged pairs survive.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.container import Container
from tomlkit.exceptions import ParseError
from tomlkit.items import AoT, Comment, InlineTable, Table
from tomlkit.toml_document import TOMLDocument

logger = logging.getLogger(__name__)

BUILTIN_CATEGORIES = ("direction", "temporal", "causal", "comparative", "negation")
EXPECT_VALUES = ("same", "different")
SET_KEYS = ("name", "language", "description", "pairs")
PAIR_KEYS = ("id", "category", "a", "b", "language", "expect", "note", "reference")

# A shape check only: language and subtags are not looked up in the IANA registry.
LANGUAGE_TAG_PATTERN = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")
UTF8_BOM = b"\xef\xbb\xbf"

_TOML_TYPE_NAMES = {
    "str": "string",
    "bool": "boolean",
    "int": "integer",
    "float": "float",
    "dict": "table",
    "list": "array",
    "datetime": "datetime",
    "date": "date",
    "time": "time",
    "NoneType": "None",
}


class PairFileError(ValueError):
    """Invalid pair set file or pair set, or a pair set file that cannot be read or written.

    The message names the file, the entry and the field.
    """


@dataclass
class Pair:
    """Two texts whose embeddings are compared, with what a reader should expect."""

    id: str
    category: str
    a: str
    b: str
    language: str  # effective: the pair's own, else the set's
    expect: str | None = None  # "same" | "different" | None
    note: str | None = None
    reference: dict[str, float] = field(default_factory=dict)


@dataclass
class PairSet:
    """A named list of pairs, as loaded from one TOML file or built in memory."""

    path: Path | None
    name: str
    language: str
    description: str
    pairs: list[Pair]

    def content_hash(self) -> str:
        """Return a sha256 hex digest of the name, language and the compared fields of each pair.

        Description, notes and references are left out, so editing them keeps the hash.
        """
        content = {
            "name": self.name,
            "language": self.language,
            "pairs": [
                {
                    "id": pair.id,
                    "category": pair.category,
                    "a": pair.a,
                    "b": pair.b,
                    "language": pair.language,
                    "expect": pair.expect,
                }
                for pair in self.pairs
            ],
        }
        canonical = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def pair(self, pair_id: str) -> Pair:
        """Return the pair with this id, or raise KeyError naming the id."""
        for pair in self.pairs:
            if pair.id == pair_id:
                return pair
        raise KeyError(f'no pair with id "{pair_id}" in pair set "{self.name}"')


# Loading


def load_pair_set(path: str | Path) -> PairSet:
    """Read and validate one pair set file.

    Pairs without an ``id`` get one from their category (see new_pair_id).
    Raises PairFileError for a missing, unreadable or invalid file.
    """
    path = Path(path)
    label = str(path)
    text = _read_text(path, label)
    return _parse_pair_set(text, label, path)


def load_pair_sets(directory: str | Path) -> tuple[list[PairSet], list[PairFileError]]:
    """Load every ``*.toml`` file in a directory, sorted by file name.

    An invalid file goes into the error list and the other files still load. A file
    whose ``name`` an earlier file already uses is an error too, because pair sets
    are looked up by name. Raises PairFileError when the directory does not exist.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise PairFileError(f"{directory}: pair set directory not found")

    pair_sets: list[PairSet] = []
    errors: list[PairFileError] = []
    files_by_name: dict[str, Path] = {}
    for path in sorted(directory.glob("*.toml"), key=lambda candidate: candidate.name):
        if not path.is_file():
            continue

        try:
            pair_set = load_pair_set(path)
        except PairFileError as error:
            logger.warning("Skipped invalid pair set file: %s", error)
            errors.append(error)
            continue

        if pair_set.name in files_by_name:
            error = PairFileError(
                f'{path}: name "{pair_set.name}" is already used by {files_by_name[pair_set.name]}; '
                "give each pair set a unique name"
            )
            logger.warning("Skipped pair set file: %s", error)
            errors.append(error)
            continue

        files_by_name[pair_set.name] = path
        pair_sets.append(pair_set)

    return pair_sets, errors


def _read_text(path: Path, label: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise PairFileError(f"{label}: file not found") from error
    except IsADirectoryError as error:
        raise PairFileError(f"{label}: is a directory, not a pair set file") from error
    except OSError as error:
        raise PairFileError(f"{label}: cannot read file: {error.strerror}") from error

    if data.startswith(UTF8_BOM):
        raise PairFileError(
            f"{label}: file starts with a UTF-8 byte order mark, which TOML parsers reject; "
            "save it as UTF-8 without BOM"
        )

    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        bad_byte = data[error.start]
        raise PairFileError(
            f"{label}: file is not valid UTF-8 (byte 0x{bad_byte:02x} at offset {error.start}); "
            "save it with UTF-8 encoding"
        ) from error


def _parse_pair_set(text: str, label: str, path: Path | None) -> PairSet:
    """Parse and validate the TOML text of a pair set file."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        # tomllib's message ends with the position, e.g. "(at line 3, column 5)".
        raise PairFileError(f"{label}: invalid TOML: {error}") from error

    pair_set = _build_pair_set(data, label, path)
    _validate(pair_set, label)
    return pair_set


def _build_pair_set(data: dict[str, Any], label: str, path: Path | None) -> PairSet:
    """Check keys and the table structure, then build the set with values not yet type-checked.

    _validate checks the types and values afterwards, so loading and in-memory edits
    share one set of rules.
    """
    _check_keys(data, SET_KEYS, f"{label}: unknown top-level key")
    if "name" not in data:
        raise PairFileError(f'{label}: field "name" is missing; add name = "..." at the top of the file')
    if "language" not in data:
        raise PairFileError(
            f'{label}: field "language" is missing; add a BCP 47 tag such as language = "en" '
            "at the top of the file"
        )
    if "pairs" not in data:
        raise PairFileError(f"{label}: no pairs; add at least one [[pairs]] table with category, a and b")

    raw_pairs = data["pairs"]
    if not isinstance(raw_pairs, list):
        raise PairFileError(
            f'{label}: field "pairs" must be an array of tables, not {_type_name(raw_pairs)}; '
            "write each pair as a [[pairs]] table"
        )

    for index, raw_pair in enumerate(raw_pairs):
        _check_raw_pair(raw_pair, index, label)

    set_language = data["language"]
    ids = _assign_ids([raw.get("id") for raw in raw_pairs], [raw.get("category") for raw in raw_pairs])
    pairs = [
        Pair(
            id=pair_id,
            category=raw["category"],
            a=raw["a"],
            b=raw["b"],
            language=raw.get("language", set_language),
            expect=raw.get("expect"),
            note=raw.get("note"),
            reference=_number_values_as_float(raw.get("reference", {})),
        )
        for pair_id, raw in zip(ids, raw_pairs, strict=True)
    ]
    return PairSet(
        path=path,
        name=data["name"],
        language=set_language,
        description=data.get("description", ""),
        pairs=pairs,
    )


def _check_raw_pair(raw_pair: Any, index: int, label: str) -> None:
    if not isinstance(raw_pair, dict):
        raise PairFileError(
            f"{label}: pairs[{index}]: entry must be a table, not {_type_name(raw_pair)}; "
            "write each pair as a [[pairs]] table"
        )

    entry = _entry_label(label, index, raw_pair.get("id"))
    _check_keys(raw_pair, PAIR_KEYS, f"{entry}: unknown key")
    for key in ("category", "a", "b"):
        if key not in raw_pair:
            raise PairFileError(f'{entry}: field "{key}" is missing')

    reference = raw_pair.get("reference", {})
    if not isinstance(reference, dict):
        raise PairFileError(
            f'{entry}: field "reference" must be a table that maps model names to cosine scores, '
            f"not {_type_name(reference)}"
        )


def _check_keys(table: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise PairFileError(f'{prefix} "{key}"; check the spelling (allowed keys: {", ".join(allowed)})')


def _number_values_as_float(reference: dict[str, Any]) -> dict[str, Any]:
    """Turn integer scores such as 1 into floats, and leave other values for _validate to reject."""
    return {
        model: float(score) if isinstance(score, int) and not isinstance(score, bool) else score
        for model, score in reference.items()
    }


# Ids


def new_pair_id(pair_set: PairSet, category: str) -> str:
    """Return an id for a new pair: the category slug, with -2, -3 … appended on clashes."""
    taken = {pair.id for pair in pair_set.pairs}
    return _unique_id(_slug(category), taken)


def _assign_ids(explicit_ids: list[Any], categories: list[Any]) -> list[Any]:
    """Return each pair's id, generating one for each pair without an ``id`` key.

    A generated id never equals an explicit id anywhere in the set, so files that
    mix both keep their explicit ids. A non-string explicit id is returned as it is,
    for _validate to reject.
    """
    taken = {pair_id for pair_id in explicit_ids if isinstance(pair_id, str)}
    ids = []
    for pair_id, category in zip(explicit_ids, categories, strict=True):
        if pair_id is None:
            pair_id = _unique_id(_slug(category if isinstance(category, str) else ""), taken)
            taken.add(pair_id)
        ids.append(pair_id)
    return ids


def _slug(category: str) -> str:
    """Lower-case the category and join its runs of letters and digits with hyphens."""
    slug = re.sub(r"[\W_]+", "-", category.lower()).strip("-")
    return slug or "pair"


def _unique_id(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


# Validation


def validate_pair_set(pair_set: PairSet) -> None:
    """Raise PairFileError unless the pair set follows the rules that loading applies.

    Use it after editing a set in memory. Messages name the set's file, or the set's
    name when it has no file yet.
    """
    _validate(pair_set, _set_label(pair_set))


def _set_label(pair_set: PairSet) -> str:
    if pair_set.path is not None:
        return str(pair_set.path)
    return f'pair set "{pair_set.name}" (not saved)'


def _validate(pair_set: PairSet, label: str) -> None:
    _check_text_field(pair_set.name, f'{label}: field "name"')
    _check_language(pair_set.language, f'{label}: field "language"')
    _check_type(pair_set.description, str, f'{label}: field "description"')

    pairs = pair_set.pairs
    if not isinstance(pairs, list):
        raise PairFileError(f'{label}: field "pairs" must be a list of Pair, not {_type_name(pairs)}')
    if not pairs:
        raise PairFileError(f"{label}: no pairs; add at least one [[pairs]] table with category, a and b")

    first_index_by_id: dict[str, int] = {}
    for index, pair in enumerate(pairs):
        if not isinstance(pair, Pair):
            raise PairFileError(f"{label}: pairs[{index}]: entry must be a Pair, not {_type_name(pair)}")

        entry = _entry_label(label, index, pair.id)
        _check_pair(pair, entry)
        if pair.id in first_index_by_id:
            raise PairFileError(
                f'{entry}: duplicate id "{pair.id}" (also used by pairs[{first_index_by_id[pair.id]}]); '
                "give each pair a unique id"
            )
        first_index_by_id[pair.id] = index


def _check_pair(pair: Pair, entry: str) -> None:
    _check_text_field(pair.id, f'{entry}: field "id"')
    if pair.id != pair.id.strip():
        raise PairFileError(f'{entry}: field "id" has leading or trailing whitespace; remove it')

    _check_text_field(pair.category, f'{entry}: field "category"')
    _check_text_field(pair.a, f'{entry}: field "a"')
    _check_text_field(pair.b, f'{entry}: field "b"')
    _check_language(pair.language, f'{entry}: field "language"')

    if pair.expect is not None and pair.expect not in EXPECT_VALUES:
        shown = f'"{pair.expect}"' if isinstance(pair.expect, str) else _type_name(pair.expect)
        raise PairFileError(
            f'{entry}: field "expect" has invalid value {shown}; use "same" or "different", '
            "or remove the field"
        )
    if pair.note is not None:
        _check_type(pair.note, str, f'{entry}: field "note"')
    _check_reference(pair.reference, entry)


def _check_reference(reference: Any, entry: str) -> None:
    if not isinstance(reference, dict):
        raise PairFileError(
            f'{entry}: field "reference" must be a table that maps model names to cosine scores, '
            f"not {_type_name(reference)}"
        )

    for model, score in reference.items():
        if not isinstance(model, str) or not model.strip():
            raise PairFileError(
                f'{entry}: field "reference" has an empty or non-string model name {model!r}; '
                "use the model name as the key"
            )

        where = f'{entry}: field "reference.{model}"'
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise PairFileError(f"{where} must be a number, not {_type_name(score)}")
        if not math.isfinite(score):
            raise PairFileError(f"{where} is {score}, which is not finite; give the published cosine score")
        if not -1.0 <= score <= 1.0:
            raise PairFileError(f"{where} is {score}, outside [-1, 1]; a cosine score lies between -1 and 1")


def _check_text_field(value: Any, where: str) -> None:
    """Reject a non-string, an empty string or a whitespace-only string, without changing the text."""
    _check_type(value, str, where)
    if value == "":
        raise PairFileError(f"{where} is empty")
    # str.strip() covers the Unicode spaces too, such as U+3000 IDEOGRAPHIC SPACE.
    if not value.strip():
        raise PairFileError(f"{where} contains only whitespace")

    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        code_point = ord(value[error.start])
        raise PairFileError(
            f"{where} contains a lone surrogate (U+{code_point:04X}), which UTF-8 cannot encode"
        ) from error


def _check_language(value: Any, where: str) -> None:
    _check_type(value, str, where)
    if not LANGUAGE_TAG_PATTERN.fullmatch(value):
        raise PairFileError(
            f'{where} has invalid language tag "{value}"; use a BCP 47 tag such as "en", "ja" or "ja-JP"'
        )


def _check_type(value: Any, expected: type, where: str) -> None:
    if not isinstance(value, expected):
        expected_name = _TOML_TYPE_NAMES.get(expected.__name__, expected.__name__)
        raise PairFileError(f"{where} must be a {expected_name}, not {_type_name(value)}")


def _type_name(value: Any) -> str:
    """Return the TOML name of a value's type, such as "integer" or "table"."""
    python_name = type(value).__name__
    return _TOML_TYPE_NAMES.get(python_name, python_name)


def _entry_label(label: str, index: int, pair_id: Any) -> str:
    if isinstance(pair_id, str) and pair_id.strip():
        return f'{label}: pairs[{index}] (id "{pair_id}")'
    return f"{label}: pairs[{index}]"


# Saving


def save_pair_set(pair_set: PairSet, path: str | Path | None = None) -> Path:
    """Validate the pair set and write it to ``path``, else to ``pair_set.path``; return the path.

    An existing file is updated in place: comments, key order and the formatting of
    unchanged pairs survive, changed fields are rewritten, new pairs are appended and
    removed pairs are deleted together with the comment lines directly above them.
    Pairs are matched by id, and a pair whose id was generated gets its id written.
    The written text must load back as the same pair set, else nothing is written.
    The file is replaced atomically. A symlink is followed, so the link survives.
    ``pair_set.path`` is left unchanged.
    """
    if path is not None:
        target = Path(path)
    elif pair_set.path is not None:
        target = pair_set.path
    else:
        raise PairFileError(f'pair set "{pair_set.name}" has no file; pass a path to save it')

    label = str(target)
    _validate(pair_set, label)

    # NOTE: a file changed on disk since it was loaded is merged by pair id, so an
    # edit made elsewhere to a pair that is also edited here is overwritten.
    if target.exists():
        document = _read_document(target, label)
        _update_document(document, pair_set)
    else:
        document = _new_document(pair_set)

    text = document.as_string()
    _check_round_trip(text, pair_set, label)
    write_path = target.resolve() if target.is_symlink() else target
    _write_atomic(write_path, text.encode("utf-8"), label)
    logger.info("Saved pair set %r with %d pairs to %s", pair_set.name, len(pair_set.pairs), target)
    return target


def _read_document(path: Path, label: str) -> TOMLDocument:
    text = _read_text(path, label)
    try:
        return tomlkit.parse(text)
    except ParseError as error:
        raise PairFileError(
            f"{label}: cannot update the file because it is not valid TOML ({error}); "
            "fix it or save to another path"
        ) from error


def _check_round_trip(text: str, pair_set: PairSet, label: str) -> None:
    """Raise PairFileError unless the text loads back as the same pair set."""
    hint = "Nothing was written. Fix the existing file by hand or save to another path."
    try:
        loaded = _parse_pair_set(text, label, pair_set.path)
    except PairFileError as error:
        raise PairFileError(f"{label}: the updated file would not load back ({error}). {hint}") from error

    if _set_content(loaded) != _set_content(pair_set):
        raise PairFileError(f"{label}: the updated file would load back as different pairs. {hint}")


def _set_content(pair_set: PairSet) -> tuple[Any, ...]:
    return (pair_set.name, pair_set.language, pair_set.description, pair_set.pairs)


def _write_atomic(target: Path, data: bytes, label: str) -> None:
    """Write to a temporary file in the target's directory, fsync it, then os.replace the target.

    Readers see the old file or the new one, never a partial write. An existing
    file's permission bits are kept.
    """
    directory = target.parent
    temporary = directory / f".{target.name}.{secrets.token_hex(4)}.tmp"
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = None

    try:
        # O_EXCL keeps a stale or foreign temporary file from being overwritten.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            if mode is not None:
                os.chmod(temporary, mode)
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    except OSError as error:
        raise PairFileError(f"{label}: cannot write file: {error.strerror}") from error

    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    """Flush the directory entry of a replaced file, where the platform allows it."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError as error:
        logger.debug("Cannot open directory %s to fsync it: %s", directory, error)
        return
    try:
        os.fsync(descriptor)
    except OSError as error:
        logger.debug("Cannot fsync directory %s: %s", directory, error)
    finally:
        os.close(descriptor)


def _new_document(pair_set: PairSet) -> TOMLDocument:
    document = tomlkit.document()
    document["name"] = pair_set.name
    document["language"] = pair_set.language
    if pair_set.description:
        document["description"] = pair_set.description

    tables = tomlkit.aot()
    for pair in pair_set.pairs:
        tables.append(_new_pair_table(pair, pair_set.language))
    document.append("pairs", tables)
    return document


def _new_pair_table(pair: Pair, set_language: str) -> Table:
    table = tomlkit.table()
    table["id"] = pair.id
    table["category"] = pair.category
    if pair.language != set_language:
        table["language"] = pair.language
    table["a"] = pair.a
    table["b"] = pair.b
    if pair.expect is not None:
        table["expect"] = pair.expect
    if pair.note is not None:
        table["note"] = pair.note
    if pair.reference:
        table["reference"] = _new_reference_table(pair.reference)
    return table


def _new_reference_table(reference: dict[str, float]) -> Table:
    table = tomlkit.table()
    for model, score in reference.items():
        table[model] = float(score)
    return table


def _update_document(document: TOMLDocument, pair_set: PairSet) -> None:
    """Apply the pair set to a parsed file, touching only what differs."""
    _set_key(document, "name", pair_set.name)
    _set_key(document, "language", pair_set.language)
    if pair_set.description or "description" in document:
        _set_key(document, "description", pair_set.description)

    pairs_item = document.get("pairs")
    if not isinstance(pairs_item, AoT):
        # An inline array of tables, or no pairs at all: the pairs are rewritten as
        # [[pairs]] tables at the end of the file, where TOML requires them.
        if "pairs" in document:
            del document["pairs"]
        rewritten = tomlkit.aot()
        for pair in pair_set.pairs:
            rewritten.append(_new_pair_table(pair, pair_set.language))
        document.append("pairs", rewritten)
        return

    _move_attached_comments(document, pairs_item)
    _update_pair_tables(pairs_item, pair_set)


def _update_pair_tables(tables: AoT, pair_set: PairSet) -> None:
    """Update matched tables, create tables for new pairs and drop the rest, in the set's order."""
    old_tables = list(tables.body)
    old_ids = _assign_ids(
        [_plain(table.get("id")) for table in old_tables],
        [_plain(table.get("category")) for table in old_tables],
    )
    table_by_id: dict[Any, Table] = {}
    for pair_id, table in zip(old_ids, old_tables, strict=True):
        table_by_id.setdefault(pair_id, table)

    # Tables are compared by identity: tomlkit tables with equal content compare equal.
    predecessors = [None, *old_tables[:-1]]
    old_predecessor = {id(table): previous for previous, table in zip(predecessors, old_tables, strict=True)}
    new_tables: list[Table] = []
    for pair in pair_set.pairs:
        table = table_by_id.pop(pair.id, None)
        if table is None:
            table = _new_pair_table(pair, pair_set.language)
        else:
            _update_pair_table(table, pair, pair_set.language)

        if new_tables:
            previous = new_tables[-1]
            is_new_neighbour = id(table) not in old_predecessor or old_predecessor[id(table)] is not previous
            if is_new_neighbour:
                _separate_from_previous(table, previous)
        new_tables.append(table)

    tables[:] = new_tables


def _update_pair_table(table: Table, pair: Pair, set_language: str) -> None:
    container = table.value
    _set_key(container, "id", pair.id, first=True)
    _set_key(container, "category", pair.category)
    if "language" in container or pair.language != set_language:
        _set_key(container, "language", pair.language)
    _set_key(container, "a", pair.a)
    _set_key(container, "b", pair.b)
    _set_optional_key(container, "expect", pair.expect)
    _set_optional_key(container, "note", pair.note)
    _update_reference(container, pair.reference)


def _update_reference(container: Container, reference: dict[str, float]) -> None:
    if not reference:
        if "reference" in container:
            del container["reference"]
        return

    current = container.get("reference")
    if not isinstance(current, (Table, InlineTable)):
        if current is not None:
            del container["reference"]
        table = _new_reference_table(reference)
        table.trivia.indent = "\n"
        _insert_key(container, "reference", table)
        return

    for model in [model for model in current if model not in reference]:
        del current[model]
    for model, score in reference.items():
        if isinstance(current, Table):
            _set_key(current.value, model, float(score))
        elif _plain(current.get(model)) != float(score):
            current[model] = float(score)


def _set_optional_key(container: Container, key: str, value: str | None) -> None:
    if value is not None:
        _set_key(container, key, value)
    elif key in container:
        del container[key]


def _set_key(container: Container, key: str, value: Any, *, first: bool = False) -> None:
    """Set a key only when its value differs, so unchanged values keep their formatting."""
    if key not in container:
        _insert_key(container, key, value, first=first)
        return

    current = _plain(container[key])
    if type(current) is type(value) and current == value:
        return
    container[key] = value


def _insert_key(container: Container, key: str, value: Any, *, first: bool = False) -> None:
    """Add a key before the first key-value (``first``) or after the last one.

    The position keeps new keys above the blank lines and comments that end a table
    and above any sub-table, where tomlkit's public append would not put them.
    """
    body = container.body
    key_value_indexes = [
        index
        for index, (body_key, item) in enumerate(body)
        if body_key is not None and (body_key.is_dotted() or not isinstance(item, (Table, AoT)))
    ]
    if first and key_value_indexes:
        position = key_value_indexes[0]
    elif key_value_indexes:
        position = key_value_indexes[-1] + 1
    else:
        position = 0

    if position >= len(body):
        container.append(key, value)
    else:
        # NOTE: Container._insert_at is private tomlkit API, checked with tomlkit 0.15.3.
        # No public call inserts a key at a position.
        container._insert_at(position, key, value)


def _move_attached_comments(document: TOMLDocument, tables: AoT) -> None:
    """Move the comment lines directly above each [[pairs]] header into that header's indent.

    tomlkit stores them at the end of the table before, so without the move a deleted
    or reordered pair would leave its comment with its neighbour.
    """
    document_index = next(index for index, (_, item) in enumerate(document.body) if item is tables)
    bodies_above = [document.body[:document_index]]
    bodies_above += [_last_container(table).body for table in tables.body[:-1]]

    for table, body_above in zip(tables.body, bodies_above, strict=True):
        run: list[Comment] = []
        for key, item in reversed(body_above):
            if key is not None or not isinstance(item, Comment):
                break
            run.append(item)
        run.reverse()

        text = "".join(comment.as_string() for comment in run)
        for comment in run:
            # An empty comment renders as nothing, the way tomlkit renders a removed key.
            comment.trivia.indent = ""
            comment.trivia.comment_ws = ""
            comment.trivia.comment = ""
            comment.trivia.trail = ""
        table.trivia.indent = text + table.trivia.indent


def _last_container(table: Table) -> Container:
    """Return the container whose lines are rendered last for the table, such as a sub-table."""
    container = table.value
    while container.body:
        key, item = container.body[-1]
        if key is None or key.is_dotted() or not isinstance(item, Table):
            break
        container = item.value
    return container


def _separate_from_previous(table: Table, previous: Table) -> None:
    """Put a blank line above a table that follows a new neighbour, unless one is already there."""
    if previous.as_string().endswith("\n\n") or table.trivia.indent.startswith("\n"):
        return
    table.trivia.indent = "\n" + table.trivia.indent


def _plain(value: Any) -> Any:
    """Return a tomlkit item as the plain Python value it stands for."""
    unwrap = getattr(value, "unwrap", None)
    return unwrap() if unwrap is not None else value
