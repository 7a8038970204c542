"""Image-caption pairs from a folder, for real fine-tuning: `metadata.jsonl` lines of
{"file_name": ..., "text": ...} beside the images (the Hugging Face "imagefolder" layout)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from training.toy_data import to_model_range


@dataclass(frozen=True)
class FolderPairs:
    """The (image path, caption) pairs of a folder."""

    pairs: list[tuple[Path, str]]

    @classmethod
    def read(cls, folder: Path) -> FolderPairs:
        """The pairs listed in `folder/metadata.jsonl`; ValueError when there are none."""
        lines = (folder / "metadata.jsonl").read_text().splitlines()
        pairs = []
        for line in lines:
            if line.strip():
                record = json.loads(line)
                pairs.append((folder / record["file_name"], str(record["text"])))
        if not pairs:
            raise ValueError(f"{folder / 'metadata.jsonl'} lists no images")
        return cls(pairs)

    def batch(
        self, step: int, batch_size: int, seed: int, resolution: int
    ) -> tuple[object, list[str]]:
        """Batch `step`: images (B, 3, R, R) in [-1, 1], centre-cropped and resized, and
        their captions."""
        rng = random.Random(seed * 1_000_003 + step)
        chosen = [rng.choice(self.pairs) for _ in range(batch_size)]
        images = []
        for path, _ in chosen:
            with Image.open(path) as image:
                images.append(ImageOps.fit(image.convert("RGB"), (resolution, resolution)))
        return to_model_range(images), [caption for _, caption in chosen]
