"""The RxNorm import at the size of a full release, one section of `make bench`.

A synthetic release (RXNCONSO ~30 MB, RXNREL ~190 MB, RXNSAT ~275 MB; the real files' row shapes and
relation structure: ingredients, salts, combinations, components, clinical and branded drugs,
brands, packs, dose forms, both directions of every relation, other sources' atoms, relations and
attributes the importer must pass over, about 700,000 RxNorm NDCs) is written to a temporary
folder and imported with `praneya knowledge rxnorm import` in a child process, so that its peak
resident memory is the importer's alone (the PostgreSQL server's is not in it). Then the same
release again (nothing to do), and the next month's release (a few codes gone, some renamed): every
code confirmed, the changes recorded.

Codes are made up in ranges no real release uses (RXCUIs from 90,000,000, NDCs starting 99), so a
bench database that also holds the shipped table keeps both apart.

    python -m engine.ops.rxnorm_bench [--quick]    # alone, into a database of its own
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import IO, Any

__all__ = ["TARGET_RSS_MB", "TARGET_SECONDS", "print_rxnorm_section", "run_rxnorm_bench", "write_release"]

TARGET_SECONDS = 180.0
TARGET_RSS_MB = 1024.0
TARGET_FILE_MB = {"RXNCONSO.RRF": 30, "RXNREL.RRF": 190, "RXNSAT.RRF": 275}

_UNITS = ("MG", "MG/ML", "MCG", "UNT/ML", "MG/ACTUAT", "%")
_FORMS = (
    "Oral Tablet", "Oral Capsule", "Injectable Solution", "Oral Solution", "Topical Cream", "Extended Release Oral "
    "Tablet", "Delayed Release Oral Capsule", "Inhalant Powder", "Transdermal System", "Ophthalmic Solution",
)  # fmt: skip
_OTHER_SABS = ("MTHSPL", "NDDF", "MMSL", "VANDF", "GS", "MMX", "SNOMEDCT_US", "ATC", "DRUGBANK", "USP")
_SYLLABLES = ("ra", "lo", "xi", "ben", "tor", "va", "mi", "zol", "pril", "sar", "tan", "cef", "dine", "mab", "vir")


@dataclass(frozen=True)
class Scale:
    ingredients: int = 14_000
    salts: int = 4_000
    combinations: int = 5_000
    components: int = 35_000
    clinical_drugs: int = 45_000
    brands: int = 16_000
    branded_drugs: int = 30_000
    generic_packs: int = 700
    branded_packs: int = 800
    ndcs_per_product: float = 9.2
    file_mb: tuple[tuple[str, int], ...] = tuple(TARGET_FILE_MB.items())

    def times(self, factor: float) -> Scale:
        counts = {
            f.name: max(2, int(getattr(self, f.name) * factor)) for f in fields(self) if f.type in ("int", int)
        }
        return replace(self, **counts, file_mb=tuple((n, max(1, int(mb * factor))) for n, mb in self.file_mb))


class _Writer:
    """One RRF file: rows of fields, each followed by `|`; counts bytes and rows."""

    def __init__(self, f: IO[str]) -> None:
        self.f = f
        self.bytes = 0
        self.rows = 0

    def row(self, *fields: str) -> None:
        line = "|".join(fields) + "|\n"
        self.f.write(line)
        self.bytes += len(line)
        self.rows += 1


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))


def write_release(folder: Path, scale: Scale, *, seed: int = 20260105, month: int = 0) -> dict[str, Any]:
    """Writes a synthetic RxNorm release into `folder`/rrf. `month` > 0 makes the release `month`
    months later: about 0.3% of branded drugs, packs and their NDCs gone, 0.5% of ingredients renamed."""
    rng = random.Random(seed)
    later = random.Random(seed + month)
    rrf = folder / "rrf"
    rrf.mkdir(parents=True, exist_ok=True)
    counters = {"cui": 90_000_000, "aui": 90_000_000, "rui": 900_000_000, "atui": 900_000_000}

    def next_id(kind: str) -> int:
        counters[kind] += 1
        return counters[kind]

    with ExitStack() as stack:
        conso, rel, sat = (
            _Writer(stack.enter_context((rrf / n).open("w", encoding="utf-8", newline="\n")))
            for n in ("RXNCONSO.RRF", "RXNREL.RRF", "RXNSAT.RRF")
        )
        aui_of: dict[int, int] = {}

        def atom(cui: int, tty: str, text: str, *, sab: str = "RXNORM", code: str | None = None) -> int:
            aui = next_id("aui")
            conso.row(str(cui), "ENG", "", "", "", "", "", str(aui), str(aui) if sab == "RXNORM" else "",
                      str(cui) if sab == "RXNORM" else "", "", sab, tty, code or str(cui), text, "", "N", "4096")
            if sab == "RXNORM" and cui not in aui_of:
                aui_of[cui] = aui
            return aui

        def relation(subject: int, rela: str, obj: int, inverse: str) -> None:
            """`subject` has `rela` to `obj` (RXCUI2 = subject), and the inverse row."""
            for c1, c2, name in ((obj, subject, rela), (subject, obj, inverse)):
                rel.row(str(c1), str(aui_of[c1]), "AUI", "RO", str(c2), str(aui_of[c2]), "AUI", name,
                        str(next_id("rui")), "", "RXNORM", "RXNORM", "", "", "N", "")

        def attribute(cui: int, atn: str, atv: str, *, sab: str = "RXNORM") -> None:
            sat.row(str(cui), "", "", str(aui_of.get(cui, "")), "AUI", str(cui), f"AT{next_id('atui')}", "", atn, sab,
                    atv, "N", "4096" if sab == "RXNORM" else "")

        # The later release draws its changes from a generator of its own: `rng` makes the same draws in
        # every release, so the codes that stay are the same codes with the same content.
        renamed_chance = 0.005 if month else 0.0
        dropped_chance = 0.003 if month else 0.0

        forms = [next_id("cui") for _ in _FORMS]
        for cui, form_name in zip(forms, _FORMS, strict=True):
            atom(cui, "DF", form_name)
        ins = [next_id("cui") for _ in range(scale.ingredients)]
        in_name = {}
        for cui in ins:
            in_name[cui] = f"{_name(rng)}{cui % 100000}"
            atom(cui, "IN", in_name[cui] + (" (renamed)" if later.random() < renamed_chance else ""))
            atom(cui, "SU", in_name[cui].upper(), sab="MTHSPL", code=f"U{cui % 10**9:09d}")
            for sab in rng.sample(_OTHER_SABS, 2):
                atom(cui, "IN", in_name[cui].upper(), sab=sab, code=f"{sab[:2]}{cui}")
        pins = []
        for _ in range(scale.salts):
            cui, base = next_id("cui"), rng.choice(ins)
            atom(cui, "PIN", f"{in_name[base]} hydrochloride")
            relation(cui, "form_of", base, "has_form")
            pins.append((cui, base))
        for _ in range(scale.combinations):
            cui, members = next_id("cui"), sorted(rng.sample(ins, rng.choice((2, 2, 3))))
            atom(cui, "MIN", " / ".join(in_name[m] for m in members))
            for m in members:
                relation(cui, "has_part", m, "part_of")
        scdcs: list[tuple[int, str, str]] = []
        for _ in range(scale.components):
            cui, base = next_id("cui"), rng.choice(ins)
            strength = f"{rng.choice((1, 2.5, 5, 10, 20, 25, 50, 100, 250, 500, 800))} {rng.choice(_UNITS)}"
            atom(cui, "SCDC", f"{in_name[base]} {strength}")
            relation(cui, "has_ingredient", base, "ingredient_of")
            if rng.random() < 0.1:
                pin = rng.choice(pins)[0]
                relation(cui, "has_precise_ingredient", pin, "precise_ingredient_of")
            attribute(cui, "RXN_STRENGTH", strength)
            scdcs.append((cui, f"{in_name[base]} {strength}", strength))
        scds: list[tuple[int, str, int]] = []
        for _ in range(scale.clinical_drugs):
            cui = next_id("cui")
            components = rng.sample(scdcs, rng.choices((1, 2, 3), (80, 15, 5))[0])
            form = rng.randrange(len(_FORMS))
            drug = " / ".join(c[1] for c in components) + f" {_FORMS[form]}"
            atom(cui, "SCD", drug)
            atom(cui, "PSN", drug.lower())
            atom(cui, "SY", drug.replace(" MG", "mg"))
            for c in components:
                relation(cui, "consists_of", c[0], "constitutes")
            relation(cui, "has_dose_form", forms[form], "dose_form_of")
            attribute(cui, "RXN_AVAILABLE_STRENGTH", " / ".join(c[2] for c in components))
            attribute(cui, "RXN_HUMAN_DRUG", "US")
            scds.append((cui, drug, form))
        brands = []
        for _ in range(scale.brands):
            cui = next_id("cui")
            atom(cui, "BN", _name(rng).capitalize() + "ex")
            for base in rng.sample(ins, rng.choice((1, 1, 2))):
                relation(cui, "tradename_of", base, "has_tradename")
            brands.append(cui)
        sbds, every_sbd = [], []  # packs draw from every SBD, so a dropped one changes no other pack
        for _ in range(scale.branded_drugs):
            cui = next_id("cui")
            scd, brand = rng.choice(scds), rng.choice(brands)
            every_sbd.append(cui)
            if later.random() < dropped_chance:
                continue  # gone in the later release: nothing of it is written
            atom(cui, "SBD", f"{scd[1]} [Brand{brand % 100000}]")
            atom(cui, "SY", f"Brand{brand % 100000} {scd[1]}")
            relation(cui, "tradename_of", scd[0], "has_tradename")
            relation(cui, "has_ingredient", brand, "ingredient_of")
            relation(cui, "has_dose_form", forms[scd[2]], "dose_form_of")
            attribute(cui, "RXN_AVAILABLE_STRENGTH", "see SCD")
            sbds.append(cui)
        packs = []
        for tty, count, pool in (("GPCK", scale.generic_packs, [s[0] for s in scds]),
                                 ("BPCK", scale.branded_packs, every_sbd)):  # fmt: skip
            for _ in range(count):
                cui, contents = next_id("cui"), rng.sample(pool, 2)
                if later.random() < dropped_chance:
                    continue
                atom(cui, tty, "{" + " / ".join(str(c) for c in contents) + "} Pack")
                for content in contents:
                    if content in aui_of:  # not a dropped SBD
                        relation(cui, "contains", content, "contained_in")
                packs.append(cui)
        products = [s[0] for s in scds] + sbds + packs
        ndcs = 0
        for cui in products:
            # A product's NDCs follow from its code alone: the same in every release that lists it.
            own = random.Random(cui)
            for k in range(min(999, max(1, round(own.expovariate(1 / scale.ndcs_per_product))))):
                ndc = f"99{cui - 90_000_000:06d}{k:03d}"
                attribute(cui, "NDC", ndc)
                ndcs += 1
                if own.random() < 0.8:
                    attribute(cui, "NDC", ndc, sab=own.choice(("MTHSPL", "VANDF", "GS", "MMSL")))
        # Padding in the real proportions: other sources' atoms, relations among their atoms and
        # RxNorm relations the importer passes over, attributes it does not read.
        target = dict(scale.file_mb)
        other_cuis = ins + [s[0] for s in scds]
        while conso.bytes < target["RXNCONSO.RRF"] << 20:
            cui = rng.choice(other_cuis)
            sab = rng.choice(_OTHER_SABS)
            atom(cui, rng.choice(("CD", "BD", "SY", "PT", "FN")), f"{_name(rng).upper()} {rng.randint(1, 999)} MG",
                 sab=sab, code=f"{sab[:3]}{rng.randint(1, 10**7)}")
        while rel.bytes < target["RXNREL.RRF"] << 20:
            a, b = rng.choice(other_cuis), rng.choice(other_cuis)
            if rng.random() < 0.5:
                relation(a, rng.choice(("isa", "has_doseformgroup", "quantified_form_of", "reformulation_of")), b,
                         rng.choice(("inverse_isa", "doseformgroup_of", "has_quantified_form", "reformulated_to")))
            else:
                sab = rng.choice(_OTHER_SABS)
                rel.row(str(a), str(next_id("aui")), "AUI", "RO", str(b), str(next_id("aui")), "AUI",
                        rng.choice(("has_ingredient", "mapped_to", "has_form", "isa")), str(next_id("rui")), "", sab,
                        sab, "", "", "N", "")
        while sat.bytes < target["RXNSAT.RRF"] << 20:
            cui = rng.choice(other_cuis)
            attribute(cui, rng.choice(("SPL_SET_ID", "DM_SPL_ID", "LABELER", "MARKETING_CATEGORY", "NDA")),
                      f"{rng.getrandbits(64):016x}-{rng.getrandbits(32):08x}", sab=rng.choice(("MTHSPL", "RXNORM")))
        sizes = {"RXNCONSO.RRF": conso, "RXNREL.RRF": rel, "RXNSAT.RRF": sat}
    return {
        "files": {n: {"mb": round(w.bytes / 2**20, 1), "rows": w.rows} for n, w in sizes.items()},
        "stored_concepts_expected": len(ins) + len(pins) + scale.combinations + len(scds) + len(brands) + len(sbds)
        + len(packs),
        "rxnorm_ndcs": ndcs,
    }


def _import(db_url: str, folder: Path) -> dict[str, Any]:
    """`praneya knowledge rxnorm import` in a child process: seconds, peak RSS (its own), summary."""
    env = {**os.environ, "DATABASE_URL": db_url}
    praneya = Path(sys.executable).parent / "praneya"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(praneya), "knowledge", "rxnorm", "import", str(folder), "--allow-retire", "100", "--actor", "bench"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()  # one summary line: no pipe fills up before the child ends
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"praneya knowledge rxnorm import failed ({proc.returncode}): {out.strip()}")
    return {
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # ru_maxrss is in KiB on Linux
        "summary": out.strip(),
    }


def run_rxnorm_bench(db_url: str, *, quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Writes the synthetic releases, imports them into the (migrated) database at `db_url`, and
    returns the figures with the targets."""
    factor = 0.1 if quick else 1.0
    scale = Scale().times(factor) if quick else Scale()
    results: dict[str, Any] = {"scale": "quick (1/10 of a full release)" if quick else "full release"}
    with tempfile.TemporaryDirectory(prefix="praneya-rxnorm-bench-") as tmp:
        t0 = time.perf_counter()
        first = Path(tmp) / "RxNorm_full_01052026"
        results["release"] = write_release(first, scale)
        results["generate_seconds"] = round(time.perf_counter() - t0, 1)
        files = results["release"]["files"]
        log(
            "synthetic RxNorm release: "
            + ", ".join(f"{n} {f['mb']} MB ({f['rows']} rows)" for n, f in files.items())
            + f"; written in {results['generate_seconds']} s"
        )
        log("importing it (a child process) ...")
        results["first_import"] = _import(db_url, first)
        log(f"  {results['first_import']['summary']}")
        results["same_release_again"] = _import(db_url, first)
        log(f"  again: {results['same_release_again']['summary']}")
        second = Path(tmp) / "RxNorm_full_02022026"
        write_release(second, scale, month=1)
        results["next_release"] = _import(db_url, second)
        log(f"  next month: {results['next_release']['summary']}")
    worst_seconds = max(results[k]["seconds"] for k in ("first_import", "next_release"))
    worst_rss = max(results[k]["peak_rss_mb"] for k in ("first_import", "same_release_again", "next_release"))
    results["targets"] = {
        "rxnorm_import_at_most_180s": {"value": worst_seconds, "target": TARGET_SECONDS, "met": worst_seconds <= 180},
        "rxnorm_import_rss_at_most_1024mb": {"value": worst_rss, "target": TARGET_RSS_MB, "met": worst_rss <= 1024},
    }
    return results


def print_rxnorm_section(r: dict[str, Any], log: Callable[[str], None] = print) -> None:
    log("")
    log(f"RxNorm import ({r['scale']}; " + ", ".join(f"{n} {f['mb']} MB" for n, f in r["release"]["files"].items())
        + ")")  # fmt: skip
    log(f"{'run':44} {'seconds':>9} {'peak RSS MB':>12}")
    for key, label in (("first_import", "first import (empty table)"), ("same_release_again", "same release again"),
                       ("next_release", "next month's release")):  # fmt: skip
        log(f"{label:44} {r[key]['seconds']:9.1f} {r[key]['peak_rss_mb']:12.1f}")


def main(argv: list[str]) -> int:
    import json

    from store import migrate
    from store.provision import recreate_database, up

    quick = "--quick" in argv
    server_url = os.environ.get("DATABASE_URL") or up()
    db_url = recreate_database(server_url, "praneya_bench_rxnorm")
    migrate.upgrade(database_url=db_url)
    results = run_rxnorm_bench(db_url, quick=quick)
    print_rxnorm_section(results)
    for name, t in results["targets"].items():
        print(f"target {name:38} {t['value']!s:>8} (target {t['target']}) {'met' if t['met'] else 'MISSED'}")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
