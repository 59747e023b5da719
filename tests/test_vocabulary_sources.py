"""Where the shipped drug classes come from (issue 9): no WHO ATC code, class kind or citation in the
shipped knowledge (rules/**), and every member of a class built on FDA's pharmacologic classes is
either in one of those FDA classes (pharm_classes.tsv) or a documented exception with its source."""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.knowledge import KnowledgeFileError, load_knowledge_files, vocabulary_from_document
from engine.ruletool import fda_class_problems

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"
KNOWLEDGE_DIR = RULES / "knowledge"
KNOWLEDGE = load_knowledge_files(KNOWLEDGE_DIR)
VOCAB = KNOWLEDGE.vocabulary
DOC: dict[str, Any] = yaml.safe_load((KNOWLEDGE_DIR / "vocabulary.yaml").read_text(encoding="utf-8"))
SOURCES = set(DOC["sources"])

# The classes that were WHO ATC groups or cited the ATC index before issue 9, with the FDA classes
# each now follows (as vocabulary.yaml writes them) and the members kept outside them. A change to
# either is a change of clinical content: it must be made here too, on purpose.
RESOURCED: dict[str, tuple[set[str], set[str]]] = {
    "nonselective_maoi": ({"Monoamine Oxidase Inhibitor [EPC]"}, set()),
    "ppi": ({"Proton Pump Inhibitor [EPC]"}, set()),
    "xanthine_oxidase_inhibitor": ({"Xanthine Oxidase Inhibitor [EPC]"}, set()),
    "ssri": ({"Serotonin Reuptake Inhibitor [EPC]"}, set()),
    "tca": ({"Tricyclic Antidepressant [EPC]"}, set()),
    "protease_inhibitor": ({"HIV Protease Inhibitors [MoA]"}, {"lopinavir"}),
    "statin": ({"HMG-CoA Reductase Inhibitor [EPC]"}, set()),
    "fibrate": ({"Peroxisome Proliferator Receptor alpha Agonist [EPC]"}, set()),
    "triptan": ({"Serotonin-1b and Serotonin-1d Receptor Agonist [EPC]"}, {"rizatriptan"}),
    "anticoagulant": (
        {
            "Vitamin K Antagonist [EPC]",
            "Unfractionated Heparin [EPC]",
            "Low Molecular Weight Heparin [EPC]",
            "Factor Xa Inhibitor [EPC]",
            "Direct Thrombin Inhibitor [EPC]",
        },
        {"dabigatran etexilate"},
    ),
    "vitamin_k_antagonist": ({"Vitamin K Antagonist [EPC]"}, set()),
    "heparin_group": ({"Unfractionated Heparin [EPC]", "Low Molecular Weight Heparin [EPC]"}, set()),
    "doac": ({"Factor Xa Inhibitor [EPC]", "Direct Thrombin Inhibitor [EPC]"}, {"dabigatran etexilate"}),
    "antiplatelet": ({"Platelet Aggregation Inhibitor [EPC]", "P2Y12 Platelet Inhibitor [EPC]"}, {"cilostazol"}),
    "p2y12_inhibitor": ({"P2Y12 Platelet Inhibitor [EPC]"}, set()),
    "nsaid": ({"Nonsteroidal Anti-inflammatory Drug [EPC]"}, {"meclofenamate", "salsalate"}),
    "cox2_inhibitor": ({"Nonsteroidal Anti-inflammatory Drug [EPC]"}, set()),
    "salicylate": ({"Nonsteroidal Anti-inflammatory Drug [EPC]", "Platelet Aggregation Inhibitor [EPC]"}, set()),
    "opioid": ({"Opioid Agonist [EPC]", "Partial Opioid Agonist [EPC]"}, {"levomethadone"}),
    "ace_inhibitor": ({"Angiotensin Converting Enzyme Inhibitor [EPC]"}, set()),
    "arb": ({"Angiotensin 2 Receptor Blocker [EPC]"}, set()),
    "raas_inhibitor": (
        {
            "Angiotensin Converting Enzyme Inhibitor [EPC]",
            "Angiotensin 2 Receptor Blocker [EPC]",
            "Renin Inhibitor [EPC]",
        },
        set(),
    ),
    "potassium_sparing_diuretic": ({"Potassium-sparing Diuretic [EPC]", "Aldosterone Antagonist [EPC]"}, set()),
    "potassium_supplement": ({"Potassium Salt [EPC]"}, {"potassium citrate"}),
    "thiazide_diuretic": ({"Thiazide Diuretic [EPC]", "Thiazide-like Diuretic [EPC]"}, set()),
    "loop_diuretic": ({"Loop Diuretic [EPC]"}, set()),
    "beta_blocker": ({"beta-Adrenergic Blocker [EPC]", "Adrenergic beta-Antagonists [MoA]"}, set()),
    "cardioselective_beta_blocker": ({"beta-Adrenergic Blocker [EPC]"}, set()),
    "nitrate": ({"Nitrate Vasodilator [EPC]"}, set()),
    "pde5_inhibitor": ({"Phosphodiesterase 5 Inhibitor [EPC]"}, set()),
    "antiarrhythmic": ({"Antiarrhythmic [EPC]"}, set()),
    "calcium_channel_blocker_nondhp": ({"Calcium Channel Blocker [EPC]"}, set()),
    "biguanide": ({"Biguanide [EPC]"}, set()),
    "sulfonylurea": ({"Sulfonylurea [EPC]"}, set()),
    "dpp4_inhibitor": ({"Dipeptidyl Peptidase 4 Inhibitor [EPC]"}, set()),
    "penicillin": ({"Penicillin-class Antibacterial [EPC]", "Penicillins [CS]"}, {"piperacillin", "bacampicillin"}),
    "beta_lactamase_inhibitor": ({"beta Lactamase Inhibitor [EPC]"}, {"tazobactam"}),
    "cephalosporin": (
        {"Cephalosporin Antibacterial [EPC]", "Cephalosporins [CS]"},
        {
            "ceftolozane",
            "cefiderocol",
            "cefprozil",
            "ceftobiprole",
            "cephalothin",
            "cephaloridine",
            "cephradine",
            "cefamandole",
            "cefonicid",
            "ceftizoxime",
            "cefatrizine",
        },
    ),
    "carbapenem": ({"Carbapenems [CS]"}, {"imipenem"}),
    "monobactam": ({"Monobactam Antibacterial [EPC]", "Monobactams [CS]"}, set()),
    "macrolide": (
        {"Macrolide Antimicrobial [EPC]", "Macrolide Antibacterial [EPC]", "Macrolide [EPC]", "Macrolides [CS]"},
        {"telithromycin"},
    ),
    "fluoroquinolone": (
        {"Fluoroquinolone Antibacterial [EPC]", "Fluoroquinolones [CS]", "Quinolone Antimicrobial [EPC]"},
        {"norfloxacin"},
    ),
    "azole_antifungal": ({"Azole Antifungal [EPC]"}, set()),
    "nitroimidazole": ({"Nitroimidazole Antimicrobial [EPC]"}, set()),
    "benzodiazepine": ({"Benzodiazepine [EPC]"}, set()),
    "z_drug": (
        {"gamma-Aminobutyric Acid-ergic Agonist [EPC]", "gamma-Aminobutyric Acid A Receptor Agonist [EPC]"},
        {"eszopiclone"},
    ),
    "antipsychotic": (
        {"Atypical Antipsychotic [EPC]", "Typical Antipsychotic [EPC]", "Phenothiazine [EPC]"},
        {"droperidol"},
    ),
    "antiepileptic": (
        {"Anti-epileptic Agent [EPC]", "Decreased Central Nervous System Disorganized Electrical Activity [PE]"},
        {"clonazepam", "pregabalin"},
    ),
    "muscle_relaxant_central": ({"Muscle Relaxant [EPC]"}, {"tizanidine"}),
    "antimetabolite": ({"Folate Analog Metabolic Inhibitor [EPC]"}, set()),
    "mood_stabilizer_lithium": ({"Mood Stabilizer [EPC]"}, {"lithium"}),
    "beta2_agonist": ({"beta2-Adrenergic Agonist [EPC]"}, set()),
    "adrenergic_agonist": (
        {"Catecholamine [EPC]", "alpha-Adrenergic Agonist [EPC]", "beta-Adrenergic Agonist [EPC]"},
        set(),
    ),
    "calcineurin_inhibitor": ({"Calcineurin Inhibitor Immunosuppressant [EPC]"}, set()),
}


def _fda_id(written: str) -> str:
    name, kind = re.fullmatch(r"(.+?)\s*\[(\w+)\]", written).groups()  # type: ignore[union-attr]
    return f"{kind.lower()}:{' '.join(name.split()).lower()}"


def _members(cid: str) -> set[str]:
    return {name for name, rec in VOCAB.ingredients.items() if cid in rec.classes}


def _sources_of(spec: dict[str, Any]) -> list[str]:
    value = spec.get("source")
    return [value] if isinstance(value, str) else list(value or [])


# -- no WHO ATC in the shipped knowledge ----------------------------------------------------------------

# An ATC code: anatomical group letter, two digits, then a subgroup (N06AB, N06AB06). No other code
# the rules ship has this shape (ICD-10 has a digit after the letter's two digits, RXCUI/NDC are digits).
_ATC_CODE = re.compile(r"\b[ABCDGHJLMNPRSV]\d\d[A-Z]{2}(?:\d\d)?\b")
_ATC_CITATION = re.compile(r"ATC/DDD|Anatomical Therapeutic Chemical|WHOCC|whocc\.no", re.IGNORECASE)
_ATC_WORD = re.compile(r"\bATC\b", re.IGNORECASE)


def _shipped_files() -> list[Path]:
    return sorted(p for p in RULES.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8")


def _walk(node: Any, where: str) -> list[str]:
    """Every `atc` key, every `ATC`/`atc` value (kind: ATC, source: atc, [atc]) of a parsed YAML document."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if str(key).strip().lower() == "atc":
                found.append(f"{where}.{key}: an atc key")
            found.extend(_walk(value, f"{where}.{key}"))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found.extend(_walk(item, f"{where}[{i}]"))
    elif isinstance(node, str) and (node.strip().lower() == "atc" or _ATC_CITATION.search(node)):
        found.append(f"{where}: {node[:80]!r}")
    return found


def atc_findings(path: Path, text: str) -> list[str]:
    """What of the WHO ATC index a shipped file carries: codes, citations, `atc` keys and values; in
    SOURCES.md any table row naming ATC (a source row). Prose saying ATC is *not* shipped is allowed,
    and comments are not data."""
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    found = [f"{rel}: ATC code {m.group(0)}" for m in _ATC_CODE.finditer(text)]
    if path.suffix in (".yaml", ".yml"):
        found.extend(f"{rel}: {f}" for f in _walk(yaml.safe_load(text), "$"))
        for number, line in enumerate(text.splitlines(), start=1):
            if re.match(r"\s*atc\s*:", line, re.IGNORECASE) or re.search(r"[{,]\s*atc\s*:", line, re.IGNORECASE):
                found.append(f"{rel}:{number}: an atc key")
    elif path.suffix == ".md":
        for number, line in enumerate(text.splitlines(), start=1):
            if line.lstrip().startswith("|") and (_ATC_WORD.search(line) or _ATC_CITATION.search(line)):
                found.append(f"{rel}:{number}: a source table row names ATC")
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if (_ATC_WORD.search(line) and path.suffix in (".csv", ".tsv", ".gz")) or _ATC_CITATION.search(line):
                if path.suffix == ".py" and line.lstrip().startswith("#"):
                    continue
                found.append(f"{rel}:{number}: {line.strip()[:80]!r}")
    return found


def test_no_who_atc_in_the_shipped_knowledge() -> None:
    findings = [f for p in _shipped_files() for f in atc_findings(p, _text(p))]
    assert findings == []


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("vocabulary.yaml", "ingredients:\n  sertraline: {atc: N06AB06, classes: [ssri]}\n"),
        ("vocabulary.yaml", "ingredients:\n  sertraline: {classes: [ssri]}\n  x: {atc: null}\n"),
        ("vocabulary.yaml", "classes:\n  ssri: {name: SSRIs, kind: ATC, source: fda_ndc}\n"),
        ("vocabulary.yaml", "classes:\n  ssri: {name: SSRIs, kind: CLINICAL, source: atc}\n"),
        ("vocabulary.yaml", "classes:\n  ssri: {name: SSRIs, kind: CLINICAL, source: [fda_ndc, atc]}\n"),
        ("vocabulary.yaml", 'sources:\n  who: "WHO ATC/DDD Index 2024"\n'),
        ("allergy.yaml", 'classes:\n  x:\n    members:\n      y: "curated: group J01CA"\n'),
        ("SOURCES.md", "| **WHO ATC/DDD Index 2024** (`atc`) | codes | vocabulary |\n"),
        ("SOURCES.md", "| **WHO ATC classification** (`who`) | codes | vocabulary |\n"),
        ("interactions.csv", "a,b,major,ATC group N06AB\n"),
        ("build_x.py", 'CITE = "Anatomical Therapeutic Chemical classification"\n'),
    ],
)
def test_the_atc_check_finds_what_it_is_for(name: str, text: str) -> None:
    assert atc_findings(KNOWLEDGE_DIR / name, text)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        # words that merely contain the letters, and prose stating ATC is not shipped
        (
            "vocabulary.yaml",
            "# No WHO ATC code is shipped.\nsalt_words: [patch, hyclate]\naliases: {catapres: [clonidine]}\n",
        ),
        ("SOURCES.md", "No WHO ATC code, name or citation is shipped (WHO restricts commercial use of the index).\n"),
        ("rxnorm.tsv", "rxnorm\t1\tSCD\tnicotine 7 MG/24HR Transdermal Patch\t1\n"),
        ("labs.yaml", "icd10: [N18, K92.0, E87.5]\nloinc: 2823-3\n"),
    ],
)
def test_the_atc_check_leaves_other_words_alone(name: str, text: str) -> None:
    assert atc_findings(KNOWLEDGE_DIR / name, text) == []


def test_the_loader_refuses_atc_codes_and_kinds() -> None:
    for doc, field in (
        ({"ingredients": {"sertraline": {"atc": "N06AB06"}}}, "ingredients.sertraline.atc"),
        ({"classes": {"ssri": {"name": "SSRIs", "atc": "N06AB"}}}, "classes.ssri.atc"),
        ({"classes": {"ssri": {"name": "SSRIs", "kind": "ATC"}}}, "classes.ssri.kind"),
    ):
        with pytest.raises(KnowledgeFileError, match=re.escape(field)):
            vocabulary_from_document(doc)
    with pytest.raises(KnowledgeFileError, match=r"classes\.ssri\.fda"):
        vocabulary_from_document({"classes": {"ssri": {"fda": ["Serotonin Reuptake Inhibitor"]}}})


# -- the classes' sources ---------------------------------------------------------------------------------


def test_every_class_cites_known_sources() -> None:
    assert "atc" not in SOURCES
    unknown = {cid: src for cid, spec in DOC["classes"].items() for src in _sources_of(spec) if src not in SOURCES}
    assert unknown == {}
    for cid, spec in DOC["classes"].items():
        for name, reason in (spec.get("outside_fda") or {}).items():
            key = str(reason).split(":", 1)[0]
            assert key in SOURCES, f"classes.{cid}.outside_fda.{name}: {reason!r} names no known source"


def test_every_former_atc_class_follows_the_fda_classes_recorded_here() -> None:
    for cid, (fda, outside) in RESOURCED.items():
        rec = VOCAB.classes[cid]
        assert set(rec.fda) == {_fda_id(f) for f in fda}, cid
        assert set(rec.outside_fda) == outside, cid


def test_every_member_of_a_resourced_class_is_fda_indexed_or_a_documented_exception() -> None:
    errors, warnings = fda_class_problems(VOCAB)
    assert errors == []
    assert warnings == []
    for cid, (fda, outside) in RESOURCED.items():
        follows = {_fda_id(f) for f in fda}
        for name in _members(cid):
            # FDA's substance name may be an alias of the ingredient (an ester)
            names = [name, *(alias for alias, targets in VOCAB.aliases.items() if targets == (name,))]
            indexed = follows.intersection(c for n in names for c in VOCAB.pharm_classes_of(n))
            assert indexed or name in outside, f"{name} in {cid}"
            assert not (indexed and name in outside), f"{name} in {cid} is FDA-indexed: drop the exception"


def test_the_membership_check_fails_on_an_undocumented_member() -> None:
    doc = {
        "classes": {
            "ppi": {"name": "PPIs", "fda": ["Proton Pump Inhibitor [EPC]"]},
            "triptan": {
                "name": "Triptans",
                "fda": ["Serotonin-1b and Serotonin-1d Receptor Agonist [EPC]"],
                "outside_fda": {"sumatriptan": "fda_label: stale"},
            },
        },
        "ingredients": {
            "omeprazole": {"classes": ["ppi"]},
            "famotidine": {"classes": ["ppi"]},  # an H2 blocker: not FDA's PPI, no exception
            "sumatriptan": {"classes": ["triptan"]},
        },
    }
    pharm = {
        "omeprazole": ("epc:proton pump inhibitor",),
        "famotidine": ("epc:histamine-2 receptor antagonist",),
        "sumatriptan": ("epc:serotonin-1b and serotonin-1d receptor agonist",),
    }
    errors, warnings = fda_class_problems(vocabulary_from_document(doc, pharm_classes=pharm))
    assert len(errors) == 1 and "'famotidine'" in errors[0] and "'ppi'" in errors[0]
    assert len(warnings) == 1 and "'sumatriptan'" in warnings[0]


def test_membership_is_what_it_was_before_the_resourcing() -> None:
    # Spot checks of the members the rules need, one per former ATC group (the full comparison was
    # made against the previous release when the classes were re-sourced: 378 ingredients, identical).
    expected = {
        "ssri": {"fluoxetine", "citalopram", "paroxetine", "sertraline", "fluvoxamine", "escitalopram"},
        "tca": {
            "desipramine",
            "imipramine",
            "clomipramine",
            "trimipramine",
            "amitriptyline",
            "nortriptyline",
            "protriptyline",
            "doxepin",
            "amoxapine",
        },
        "ppi": {"omeprazole", "pantoprazole", "lansoprazole", "rabeprazole", "esomeprazole", "dexlansoprazole"},
        "statin": {
            "simvastatin",
            "lovastatin",
            "pravastatin",
            "fluvastatin",
            "atorvastatin",
            "rosuvastatin",
            "pitavastatin",
        },
        "protease_inhibitor": {
            "saquinavir",
            "indinavir",
            "ritonavir",
            "nelfinavir",
            "fosamprenavir",
            "atazanavir",
            "tipranavir",
            "darunavir",
            "lopinavir",
        },
        "nonselective_maoi": {"phenelzine", "tranylcypromine", "isocarboxazid"},
        "triptan": {
            "sumatriptan",
            "naratriptan",
            "zolmitriptan",
            "rizatriptan",
            "almotriptan",
            "eletriptan",
            "frovatriptan",
        },
        "z_drug": {"zolpidem", "zaleplon", "eszopiclone"},
        "potassium_supplement": {"potassium chloride", "potassium citrate"},
        "mood_stabilizer_lithium": {"lithium", "lithium carbonate", "lithium citrate"},
    }
    for cid, members in expected.items():
        assert _members(cid) == members, cid


def test_inn_spellings_are_cited_as_inn_names() -> None:
    assert "International Nonproprietary Names" in DOC["sources"]["inn"]
    for inn, usan in (
        ("pethidine", "meperidine"),
        ("glibenclamide", "glyburide"),
        ("rifampicin", "rifampin"),
        ("dexamfetamine", "dextroamphetamine"),
        ("methylthioninium chloride", "methylene blue"),
    ):
        assert VOCAB.normalize_drug(inn).ingredients == (usan,)
