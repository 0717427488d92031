"""Image input tokens per provider and model family, from the image's pixel size.

OpenAI, tile models (published base + per-tile tokens): ``detail: low`` costs the base.
``high`` (and ``auto``, counted as high but labelled an estimate: the model picks the level
and OpenAI does not publish how) first fits the image in a 2048x2048
square, then shrinks it until its shortest side is at most 768 px (never enlarges), then
costs ``base + tile x`` the number of 512 px squares covering it. Pixel sizes are floored at
each resize, as an image library does.

OpenAI, patch models (gpt-4.1-mini/nano, gpt-5-mini/nano, o4-mini): 32 px patches covering
the image; above 1536 patches the image is scaled (aspect kept) so that at most 1536 whole
patches cover it; tokens are patches x the model's multiplier, rounded up (OpenAI does not
publish the rounding, so these counts are labelled estimates). ``detail`` does not apply.

Anthropic (estimate, as Anthropic documents it): the long edge is first brought to at most
1568 px, the area to at most 1600 tokens' worth, then tokens = ceil(width x height / 750).
Gemini (estimate): 258 tokens for an image within 384x384, else 258 per 768 px tile.
Any other model: the gpt-4o high-detail rule, labelled an estimate.

Dimensions are Python integers, so absurd sizes (a PNG header claiming 4 billion pixels a
side) cost the same few operations; each resized side is clamped to at least one pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from ciyuan.tokens.registry import normalize_model

TILE_PX: Final = 512
PATCH_PX: Final = 32
PATCHES_MAX: Final = 1536


@dataclass(frozen=True, slots=True)
class TileRule:
    base: int
    tile: int
    verified: bool = True


@dataclass(frozen=True, slots=True)
class PatchRule:
    multiplier_per_mille: int


_GPT4O: Final = TileRule(85, 170)
TILE_RULES: Final[dict[str, TileRule]] = {
    "gpt-4o-mini": TileRule(2833, 5667),
    "gpt-4o": _GPT4O,
    "chatgpt-4o": _GPT4O,
    "gpt-4.1": _GPT4O,
    "gpt-4.5": _GPT4O,
    "gpt-4-turbo": _GPT4O,
    "gpt-4-vision-preview": _GPT4O,
    "o1": TileRule(75, 150),
    "o3": TileRule(75, 150),
    "computer-use-preview": TileRule(65, 129),
    "gpt-5": TileRule(70, 140),
}
PATCH_RULES: Final[dict[str, PatchRule]] = {
    "gpt-4.1-mini": PatchRule(1620),
    "gpt-4.1-nano": PatchRule(2460),
    "gpt-5-mini": PatchRule(1620),
    "gpt-5-nano": PatchRule(2460),
    "o4-mini": PatchRule(1720),
}
DETAILS: Final = frozenset({"low", "high", "auto"})


@dataclass(frozen=True, slots=True)
class ImageTally:
    tokens: int
    exact: bool
    note: str | None = None


def _family(name: str, table: dict[str, TileRule] | dict[str, PatchRule]) -> str | None:
    best: str | None = None
    for prefix in table:
        matches = name == prefix or name.startswith(prefix + "-")
        if matches and (best is None or len(prefix) > len(best)):
            best = prefix
    return best


def tiles_high(width: int, height: int) -> int:
    """512 px tiles after the fit-in-2048 and shortest-side-768 resizes."""
    longest = max(width, height)
    if longest > 2048:
        width, height = width * 2048 // longest, height * 2048 // longest
    shortest = min(width, height)
    if shortest > 768:
        width, height = width * 768 // shortest, height * 768 // shortest
    width, height = max(width, 1), max(height, 1)
    return -(-width // TILE_PX) * -(-height // TILE_PX)


def patches(width: int, height: int) -> int:
    """32 px patches, the image scaled down to at most ``PATCHES_MAX`` of them."""
    raw = -(-width // PATCH_PX) * -(-height // PATCH_PX)
    if raw <= PATCHES_MAX:
        return raw
    ratio = math.sqrt(PATCH_PX * PATCH_PX * PATCHES_MAX / (width * height))
    cols, rows = width * ratio / PATCH_PX, height * ratio / PATCH_PX
    ratio *= min(math.floor(cols) / cols, math.floor(rows) / rows)
    scaled_w, scaled_h = max(int(width * ratio), 1), max(int(height * ratio), 1)
    return min(PATCHES_MAX, -(-scaled_w // PATCH_PX) * -(-scaled_h // PATCH_PX))


def anthropic_tokens(width: int, height: int) -> int:
    longest = max(width, height)
    if longest > 1568:
        width, height = max(width * 1568 // longest, 1), max(height * 1568 // longest, 1)
    if width * height > 1600 * 750:
        scale = math.sqrt(1600 * 750 / (width * height))
        width, height = max(int(width * scale), 1), max(int(height * scale), 1)
    return min(-(-width * height // 750), 1600)


def gemini_tokens(width: int, height: int) -> int:
    if width <= 384 and height <= 384:
        return 258
    return 258 * -(-width // 768) * -(-height // 768)


def image_tokens(model: str, width: int | None, height: int | None, detail: str) -> ImageTally:
    """Tokens of one image for ``model``; ``width``/``height`` None when the size is unknown
    (a URL not fetched), which gives the family's largest possible count, labelled."""
    assert detail in DETAILS, detail
    name = normalize_model(model)
    known = width is not None and height is not None
    patch_family = _family(name, PATCH_RULES)
    if patch_family is not None:
        rule = PATCH_RULES[patch_family]
        count = patches(width, height) if width is not None and height is not None else PATCHES_MAX
        tokens = -(-count * rule.multiplier_per_mille // 1000)
        return ImageTally(
            tokens, False, f"{patch_family} image: patch formula, rounding unpublished"
        )
    tile_family = _family(name, TILE_RULES)
    if tile_family is not None:
        tile_rule = TILE_RULES[tile_family]
        if detail == "low":
            return ImageTally(tile_rule.base, tile_rule.verified)
        if width is None or height is None:
            tokens = tile_rule.base + tile_rule.tile * tiles_high(768, 2048)
            return ImageTally(tokens, False, "image size unknown: largest high-detail count")
        tokens = tile_rule.base + tile_rule.tile * tiles_high(width, height)
        if detail == "auto":
            return ImageTally(tokens, False, "image detail auto: counted as high")
        return ImageTally(tokens, tile_rule.verified)
    if "claude" in name:
        tokens = (
            anthropic_tokens(width, height) if width is not None and height is not None else 1600
        )
        return ImageTally(tokens, False, "anthropic image: width x height / 750 (estimate)")
    if "gemini" in name:
        tokens = (
            gemini_tokens(width, height) if width is not None and height is not None else 258 * 4
        )
        return ImageTally(tokens, False, "gemini image: 258 per 768 px tile (estimate)")
    w, h = (width, height) if width is not None and height is not None else (768, 2048)
    tokens = _GPT4O.base + _GPT4O.tile * tiles_high(w, h)
    reason = "" if known else ", size unknown"
    return ImageTally(tokens, False, f"image for an unknown model: gpt-4o high rule{reason}")
