"""The article split of SQuAD dev used offline: the only real data there is SQuAD dev, so it is cut by article into a
training part, a held-out part and, optionally, a validation part.

That split is NOT the standard benchmark (the official protocol trains on SQuAD train and evaluates on all of dev);
every output made from it says so (:data:`DEV_SPLIT_NOTE`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compression.squad_records import read_squad_records, write_squad_json
from squad.errors import DatasetError

log = logging.getLogger(__name__)

DEV_SPLIT_NOTE = (
    "NOT THE STANDARD BENCHMARK: trained on part of SQuAD v1.1 dev and evaluated on held-out dev articles "
    "(the official protocol trains on SQuAD train and scores all of dev); numbers are only comparable "
    "between runs on the same split"
)


@dataclass(frozen=True)
class DevSplit:
    """SQuAD dev cut by article into a training part, a held-out part and, optionally, a validation part taken
    from the training articles (written as SQuAD files)."""

    train_json: Path
    heldout_json: Path
    manifest_json: Path
    train_articles: tuple[str, ...]
    heldout_articles: tuple[str, ...]
    train_questions: int
    heldout_questions: int
    validation_json: Path | None = None
    validation_articles: tuple[str, ...] = ()
    validation_questions: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "note": DEV_SPLIT_NOTE,
            "train_json": str(self.train_json),
            "heldout_json": str(self.heldout_json),
            "train_articles": len(self.train_articles),
            "heldout_articles": len(self.heldout_articles),
            "train_questions": self.train_questions,
            "heldout_questions": self.heldout_questions,
            "heldout_titles": list(self.heldout_articles),
            "validation_json": str(self.validation_json) if self.validation_json else None,
            "validation_articles": len(self.validation_articles),
            "validation_questions": self.validation_questions,
            "validation_titles": list(self.validation_articles),
        }


def split_dev_by_article(dev_json: Path, out_dir: Path, *, heldout_every: int = 6,
                         validation_articles: int = 0) -> DevSplit:
    """Split ``dev_json`` by article: every ``heldout_every``-th article (5, 11, 17, ... for 6) is held out, and
    ``validation_articles`` of the others, spread evenly over them (for 4 of 40: the 10th, 20th, 30th and 40th),
    form a validation part that is neither trained on nor held out.

    Splitting by article keeps every paragraph and question of an article on one side, so no held-out or
    validation context is ever trained on. With the official dev set and the default, 8 of 48 articles are held
    out. The files are rewritten only when the source or the rule changed (derived data, cheap to rebuild).
    """
    if heldout_every < 2:
        raise DatasetError(f"heldout_every must be at least 2, got {heldout_every}")
    dev_json, out_dir = Path(dev_json), Path(out_dir)
    records = read_squad_records(dev_json)
    titles = list(dict.fromkeys(record.title for record in records))
    if len(titles) < heldout_every:
        raise DatasetError(
            f"{dev_json}: has {len(titles)} articles; splitting by article needs at least {heldout_every}"
        )
    heldout_titles = {title for i, title in enumerate(titles) if i % heldout_every == heldout_every - 1}
    remaining = [t for t in titles if t not in heldout_titles]
    if not 0 <= validation_articles < len(remaining):
        raise DatasetError(f"validation_articles={validation_articles}: {dev_json} has {len(remaining)} articles besides "
                           "the held-out ones, and some must remain for training")
    step = len(remaining) / validation_articles if validation_articles else 0
    validation_titles = {remaining[int(round((k + 1) * step)) - 1] for k in range(validation_articles)}
    train = [r for r in records if r.title not in heldout_titles | validation_titles]
    heldout = [r for r in records if r.title in heldout_titles]
    validation = [r for r in records if r.title in validation_titles]
    source_sha256 = hashlib.sha256(dev_json.read_bytes()).hexdigest()
    manifest_path = out_dir / "split.json"
    split = DevSplit(
        train_json=out_dir / "dev-split-train.json",
        heldout_json=out_dir / "dev-split-heldout.json",
        manifest_json=manifest_path,
        train_articles=tuple(t for t in remaining if t not in validation_titles),
        heldout_articles=tuple(t for t in titles if t in heldout_titles),
        train_questions=len(train),
        heldout_questions=len(heldout),
        validation_json=out_dir / "dev-split-validation.json" if validation_articles else None,
        validation_articles=tuple(t for t in remaining if t in validation_titles),
        validation_questions=len(validation),
    )
    rule = f"article i (0-based, file order) is held out when i % {heldout_every} == {heldout_every - 1}"
    if validation_articles:
        rule += (f"; of the other {len(remaining)}, article j (0-based) is validation when j = round((k + 1) x "
                 f"{len(remaining)} / {validation_articles}) - 1 for k < {validation_articles}")
    manifest = {**split.summary(), "source": str(dev_json), "source_sha256": source_sha256, "rule": rule}
    current = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    files = [split.train_json, split.heldout_json] + ([split.validation_json] if split.validation_json else [])
    if current != manifest or not all(path.is_file() for path in files):
        write_squad_json(train, split.train_json, note=DEV_SPLIT_NOTE)
        write_squad_json(heldout, split.heldout_json, note=DEV_SPLIT_NOTE)
        if split.validation_json:
            write_squad_json(validation, split.validation_json, note=DEV_SPLIT_NOTE)
        out_dir.mkdir(parents=True, exist_ok=True)
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("dev split: %d training questions (%d articles), %d validation questions (%d articles), %d held-out "
             "questions (%d articles) -- %s", len(train), len(split.train_articles), len(validation),
             len(split.validation_articles), len(heldout), len(split.heldout_articles), DEV_SPLIT_NOTE)
    return split
