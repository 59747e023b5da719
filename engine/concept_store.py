"""Compact in-memory forms of the RxNorm vocabulary: the NDC index, the concept table, the name index
and the trigram index behind "did you mean".

A worker holds tens of thousands of RxNorm concepts and hundreds of thousands of NDCs. As Python
objects (a record per concept, a dict entry and a string per name or code, 64-bit NDC arrays) they
took 13 MB more than the starter vocabulary, and building them (the NDC file decompressed whole, a
DrugConcept per row) left twice that again in half-empty heap pages: 39 MB more resident memory per
worker. Here each is a few integer arrays and one byte string, filled as the rows stream in (from
the shipped files or a COPY): no object per row is kept, and few are made while loading (under
5 MB more than the starter vocabulary, 7 MB resident). Lookups answer exactly what the dicts did.
"""

from __future__ import annotations

import operator
import sys
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice

from engine.identity import fold

__all__ = ["CodedDrug", "ConceptRows", "ConceptTable", "NameIndex", "NdcIndex", "TrigramIndex"]

_U32 = 0xFFFFFFFF
_LOW_HALF = 0 if sys.byteorder == "little" else 1  # where the low 32 bits of a 64-bit integer are


def _ids(values: array[int], table_size: int) -> array[int]:
    """`values` (indexes into a table of `table_size`) in the narrowest array that holds them, sized
    exactly (an array grown by appends carries up to an eighth more)."""
    return array("H" if table_size <= 0xFFFF else "I", values)


# --------------------------------------------------------------------------------------------------
# NDC -> product


class NdcIndex:
    """NDC (11 digits) -> the RXCUI of the product it packages, for a few hundred thousand NDCs in
    about 1.3 MB: the NDCs sorted and split by their high bits (an 11-digit NDC is below 2**37) into
    buckets of 32-bit low parts searched by bisection, beside each NDC's product as a 16-bit number
    in a table of the distinct product RXCUIs (tens of thousands of products have NDCs). A
    DrugConcept per NDC would cost a worker over 150 MB, two 64-bit arrays 3.4 MB."""

    __slots__ = ("_low", "_product_ids", "_products", "_starts")

    # An NDC has 11 digits; the bucket table covers up to 12 (2**40 > 10**12), never more.
    _MAX_KEY = 1 << 40

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        ordered = sorted((int(ndc), int(product)) for ndc, product in pairs if ndc.isdigit() and product.isdigit())
        # An NDC given twice answers its smallest product (what a bisection over sorted pairs found first).
        unique = [p for i, p in enumerate(ordered) if i == 0 or ordered[i - 1][0] != p[0]]
        self._fill(_blocks(unique))

    @classmethod
    def from_sorted(cls, pairs: Iterable[tuple[int, int]]) -> NdcIndex:
        """From (NDC, RXCUI) integers already in NDC order, streamed: no list of all of them is built."""
        return cls.from_blocks(_blocks(pairs))

    @classmethod
    def from_blocks(cls, blocks: Iterable[tuple[Sequence[int], Sequence[int]]]) -> NdcIndex:
        """From blocks of (NDCs, their product RXCUIs), the NDCs in ascending order across all the
        blocks. Each block is checked and appended at C speed: no Python step per NDC."""
        index = cls.__new__(cls)
        index._fill(blocks)
        return index

    def _fill(self, blocks: Iterable[tuple[Sequence[int], Sequence[int]]]) -> None:
        # _starts[b] is the first row whose NDC is at least b * 2**32; the last entry is the count.
        starts: array[int] = array("I")
        low: array[int] = array("I")
        ids: array[int] = array("H")
        products: dict[int, int] = {}  # product RXCUI -> its number, in order of first sight
        previous = -1
        for ndcs, block_products in blocks:
            if len(ndcs) != len(block_products):
                raise ValueError("as many products as NDCs are needed")
            if not ndcs:
                continue
            if ndcs[0] <= previous or not all(map(operator.lt, ndcs, islice(ndcs, 1, None))):
                raise ValueError("NDCs are not in ascending order")
            if not 0 <= ndcs[0] or ndcs[-1] >= self._MAX_KEY:
                raise ValueError("an NDC has at most 12 digits")
            previous = ndcs[-1]
            for bucket in range(len(starts), (previous >> 32) + 1):
                starts.append(len(low) + bisect_left(ndcs, bucket << 32))
            # The low 32 bits of each NDC, read from the bytes of the 64-bit values.
            halves: array[int] = array("I")
            halves.frombytes(array("q", ndcs).tobytes())
            low.extend(halves[_LOW_HALF::2])
            ids.extend([products.setdefault(p, len(products)) for p in block_products])
            if ids.typecode == "H" and len(products) > 0xFFFF:
                ids = array("I", ids)
        starts.append(len(low))
        self._starts, self._low, self._product_ids = starts, low, ids
        self._products: array[int] = array("q", products)

    def __len__(self) -> int:
        return len(self._low)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """(NDC, product RXCUI) as integers, in NDC order."""
        for bucket in range(len(self._starts) - 1):
            for i in range(self._starts[bucket], self._starts[bucket + 1]):
                yield (bucket << 32) | self._low[i], self._products[self._product_ids[i]]

    def product(self, ndc: str) -> str | None:
        if not ndc.isdigit():
            return None
        key = int(ndc)
        bucket = key >> 32
        if bucket + 1 >= len(self._starts):
            return None
        low, end = key & _U32, self._starts[bucket + 1]
        i = bisect_left(self._low, low, self._starts[bucket], end)
        if i < end and self._low[i] == low:
            return str(self._products[self._product_ids[i]])
        return None


def _blocks(pairs: Iterable[tuple[int, int]]) -> Iterator[tuple[list[int], list[int]]]:
    """(NDCs, products) in blocks of a few thousand pairs."""
    it = iter(pairs)
    while chunk := list(islice(it, 4096)):
        yield [ndc for ndc, _ in chunk], [product for _, product in chunk]


# --------------------------------------------------------------------------------------------------
# RXCUI -> what the code denotes


@dataclass(frozen=True, slots=True)
class CodedDrug:
    """What an RxNorm code denotes, as a lookup returns it (a DrugConcept less its names, which are
    in the name index)."""

    ingredients: tuple[str, ...] | None  # ingredient names; None when one of them is not known
    strength: str | None
    dose_form: str | None
    active: bool


def _canonical_code(code: str) -> bool:
    """Digits only, no leading zero, below 2**32: a code the integer column stores and gives back
    as the same string."""
    if not (code.isascii() and code.isdigit()) or (code[0] == "0" and code != "0"):
        return False
    return len(code) < 10 or int(code) <= _U32


_SUGGESTED_TTYS = frozenset(("IN", "BN", "PIN"))  # the names "did you mean" offers


class ConceptRows:
    """The RxNorm concepts of a concept table as they stream in (from rules/knowledge/rxnorm.tsv or
    a COPY of clinical.drug_concepts), kept in columns until the vocabulary resolves them: for each
    RxNorm concept its code, its ingredient RXCUIs, strength and dose form (each a number for its
    distinct value) and whether it is active; the folded names of the active ones in one byte
    string; the ingredients (TTY IN) in order; and the names "did you mean" offers. NDC rows live in
    NdcIndex and add nothing here but, like every IN, BN or PIN, a name to suggest."""

    def __init__(self) -> None:
        self.keys: array[int] = array("q")  # the code as a number; -1: not a plain number, in other_codes
        self.other_codes: dict[int, str] = {}  # row -> code
        self.sets: array[int] = array("I")
        self.strengths: array[int] = array("I")
        self.forms: array[int] = array("I")
        self.active = bytearray()
        # Each distinct value -> its number, in order: the comma-separated RXCUIs of the
        # ingredients cell ("" is 0), the strength and the dose form (None is 0).
        self.set_ids: dict[str, int] = {"": 0}
        self.strength_ids: dict[str | None, int] = {None: 0}
        self.form_ids: dict[str | None, int] = {None: 0}
        # Folded names of active RxNorm concepts, UTF-8 in one buffer, with the row each names.
        self.name_bytes = bytearray()
        self.name_ends: array[int] = array("I")
        self.name_rows: array[int] = array("I")
        self.ingredients: list[tuple[str, str, bool]] = []  # (RXCUI, folded name, active) of each IN
        self.suggestable: list[str] = []

    def __len__(self) -> int:
        return len(self.keys)

    def add(
        self,
        system: str,
        code: str,
        tty: str,
        name: str,
        ingredients: str,
        strength: str | None,
        dose_form: str | None,
        active: bool,
    ) -> None:
        """One concept; `ingredients` its RXCUIs comma-separated, as the table writes them."""
        rxnorm = system == "rxnorm"
        suggested = active and tty in _SUGGESTED_TTYS
        folded = fold(name) if suggested or (rxnorm and (active or tty == "IN")) else ""
        if suggested:
            self.suggestable.append(folded)
        if not rxnorm:
            return
        if tty == "IN":
            self.ingredients.append((code, folded, active))
        row = len(self.keys)
        if _canonical_code(code):
            self.keys.append(int(code))
        else:
            self.keys.append(-1)
            self.other_codes[row] = code
        self.sets.append(self.set_ids.setdefault(ingredients, len(self.set_ids)))
        self.strengths.append(self.strength_ids.setdefault(strength, len(self.strength_ids)))
        self.forms.append(self.form_ids.setdefault(dose_form, len(self.form_ids)))
        self.active.append(active)
        if active:
            self.name_bytes += folded.encode("utf-8", "surrogatepass")
            self.name_ends.append(len(self.name_bytes))
            self.name_rows.append(row)

    def add_cells(self, cells: Sequence[str]) -> None:
        """A validated line of the concept table (CONCEPT_COLUMNS, `active` "1" or "0")."""
        self.add(cells[0], cells[1], cells[2], cells[3], cells[4], cells[6] or None, cells[7] or None, cells[9] == "1")

    def names(self) -> Iterator[tuple[str, int]]:
        """(folded name, row) of every active RxNorm concept, in arrival order."""
        start = 0
        for end, row in zip(self.name_ends, self.name_rows, strict=True):
            yield self.name_bytes[start:end].decode("utf-8", "surrogatepass"), row
            start = end

    def ingredient_rxcuis(self) -> list[tuple[str, ...]]:
        """The RXCUI lists by their number (0: none)."""
        return [tuple(i for i in cell.split(",") if i) for cell in self.set_ids]


class ConceptTable(Mapping[str, CodedDrug]):
    """RXCUI -> CodedDrug for every RxNorm concept, active and retired, in a few hundred kilobytes:
    the codes as a sorted integer array searched by bisection, beside a small number per row for
    its ingredient names, strength and dose form (each distinct value held once) and a byte for
    active. A CodedDrug is made on lookup. A code that is not a plain number (no RxNorm code so far)
    is kept in a small dict beside the array, so every code answers as it was given."""

    __slots__ = ("_active", "_codes", "_form_values", "_forms", "_ingredients", "_other", "_sets",
                 "_strength_values", "_strengths")  # fmt: skip

    def __init__(self, rows: ConceptRows, ingredients: Sequence[tuple[str, ...] | None]) -> None:
        """`ingredients[n]`: the names of the n-th RXCUI list of `rows` (None: one not known)."""
        keys = rows.keys
        # Rows by code (a stable sort: a code given twice keeps its rows in arrival order), and of
        # each code its last row, what a dict filled in order held. Integers and arrays only.
        numbered = [row for row in range(len(keys)) if keys[row] >= 0]
        numbered.sort(key=keys.__getitem__)
        last_of_code = zip(numbered, islice(numbered, 1, None), strict=False)  # each row and the next
        order: array[int] = array("I", (row for row, after in last_of_code if keys[row] != keys[after]))
        if numbered:
            order.append(numbered[-1])
        del numbered
        self._codes: array[int] = array("I", map(keys.__getitem__, order))
        last: dict[str, int] = {code: row for row, code in rows.other_codes.items()}
        self._other: dict[str, int] = {code: len(order) + i for i, code in enumerate(last)}
        order.extend(last.values())
        self._sets = _ids(array("I", map(rows.sets.__getitem__, order)), len(ingredients))
        self._strengths = _ids(array("I", map(rows.strengths.__getitem__, order)), len(rows.strength_ids))
        self._forms = _ids(array("I", map(rows.forms.__getitem__, order)), len(rows.form_ids))
        self._active = bytes(map(rows.active.__getitem__, order))
        self._ingredients: tuple[tuple[str, ...] | None, ...] = tuple(ingredients)
        self._strength_values: tuple[str | None, ...] = tuple(rows.strength_ids)
        self._form_values: tuple[str | None, ...] = tuple(rows.form_ids)

    @classmethod
    def empty(cls) -> ConceptTable:
        return cls(ConceptRows(), ((),))

    def _row(self, code: str) -> int:
        if _canonical_code(code):
            key = int(code)
            i = bisect_left(self._codes, key)
            return i if i < len(self._codes) and self._codes[i] == key else -1
        return self._other.get(code, -1)

    def __getitem__(self, code: str) -> CodedDrug:
        row = self._row(code) if isinstance(code, str) else -1
        if row < 0:
            raise KeyError(code)
        return CodedDrug(
            self._ingredients[self._sets[row]],
            self._strength_values[self._strengths[row]],
            self._form_values[self._forms[row]],
            bool(self._active[row]),
        )

    def get(self, code: str, default: CodedDrug | None = None) -> CodedDrug | None:  # type: ignore[override]
        try:
            return self[code]
        except KeyError:
            return default

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and self._row(code) >= 0

    def __len__(self) -> int:
        return len(self._codes) + len(self._other)

    def __iter__(self) -> Iterator[str]:
        for code in self._codes:
            yield str(code)
        yield from self._other


# --------------------------------------------------------------------------------------------------
# Folded name -> ingredient set


class NameIndex(Mapping[str, "tuple[str, ...] | None"]):
    """Every name a drug is known by (folded) -> its ingredient set, None for an ambiguous name, for
    tens of thousands of names in one UTF-8 byte string: the names ordered by their hash (an integer
    array searched by bisection), each found by its hash and then compared byte for byte, so the
    answer is the dict's. The hashes are this process's (str hashes are salted per process), which
    is all a worker's in-memory index needs."""

    __slots__ = ("_data", "_ends", "_hashes", "_sets", "_values")

    # What orders and finds the names; only equal names must hash equal (a test weakens it to
    # make names collide).
    _hash: Callable[[str], int] = staticmethod(hash)

    def __init__(self, names: Mapping[str, tuple[str, ...] | None]) -> None:
        ordered = sorted(names, key=self._hash)
        values: dict[tuple[str, ...] | None, int] = {}
        set_ids = array("I", [values.setdefault(names[n], len(values)) for n in ordered])
        self._values: tuple[tuple[str, ...] | None, ...] = tuple(values)
        self._sets = _ids(set_ids, len(values))
        self._hashes: array[int] = array("q", map(self._hash, ordered))
        data = bytearray()
        ends: array[int] = array("I")
        for name in ordered:
            data += name.encode("utf-8", "surrogatepass")
            ends.append(len(data))
        self._data = bytes(data)
        self._ends = ends

    def _find(self, name: str) -> int:
        key = self._hash(name)
        hashes = self._hashes
        i = bisect_left(hashes, key)
        if i == len(hashes) or hashes[i] != key:
            return -1
        encoded = name.encode("utf-8", "surrogatepass")
        while i < len(hashes) and hashes[i] == key:
            start = self._ends[i - 1] if i else 0
            if self._ends[i] - start == len(encoded) and self._data.startswith(encoded, start):
                return i
            i += 1
        return -1

    def __getitem__(self, name: str) -> tuple[str, ...] | None:
        i = self._find(name) if isinstance(name, str) else -1
        if i < 0:
            raise KeyError(name)
        return self._values[self._sets[i]]

    def get(self, name: str, default: tuple[str, ...] | None = None) -> tuple[str, ...] | None:  # type: ignore[override]
        i = self._find(name) if isinstance(name, str) else -1
        return self._values[self._sets[i]] if i >= 0 else default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name) >= 0

    def __len__(self) -> int:
        return len(self._hashes)

    def __iter__(self) -> Iterator[str]:
        start = 0
        for end in self._ends:
            yield self._data[start:end].decode("utf-8", "surrogatepass")
            start = end


# --------------------------------------------------------------------------------------------------
# Trigram -> the names holding it


def _gram_key(gram: str) -> int:
    """Three characters as one integer (a code point fits 21 bits)."""
    return (ord(gram[0]) << 42) | (ord(gram[1]) << 21) | ord(gram[2])


class TrigramIndex:
    """Trigram -> the positions of the names (in a sorted tuple) that hold it, ascending: the
    trigrams as sorted integers, each with its slice of one array of positions. Built without a list
    per trigram: each name's trigrams are numbered into one array, counted, and each position then
    placed in its trigram's slice."""

    __slots__ = ("_keys", "_positions", "_starts")

    def __init__(self, names: Sequence[str], grams_of: Callable[[str], Iterable[str]]) -> None:
        numbers: dict[str, int] = {}  # trigram -> its number, in order of first sight
        held: array[int] = array("I")  # the numbers of the trigrams of each name in turn
        ends: array[int] = array("I")  # where each name's trigrams end in `held`
        for name in names:
            held.extend([numbers.setdefault(gram, len(numbers)) for gram in grams_of(name)])
            ends.append(len(held))
        keys = [_gram_key(gram) for gram in numbers]
        del numbers
        ordered = sorted(range(len(keys)), key=keys.__getitem__)
        counts = Counter(held)
        self._keys: array[int] = array("q", [keys[n] for n in ordered])
        starts: array[int] = array("I", [0])
        free: array[int] = array("I", [0]) * len(keys)  # where the next position of each trigram goes
        for n in ordered:
            free[n] = starts[-1]
            starts.append(starts[-1] + counts[n])
        positions: array[int] = array("H" if len(names) <= 0xFFFF else "I", [0]) * len(held)
        start = 0
        for position, end in enumerate(ends):
            for n in held[start:end]:
                positions[free[n]] = position
                free[n] += 1
            start = end
        self._starts = starts
        self._positions = positions

    def get(self, gram: str) -> Sequence[int]:
        if len(gram) != 3:
            return ()
        key = _gram_key(gram)
        i = bisect_left(self._keys, key)
        if i == len(self._keys) or self._keys[i] != key:
            return ()
        return self._positions[self._starts[i] : self._starts[i + 1]]

    def __len__(self) -> int:
        return len(self._keys)
