"""Feature extractors: named, versioned ways to turn a decoded image into one float32 vector.

Every extractor has

* ``name`` (short, stable, shown to people and stored with each vector) and ``version`` (int,
  bumped whenever its output changes: projects recompute vectors of another name or version);
* ``dim`` - the length of its vectors;
* ``params()`` - a JSON-able dict that fully identifies the output (exported model files record
  it and ``load_model`` refuses a file whose params differ from what this Inspector computes;
  extractors with weights include the weights' SHA-256);
* ``describe()`` - one line for people;
* ``features_of(decoded)`` - the float32 ``[dim]`` vector of a :class:`~inspector.core.images.DecodedImage`
  (each extractor does its own grey/colour conversion and resizing), always finite and
  deterministic; ``features_of_batch(list)`` - the same for several images, stacked ``[n, dim]``.

:func:`extractor_names` lists what this Inspector offers, :func:`get_extractor` returns one by
name (one shared instance per process, so weights load once), :func:`default_extractor` is the
one new projects start with.
"""

from __future__ import annotations

from typing import Callable

from inspector.core.errors import UserError
from inspector.core.features.cnn import CnnExtractor
from inspector.core.features.combined import CombinedExtractor
from inspector.core.features.efficientnet import EfficientNetExtractor
from inspector.core.features.safe_weights import WeightsError
from inspector.core.features.texture import TextureExtractor

__all__ = [
    "TextureExtractor",
    "CnnExtractor",
    "CombinedExtractor",
    "EfficientNetExtractor",
    "WeightsError",
    "DEFAULT_EXTRACTOR",
    "default_extractor",
    "default_extractor_for_sizes",
    "LARGE_PARTS_EXTRACTOR",
    "LARGE_PARTS_SIDE",
    "extractor_names",
    "get_extractor",
]

#: The extractor new projects start with (see README "Features" for the measurements behind it).
DEFAULT_EXTRACTOR = "texture+cnn"
#: ... unless their parts are large: the median sampled image's longer side is at least
#: LARGE_PARTS_SIDE pixels, so the whole-image 224 px view shrinks a part at least twofold and a
#: small defect fades from it. Such projects start with the tiles, which look at the part at up to
#: 640 px (README "Features": ~21 px defects on 500 x 1,250 parts, macro-F1 0.936 -> 0.995), at
#: about a fifth of texture's extraction speed.
LARGE_PARTS_EXTRACTOR = "texture+cnn-tiles"
LARGE_PARTS_SIDE = 448

# name -> factory; the order is the order people see them in
_FACTORIES: dict[str, Callable[[], object]] = {
    "texture": TextureExtractor,
    "cnn": CnnExtractor,
    "cnn-tiles": lambda: CnnExtractor(tiles=True, tile_max_side=640, name="cnn-tiles"),
    "texture+cnn": lambda: CombinedExtractor([get_extractor("texture"), get_extractor("cnn")]),
    "texture+cnn-tiles": lambda: CombinedExtractor([get_extractor("texture"), get_extractor("cnn-tiles")]),
    "effnet": EfficientNetExtractor,
    "texture+effnet": lambda: CombinedExtractor([get_extractor("texture"), get_extractor("effnet")]),
    "texture+cnn+effnet": lambda: CombinedExtractor(
        [get_extractor("texture"), get_extractor("cnn"), get_extractor("effnet")]),
}
_INSTANCES: dict[str, object] = {}


def extractor_names() -> list[str]:
    """The names of every extractor this Inspector offers, default first."""
    names = list(_FACTORIES)
    names.remove(DEFAULT_EXTRACTOR)
    return [DEFAULT_EXTRACTOR, *names]


def get_extractor(name: str):
    """The extractor called ``name`` (shared per process). Raises :class:`UserError` for an unknown name."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise UserError(f"there is no feature extractor called {name!r}; available: {', '.join(extractor_names())}")
    instance = _INSTANCES.get(name)
    if instance is None:
        instance = _INSTANCES[name] = factory()
    return instance


def default_extractor():
    """The extractor new projects use when nothing is known of their images."""
    return get_extractor(DEFAULT_EXTRACTOR)


def default_extractor_for_sizes(longer_sides) -> tuple[str, str]:
    """The extractor a new project starts with, from the longer sides (pixels) of a sample of its
    images, and why, in words for a person."""
    sides = sorted(int(side) for side in longer_sides if side and side > 0)
    if not sides:
        return DEFAULT_EXTRACTOR, "the default; no image size could be read"
    median = sides[len(sides) // 2]
    if median >= LARGE_PARTS_SIDE:
        return LARGE_PARTS_EXTRACTOR, (f"large parts, median longer side {median:,} px: small defects are looked "
                                       "for in 224 px tiles as well as in the whole part")
    return DEFAULT_EXTRACTOR, f"the default for parts of this size, median longer side {median:,} px"
