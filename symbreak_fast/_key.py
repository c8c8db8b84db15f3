"""Keys: a Philox key (k0, k1) and the name-derivation rule of ``Key.child``."""
from __future__ import annotations

import hashlib
import operator
import struct

_CHILD_DOMAIN = b"symbreak_fast.Key.child.v1\x00"
_UNPACK_WORDS = struct.Struct("<II").unpack


class Key:
    """A 64-bit Philox key: words ``(k0, k1) = (seed mod 2**32, seed div 2**32)``.

    ``Key(seed)`` takes an int in [0, 2**64). ``key.child("encoder.layers.3.weight")``
    (also ``key / "encoder.layers.3.weight"``) derives an independent key from a
    string: the first 8 bytes of SHA-256(b"symbreak_fast.Key.child.v1\\0" ||
    k0 || k1 || utf8(name)), words little-endian. That is deterministic and the
    same on every platform, process and version (Python's ``hash()`` is never
    used). Names are opaque strings: ``key / "a.b"`` and ``key / "a" / "b"`` are
    different keys.
    """

    __slots__ = ("_k0", "_k1")

    def __init__(self, seed):
        if isinstance(seed, Key):
            self._k0, self._k1 = seed._k0, seed._k1
            return
        try:
            if isinstance(seed, bool) or not hasattr(seed, "__index__"):
                raise TypeError
            seed = operator.index(seed)          # numpy arrays have __index__ but only 0-d ones work
        except TypeError:
            raise TypeError(
                f"seed must be an int in [0, 2**64), got {type(seed).__name__} {seed!r}; "
                "pass e.g. Key(1234) (floats and strings are not accepted: use key.child(name) for names)") from None
        if not 0 <= seed < 2 ** 64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}; reduce it modulo 2**64 if you need to")
        self._k0 = seed & 0xFFFFFFFF
        self._k1 = seed >> 32

    @classmethod
    def from_words(cls, k0: int, k1: int) -> "Key":
        """The key with Philox key words (k0, k1), each in [0, 2**32)."""
        for name, w in (("k0", k0), ("k1", k1)):
            if isinstance(w, bool) or not hasattr(w, "__index__") or not 0 <= operator.index(w) < 2 ** 32:
                raise ValueError(f"{name} must be an int in [0, 2**32), got {w!r}")
        return cls(operator.index(k0) | (operator.index(k1) << 32))

    @property
    def words(self) -> tuple[int, int]:
        """The Philox key words (k0, k1)."""
        return self._k0, self._k1

    @property
    def seed(self) -> int:
        """The 64-bit integer with ``Key(key.seed) == key``."""
        return self._k0 | (self._k1 << 32)

    def __index__(self) -> int:
        return self.seed

    def child(self, name: str) -> "Key":
        """An independent key derived from this one and ``name`` (any str)."""
        if not isinstance(name, str):
            raise TypeError(f"child key names are str, got {type(name).__name__} {name!r}; "
                            "use str(x) or an f-string for numbers")
        try:
            raw = name.encode("utf-8")
        except UnicodeEncodeError as e:      # lone surrogates (e.g. from os.fsdecode of bad bytes)
            raise ValueError(f"child key name {name!r} is not valid Unicode text ({e.reason} at position "
                             f"{e.start}); names are hashed as UTF-8: pass a proper str") from None
        digest = hashlib.sha256(_CHILD_DOMAIN + struct.pack("<II", self._k0, self._k1) + raw).digest()
        child = Key.__new__(Key)          # words come from the digest: no validation needed
        child._k0, child._k1 = _UNPACK_WORDS(digest[:8])
        return child

    def __truediv__(self, name: str) -> "Key":
        return self.child(name)

    def __eq__(self, other):
        return isinstance(other, Key) and self.words == other.words

    def __hash__(self):
        return hash(("symbreak_fast.Key", self._k0, self._k1))

    def __repr__(self):
        return f"Key({self.seed:#x})"


def as_key(key) -> Key:
    """A Key from a Key or an int seed; anything else is a TypeError."""
    if isinstance(key, Key):
        return key
    return Key(key)
