"""The built-in sample: three short SQuAD-style articles and a WordPiece vocab covering them.

Used when no real data is available; results on it are NOT comparable to MLPerf. All text is original (invented
places and people), written for this project. The bytes written from it key the feature caches, so any edit here
changes every cache key of sample runs.
"""

from __future__ import annotations

import unicodedata


_LIGHTHOUSE = (
    "Harrowmere Lighthouse stands on a granite spur at the northern tip of the Isle of Caddow. Its tower "
    "was completed in 1873 by the engineer Tobias Wrenfield, who insisted that every block be cut from "
    "stone quarried on the island itself. The lamp room holds a rotating lens that flashes white twice "
    "every fifteen seconds, a pattern sailors call the Caddow double. Since 1961 the light has run "
    "without a resident keeper, although volunteers from the village of Lowen Cross still climb its 142 "
    "steps each spring to polish the brass."
)

# (month, vessels counted, prevailing wind, how the quiet hours were spent): composed into one long
# paragraph so the sample has a context that needs several 384-token windows.
_LOG_MONTHS = (
    ("January", 14, "north", "re-leading a cracked pane on the seaward side of the gallery"),
    ("February", 9, "north-east", "copying the tide tables into a fresh ledger by candlelight"),
    ("March", 22, "east", "scraping salt from the brass rails until they shone again"),
    ("April", 31, "south-east", "teaching the new assistant how to trim and measure a wick"),
    ("May", 27, "south", "mending the rope ladder that hangs below the landing stage"),
    ("June", 40, "south-west", "painting the iron door a dark shade of green"),
    ("July", 38, "west", "counting the seabirds that nested on the lower ledges"),
    ("August", 45, "west", "unloading crates of lamp oil from the supply boat Marigold"),
    ("September", 29, "north-west", "repairing the weather vane after a heavy squall"),
    ("October", 17, "south-west", "sorting the winter stores of flour, salt and tallow"),
    ("November", 12, "north", "reading old letters left behind by earlier keepers"),
    ("December", 8, "north-east", "carving small wooden boats for the children of Lowen Cross"),
)

_LOGBOOK = " ".join(
    [
        "The surviving logbooks of Harrowmere describe an ordinary year of work at the light, kept in a "
        "neat and patient hand."
    ]
    + [
        f"In {month} the keeper counted {ships} vessels rounding the spur, noted that the wind blew mostly "
        f"from the {wind}, and spent the quiet hours {chore}."
        for month, ships, wind, chore in _LOG_MONTHS
    ]
    + [
        "On the last page of the final volume the keeper thanked the fishermen of Lowen Cross for "
        "their kindness and wrote that the lamp had not failed on a single night."
    ]
)

_BAKERY = (
    "The Quillfeather Cooperative is a bakery owned by its twenty-three workers in the small town of "
    "Marrowby. It was founded in 1994 by Zoë Marchetti and Renée Okonkwo-Lind, two pastry cooks who had "
    "trained together in Lyon. The cooperative is best known for its café crème buns and for a dark rye "
    "loaf nicknamed \"the anchor\" because of its weight. Every decision about prices is taken at a "
    "monthly meeting where each member, including the apprentices, holds one vote."
)

_WHEEL = (
    "During the flour shortage of the late 1990s, the cooperative survived by milling its own grain with "
    "a restored water wheel on the Pell brook. Members still describe those years as the 'slow bread' "
    "period. The wheel, repaired by the carpenter Idris Fenn, now turns only on festival days, when "
    "visitors can buy loaves baked from flour ground that morning."
)

_RIVER = (
    "The Ostvel is a slow, meandering river that rises in the Tarran Hills and flows 218 kilometres "
    "north-east before joining the sea at Brackwater. Its basin is home to roughly 40,000 people, most of "
    "whom live in small farming villages. A weir built at Ennis Ford in 1908 marks the tidal limit; below "
    "it the water turns brackish and the banks are lined with reed beds."
)

_OTTERS = (
    "Otters returned to the river after a long absence. A survey by the Brackwater Naturalists' Society "
    "counted eleven holts in 2019, compared with none in 1985. The society credits the recovery to "
    "cleaner water (nitrate levels fell by about half) and to the fencing of grazing land along the "
    "upper reaches."
)

# Each question: (question, [(answer text, anchor)]). The answer is the first occurrence of its text at
# or after the first occurrence of the anchor (the anchor defaults to the answer itself).
_SampleQA = tuple[str, list[tuple[str, str | None]]]
_SAMPLE_ARTICLES: tuple[tuple[str, tuple[tuple[str, tuple[_SampleQA, ...]], ...]], ...] = (
    ("Harrowmere_Lighthouse", (
        (_LIGHTHOUSE, (
            ("Who built Harrowmere Lighthouse?", [("Tobias Wrenfield", None), ("the engineer Tobias Wrenfield", None)]),
            ("In what year was the tower completed?", [("1873", None)]),
            ("How often does the lens flash?", [("twice every fifteen seconds", None)]),
            ("What do sailors call the flashing pattern?", [("the Caddow double", None), ("Caddow double", None)]),
            ("How many steps does the tower have?", [("142", None)]),
            ("Where do the volunteers come from?", [("the village of Lowen Cross", None), ("Lowen Cross", None)]),
        )),
        (_LOGBOOK, (
            ("How many vessels did the keeper count in January?", [("14", "In January")]),
            ("From which direction did the wind blow in October?", [("south-west", "In October")]),
            ("What was the name of the supply boat?", [("Marigold", None)]),
            ("What did the keeper carve in December?", [("small wooden boats", None)]),
            ("Whom did the keeper thank on the last page?", [("the fishermen of Lowen Cross", None)]),
        )),
    )),
    ("Quillfeather_Cooperative", (
        (_BAKERY, (
            ("Who founded the Quillfeather Cooperative?", [("Zoë Marchetti and Renée Okonkwo-Lind", None)]),
            ("How many workers own the bakery?", [("twenty-three", None)]),
            ("What is the dark rye loaf nicknamed?", [("the anchor", "\"the anchor"), ("\"the anchor\"", None)]),
            ("Where did the founders train?", [("Lyon", None)]),
            ("How are decisions about prices taken?", [("at a monthly meeting", None)]),
        )),
        (_WHEEL, (
            ("When did the flour shortage happen?", [("the late 1990s", None), ("late 1990s", None)]),
            ("Who repaired the water wheel?", [("Idris Fenn", None), ("the carpenter Idris Fenn", None)]),
            ("What do members call the shortage years?", [("the 'slow bread' period", None)]),
            ("When does the wheel turn now?", [("only on festival days", None)]),
        )),
    )),
    ("Ostvel_River", (
        (_RIVER, (
            ("Where does the Ostvel rise?", [("the Tarran Hills", None), ("Tarran Hills", None)]),
            ("How long is the Ostvel?", [("218 kilometres", None)]),
            ("In which direction does the Ostvel flow?", [("north-east", None)]),
            ("How many people live in the Ostvel basin?", [("roughly 40,000", None), ("40,000", None)]),
            ("What marks the tidal limit of the river?", [("A weir built at Ennis Ford in 1908", None)]),
        )),
        (_OTTERS, (
            ("Which society carried out the otter survey?", [("the Brackwater Naturalists' Society", None)]),
            ("How many holts were counted in 2019?", [("eleven", None)]),
            ("By how much did nitrate levels fall?", [("about half", None)]),
            ("What else helped the otters recover?", [("the fencing of grazing land along the upper reaches", None)]),
        )),
    )),
)


def _answer_start(context: str, text: str, anchor: str | None) -> int:
    base = context.index(anchor) if anchor else 0
    start = context.index(text, base)
    assert context[start:start + len(text)] == text
    return start


def sample_dataset_json() -> dict:
    """The built-in sample in SQuAD v1.1 format; every answer_start is checked against its context."""
    data = []
    question_number = 0
    for title, paragraphs in _SAMPLE_ARTICLES:
        out_paragraphs = []
        for context, qas in paragraphs:
            out_qas = []
            for question, answers in qas:
                question_number += 1
                out_qas.append({
                    "answers": [{"answer_start": _answer_start(context, text, anchor), "text": text}
                                for text, anchor in answers],
                    "question": question,
                    "id": f"sample{question_number:04d}",
                })
            out_paragraphs.append({"context": context, "qas": out_qas})
        data.append({"title": title, "paragraphs": out_paragraphs})
    return {"data": data, "version": "1.1"}


def _is_punctuation(char: str) -> bool:
    # BERT's definition: all non-alphanumeric ASCII counts as punctuation, plus Unicode P* categories.
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _basic_tokens(text: str) -> list[str]:
    """BERT uncased basic tokenization (lowercase, strip accents, split punctuation) for plain text."""
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    tokens: list[str] = []
    for word in text.split():
        current = ""
        for char in word:
            if _is_punctuation(char):
                if current:
                    tokens.append(current)
                tokens.append(char)
                current = ""
            else:
                current += char
        if current:
            tokens.append(current)
    return tokens


def sample_vocab(dataset: dict) -> list[str]:
    """A WordPiece vocab covering the sample: BERT's special-token layout, characters, then words."""
    words: set[str] = set()
    for article in dataset["data"]:
        for paragraph in article["paragraphs"]:
            words.update(_basic_tokens(paragraph["context"]))
            for qa in paragraph["qas"]:
                words.update(_basic_tokens(qa["question"]))
                for answer in qa["answers"]:
                    words.update(_basic_tokens(answer["text"]))
    chars = set("abcdefghijklmnopqrstuvwxyz0123456789") | {c for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"}
    chars.update(c for word in words for c in word)
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += sorted(chars)
    vocab += [f"##{c}" for c in sorted(chars)]
    vocab += sorted(words - chars)
    return vocab
