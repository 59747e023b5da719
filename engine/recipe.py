"""Recipe ingredient lines as words a food vocabulary can be matched against.

"200 g aged cheddar, grated" is a quantity, a unit, the food and how it is prepared. This module
knows only the grammar of such a line (quantities, units, preparation and descriptor words, notes in
parentheses or after a comma); which words name foods is the vocabulary's business
(`Vocabulary.food_line`). Pure text handling: no I/O.

What is dropped is only ever a word that says how much, how it is cut or cooked, or what grade it
is. A word this module does not know is kept for the vocabulary, which reports it when it matches no
food, so an unfamiliar word makes the line unresolved instead of disappearing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.identity import fold

__all__ = [
    "IGNORABLE_WORDS",
    "UNIT_OR_FOOD_WORDS",
    "IngredientLine",
    "food_key",
    "is_quantity",
    "parse_ingredient_line",
    "singular_forms",
]

# How much: units and containers, with their abbreviations and plurals.
_UNITS = """
    teaspoon teaspoons tsp tsps tspn teaspoonful tablespoon tablespoons tbsp tbsps tbs tbl tbls tablespoonful
    cup cups c ounce ounces oz fl fluid pound pounds lb lbs gram grams g gr kilogram kilograms kg kgs
    milligram milligrams mg millilitre millilitres milliliter milliliters ml mls litre litres liter liters l
    centilitre centiliter cl decilitre deciliter dl quart quarts qt qts pint pints pt pts gallon gallons gal
    dash dashes pinch pinches smidgen drop drops handful handfuls splash sprinkle
    can cans tin tins jar jars package packages pkg pkgs packet packets box boxes bag bags bottle bottles
    container containers carton cartons envelope envelopes tub tubs tube tubes sachet sachets
    bunch bunches sprig sprigs stalk stalks rib ribs slice slices piece pieces strip strips sheet sheets
    wedge wedges scoop scoops serving servings portion portions knob block blocks bar bars packs pack
    inch inches in cm mm centimetre centimeter centimetres centimeters
    """.split()
# Words that are a unit before another food ("3 cloves garlic") and a food on their own ("ground cloves").
UNIT_OR_FOOD_WORDS = frozenset({"clove", "cloves", "head", "heads", "stick", "sticks", "ear", "ears", "leaf", "leaves"})
_NUMBER_WORDS = """
    a an one two three four five six seven eight nine ten eleven twelve dozen half halves quarter quarters
    third thirds few several couple
    """.split()
# How it is prepared, cooked or served.
_PREPARATION = """
    chopped diced minced sliced grated shredded crumbled crushed mashed cubed julienned pureed puréed
    peeled unpeeled seeded deseeded pitted cored stemmed trimmed halved quartered drained undrained rinsed
    washed scrubbed cleaned patted dry cooked uncooked precooked raw fresh freshly frozen thawed defrosted
    canned jarred packed loosely firmly lightly beaten whisked softened melted cold warm chilled
    toasted roasted grilled broiled fried baked boiled steamed sauteed sautéed blanched poached
    cut into inch bite sized size thin thinly thick thickly long short fine finely coarse coarsely
    roughly chunks chunk cubes cube dice rings ring florets floret spears spear segments sections
    shavings curls zest zested squeezed juiced torn snipped separated sifted cracked fillet fillets
    unbleached bleached powder
    optional divided plus more extra additional about approximately approx around to taste for garnish
    garnishing serve serving as needed desired needed or and & of the with without in on at each per such
    like if you your any other favorite favourite preferred leftover leftovers prepared ready store bought
    homemade instant quick cooking old fashioned rolled plain unsweetened sweetened salted unsalted lightly
    temperature room well room-temperature stirred mixed combined dissolved reserved remaining
    note include wish prefer use used using make made from into until then also see recipe below above
    """.split()
# What grade or kind (these never change which allergens or interacting substances a food carries).
_DESCRIPTORS = """
    small medium large extra-large jumbo heaping heaped level scant generous big mini baby
    whole low reduced fat free lowfat nonfat non skim sodium sugar salt-free no added lite light
    extra virgin organic natural pure ripe firm soft mild sharp aged mature boneless skinless bone skin
    lean ground kosher coarse granulated powdered seasoned flavored flavoured lactose dairy gluten egg nut
    vegan vegetarian style type brand premium select choice grade fancy new bold hot sweet
    red green yellow orange white black brown golden purple pink
    """.split()
# "gluten-free bread" is still screened as bread, and "dairy-free cheese" as cheese: a free-from
# claim on a label is not verified here, and an allergy alert a clinician dismisses with the label in
# hand is safer than one never shown.  So words like "free", "dairy", "gluten" and "egg" are only
# descriptors when they do not start a food ("egg white" and "dairy" itself are matched first).
IGNORABLE_WORDS = (
    frozenset(_UNITS)
    | frozenset(_NUMBER_WORDS)
    | frozenset(_PREPARATION)
    | frozenset(_DESCRIPTORS)
    | UNIT_OR_FOOD_WORDS  # a food only where the vocabulary knows it as one ("cloves" alone)
)

_QUANTITY = re.compile(r"^(?:\d+(?:[.,]\d+)?(?:/\d+)?|\d*[/]\d+|\d+(?:st|nd|rd|th)|[\d.,/]+%?|%)$")
_PARENS = re.compile(r"\(([^()]*)\)|\[([^\[\]]*)\]|\{([^{}]*)\}")
_PART_OF = re.compile(r"^(?:the )?(juice|zest|rind|peel|zest and juice|juice and zest) of (.+)$")
_TOKEN = re.compile(r"[a-z0-9%][a-z0-9%'./]*")


@dataclass(frozen=True, slots=True)
class IngredientLine:
    """One line of a recipe's ingredient list, split into what names the food and what comments on it."""

    text: str  # the line as folded (lower case, NFKC, one space between words)
    primary: tuple[str, ...]  # the words naming the food(s): before the first comma, outside parentheses
    notes: tuple[tuple[str, ...], ...]  # words in parentheses and after the first comma, one run each


def _words(text: str) -> tuple[str, ...]:
    # Hyphens and slashes join alternatives or compounds ("bite-sized", "salt/pepper"); a fraction
    # ("1/2") stays one quantity token.
    text = re.sub(r"(?<![0-9])/|/(?![0-9])", " ", text)
    text = text.replace("-", " ").replace("\u2044", "/")
    return tuple(t.strip("'.") for t in _TOKEN.findall(text) if t.strip("'."))


def is_quantity(word: str) -> bool:
    return bool(_QUANTITY.match(word))


def parse_ingredient_line(text: str) -> IngredientLine:
    folded = fold(text)
    notes: list[tuple[str, ...]] = []

    def keep_note(match: re.Match[str]) -> str:
        inner = next(g for g in match.groups() if g is not None)
        notes.append(_words(inner))
        return " "

    # Parentheses may nest ("(frozen, concentrate (thawed))"): take the innermost first.
    body = folded
    while True:
        stripped = _PARENS.sub(keep_note, body)
        if stripped == body:
            break
        body = stripped
    body = body.replace("(", " ").replace(")", " ").replace("[", " ").replace("]", " ")
    head, _, tail = body.partition(",")
    if tail.strip():
        notes.append(_words(tail))
    head = " ".join(head.split())
    part = _PART_OF.match(head)
    if part:
        # "juice of 1 grapefruit" names grapefruit juice; "zest of 2 lemons" lemon zest.
        head = f"{part.group(2)} {part.group(1)}"
    return IngredientLine(text=" ".join(folded.split()), primary=_words(head), notes=tuple(n for n in notes if n))


def food_key(name: str) -> str:
    """The form a food name is indexed and looked up in: folded, hyphens as spaces."""
    return " ".join(_words(fold(name)))


def singular_forms(word: str) -> tuple[str, ...]:
    """Candidate singulars of an English food noun, most likely first; the vocabulary keeps only the
    ones it knows ("tomatoes" -> tomato, "berries" -> berry, "leaves" -> leaf, "peaches" -> peach)."""
    forms: list[str] = []
    if len(word) > 4 and word.endswith("ies"):
        forms.append(word[:-3] + "y")
    if len(word) > 4 and word.endswith("ves"):
        forms += [word[:-3] + "f", word[:-3] + "fe"]
    if len(word) > 3 and word.endswith("oes"):
        forms.append(word[:-2])
    if len(word) > 3 and word.endswith(("ches", "shes", "sses", "xes", "zes")):
        forms.append(word[:-2])
    if len(word) > 2 and word.endswith("s") and not word.endswith("ss"):
        forms.append(word[:-1])
    return tuple(dict.fromkeys(f for f in forms if f != word))
