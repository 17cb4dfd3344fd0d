"""C identifiers, string literals and comment text made from arbitrary Keras names.

Layer names come from strangers: "1st-lstm", "a.b", "int", "LSTM" next to "lstm", "*/". Every name
that reaches a generated header goes through here, so the header compiles as C99 and as C++ and no two
declarations collide: identifiers match [A-Za-z][A-Za-z0-9_]*, never start with an underscore nor hold
"__" (reserved in C and C++), are no keyword of either language, have at most 63 characters (all that
C99 promises to tell apart), and are unique. A name too long is cut and ends with a short stable hash.
"""

from __future__ import annotations

import hashlib
import re

# C99/C11 keywords, C++ keywords and alternative tokens, and macros the standard headers we include define.
_WORDS = """auto break case char const continue default do double else enum extern float for goto if inline int long
    register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while
    alignas alignof and and_eq asm bitand bitor bool catch char8_t char16_t char32_t class compl concept consteval
    constexpr constinit const_cast co_await co_return co_yield decltype delete dynamic_cast explicit export false
    friend mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public
    reinterpret_cast requires static_assert static_cast template this thread_local throw true try typeid typename
    using virtual wchar_t xor xor_eq NAN INFINITY HUGE_VAL HUGE_VALF EOF NULL"""
RESERVED = frozenset(_WORDS.split())
MAX_IDENTIFIER = 63  # C99 5.2.4.1: 63 significant initial characters in an internal identifier or a macro name
MAX_STEM = 32  # a layer's stem: leaves room for "_BACKWARD_RECURRENT_KERNEL_DIM1" within MAX_IDENTIFIER
HASH_LENGTH = 6


def short_hash(text: str) -> str:
    """A short stable hash of `text` (the first HASH_LENGTH hex digits of its SHA-256)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def fit(head: str, tail: str = "", limit: int = MAX_IDENTIFIER, key: str | None = None) -> str:
    """`head + tail` when it has at most `limit` characters; else `head` cut short and ended with "_" and
    a short hash of `key` (default: `head`), so that two long heads stay apart, then `tail`, whole.
    The hash is upper case in an upper-case head (a macro)."""
    if len(head) + len(tail) <= limit:
        return head + tail
    keep = limit - len(tail) - 1 - HASH_LENGTH
    if keep < 1:
        raise ValueError(f"identifier tail {tail!r} leaves no room within {limit} characters")
    digest = short_hash(head if key is None else key)
    if head == head.upper():
        digest = digest.upper()
    return f"{head[:keep].rstrip('_') or 'x'}_{digest}{tail}"


def sanitize(name: str, fallback: str = "x", limit: int = MAX_STEM) -> str:
    """`name` as an identifier fragment: runs of characters outside [A-Za-z0-9] become one "_", no
    leading/trailing "_", a leading digit gets "n" before it; longer than `limit` characters, it is cut
    and ends with a short hash of `name` (see `fit`)."""
    stem = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or fallback
    stem = "n" + stem if stem[0].isdigit() else stem
    return fit(stem, "", limit, key=name)


class NameTable:
    """Hands out unique C identifiers of at most MAX_IDENTIFIER characters (so they are also unique
    within C99's 63 significant characters); a taken or reserved name gets _2, _3, ... appended."""

    def __init__(self) -> None:
        self.taken: set[str] = set()
        self.stems: set[str] = set()

    def stem(self, name: str, fallback: str = "x") -> str:
        """A stem for a layer (or other named thing), unique ignoring case among stems, so that its
        lower-case array names and upper-case macro names never meet another stem's."""
        base = sanitize(name, fallback)
        candidate, k = base, 2
        while candidate.upper() in self.stems:
            candidate, k = f"{base}_{k}", k + 1
        self.stems.add(candidate.upper())
        return candidate

    def claim(self, head: str, tail: str = "") -> str:
        """The identifier `head + tail` (both made of [A-Za-z0-9_]) fitted within MAX_IDENTIFIER characters
        (`fit`: `head` shortened, `tail` kept whole) or, when taken or reserved, the first free one with
        `_2`, `_3`, ... after `tail`."""
        return self.claim_parts(head, tail)[0]

    def claim_parts(self, head: str, tail: str = "") -> tuple[str, str]:
        """`claim`, and the tail the identifier got (`tail` plus any `_2` counter), for names derived
        from it (an array's dimension macros)."""
        k = 1
        while True:
            used = tail if k == 1 else f"{tail}_{k}"
            candidate = fit(head, used)
            if candidate not in self.taken and candidate not in RESERVED:
                self.taken.add(candidate)
                return candidate, used
            k += 1


def c_string(text: str) -> str:
    """A C string literal holding `text` as UTF-8: quotes, backslashes, "?" (no trigraphs) and every
    byte outside printable ASCII escaped (octal, always three digits)."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\?':
            out.append("\\" + char)
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def comment_text(text: str) -> str:
    """`text` safe inside a /* */ comment: printable ASCII only (others as \\uXXXX), no "*/", no "/*",
    no trigraph."""
    safe = "".join(c if 32 <= ord(c) < 127 else f"\\u{ord(c):04x}" for c in text)
    while "*/" in safe or "/*" in safe or "??" in safe:
        safe = safe.replace("*/", "* /").replace("/*", "/ *").replace("??", "? ?")
    return safe
