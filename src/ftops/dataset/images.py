"""Checks for `image_url` parts: where the image lives, its format and size, its token cost."""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from ftops.catalog import MAX_IMAGE_BYTES

_DATA_URI = re.compile(r"^data:image/(?P<kind>[a-zA-Z0-9.+-]+);base64,", re.ASCII)
_FORMATS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
_MODES = {"RGB", "RGBA"}
DETAILS = ("low", "high", "auto")
# Without the pixels (an https URL), assume a 1024x1024 image at high detail.
UNKNOWN_SIZE_TOKENS = 765


@dataclass(frozen=True, slots=True)
class ImageCheck:
    tokens: int
    problem: str | None = None  # rule code
    detail: str = ""


def vision_tokens(width: int, height: int, detail: str) -> int:
    """Image tokens as OpenAI documents them for the gpt-4o family: 85 at low detail; at high
    detail fit into 2048x2048, scale the short side to 768, then 85 + 170 per 512-px tile."""
    if detail == "low":
        return 85
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


def check_image_url(url: object, detail: str) -> ImageCheck:
    if not isinstance(url, str):
        return ImageCheck(0, "invalid_image_url", "image_url.url is not a string")
    if url.startswith("https://"):
        return ImageCheck(85 if detail == "low" else UNKNOWN_SIZE_TOKENS)
    match = _DATA_URI.match(url)
    if not match:
        shown = url[:40] + ("..." if len(url) > 40 else "")
        return ImageCheck(
            0, "invalid_image_url", f"image_url.url '{shown}' is neither https:// nor a base64 data URI"
        )
    declared = _FORMATS.get(match.group("kind").lower())
    if declared is None:
        return ImageCheck(0, "invalid_image", f"image type '{match.group('kind')}' is not JPEG, PNG or WEBP")
    payload = url[match.end() :]
    # base64 of N bytes is ceil(N/3)*4 characters: reject before decoding a huge payload.
    if len(payload) * 3 // 4 > MAX_IMAGE_BYTES:
        return ImageCheck(0, "image_too_large", f"image is about {len(payload) * 3 // 4 / 2**20:.1f} MB")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return ImageCheck(0, "invalid_image", "image data is not valid base64")
    if len(raw) > MAX_IMAGE_BYTES:
        return ImageCheck(0, "image_too_large", f"image is {len(raw) / 2**20:.1f} MB")
    try:
        with Image.open(io.BytesIO(raw)) as img:
            fmt, mode, (width, height) = img.format, img.mode, img.size
    except (UnidentifiedImageError, OSError, ValueError):
        return ImageCheck(0, "invalid_image", "image data is not a readable JPEG, PNG or WEBP image")
    if fmt not in _FORMATS.values():
        return ImageCheck(0, "invalid_image", f"image is {fmt}, not JPEG, PNG or WEBP")
    if fmt != declared:
        return ImageCheck(0, "invalid_image", f"data URI says {declared} but the bytes are {fmt}")
    if mode not in _MODES:
        return ImageCheck(0, "invalid_image", f"image mode is {mode}, not RGB or RGBA")
    return ImageCheck(vision_tokens(width, height, detail))
