"""Several extractors side by side: their vectors concatenated, each kept as a named block.

The learner's pipelines standardise every column (``StandardScaler``), so each block arrives with
unit-variance columns whatever its raw scale; ``blocks`` tells which columns belong to which
extractor for anyone who wants to weigh them (see README "Features" for the measurement of
block weighting).
"""

from __future__ import annotations

import numpy as np

from inspector.core.images import DecodedImage

__all__ = ["CombinedExtractor"]


class CombinedExtractor:
    """Concatenation of ``parts`` (extractor objects), in order."""

    #: bump when the way parts are combined changes; the parts' own versions are folded in too
    combination_version: int = 1

    def __init__(self, parts: list, name: str = "") -> None:
        if len(parts) < 2:
            raise ValueError("a combined extractor needs at least two parts")
        self.parts = list(parts)
        self.name = name or "+".join(part.name for part in self.parts)

    @property
    def version(self) -> int:
        """Changes whenever the combination or any part's version changes (stored vectors are recomputed)."""
        version = self.combination_version
        for part in self.parts:
            version = version * 1000 + int(part.version)
        return version

    @property
    def dim(self) -> int:
        return sum(part.dim for part in self.parts)

    @property
    def blocks(self) -> list[tuple[str, int]]:
        """``(part name, number of columns)`` in column order."""
        return [(part.name, part.dim) for part in self.parts]

    @property
    def novelty_blocks(self) -> list[tuple[str, int]]:
        """The parts' own novelty blocks (a part without any: one block), in column order."""
        out: list[tuple[str, int]] = []
        for part in self.parts:
            out.extend(getattr(part, "novelty_blocks", None) or [(part.name, part.dim)])
        return out

    def params(self) -> dict:
        return {"name": self.name, "version": self.version, "parts": [part.params() for part in self.parts]}

    def describe(self) -> str:
        return (f"{' and '.join(part.name for part in self.parts)} side by side; {self.dim} numbers; "
                "each block standardised by the model, the learner weighs them")

    def features_of(self, decoded: DecodedImage) -> np.ndarray:
        return np.concatenate([part.features_of(decoded) for part in self.parts]).astype(np.float32)

    def features_of_batch(self, decoded: list[DecodedImage]) -> np.ndarray:
        if not decoded:
            return np.zeros((0, self.dim), np.float32)
        return np.concatenate([part.features_of_batch(decoded) for part in self.parts], axis=1).astype(np.float32)
