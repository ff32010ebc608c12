"""Write rust/index/casefold_table.rs: Unicode's full case folding as Python's str.casefold
does it, one entry per code point that folds to something else.

The index's folded columns (``ilike``) are made by the core and compared with text folded by
Python; one table made from Python's own fold keeps the two the same. Case folding is stable
across Unicode versions for characters already assigned, so a table made with one Python reads
the same as another's for every character both know. Run it again with the Python the project
pins when that Python moves to a new Unicode version; tests/search/test_casefold.py checks the
table against the running Python's fold for every code point.

    .venv/bin/python scripts/casefold-table.py
"""

from __future__ import annotations

import sys
import unicodedata
from pathlib import Path

TARGET = Path(__file__).resolve().parent.parent / "rust" / "index" / "casefold_table.rs"


def entries() -> list[tuple[int, str]]:
    found = []
    for code in range(0x80, 0x110000):
        if 0xD800 <= code <= 0xDFFF:  # surrogates: never in a Rust string
            continue
        char = chr(code)
        folded = char.casefold()
        if folded != char:
            found.append((code, folded))
    return found


def rust_string(text: str) -> str:
    return '"' + "".join(f"\\u{{{ord(c):x}}}" for c in text) + '"'


def main() -> None:
    rows = entries()
    lines = [
        "// Made by scripts/casefold-table.py from Python "
        f"{sys.version_info.major}.{sys.version_info.minor}'s str.casefold "
        f"(Unicode {unicodedata.unidata_version}). Do not edit.",
        "",
        "/// The Unicode version of the table.",
        f'pub const UNICODE_VERSION: &str = "{unicodedata.unidata_version}";',
        "",
        "/// (code point, its full case folding) for every non-ASCII code point that folds to",
        "/// something else, by code point.",
        "#[rustfmt::skip]",
        "pub const FOLDS: &[(u32, &str)] = &[",
    ]
    lines += [f"    (0x{code:x}, {rust_string(folded)})," for code, folded in rows]
    lines += ["];", ""]
    TARGET.write_text("\n".join(lines), encoding="utf-8")
    print(f"{TARGET}: {len(rows)} folds (Unicode {unicodedata.unidata_version})")


if __name__ == "__main__":
    main()
