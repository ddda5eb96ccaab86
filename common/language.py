"""Japanese where a learner meets it: `--lang ja`, or a Japanese locale (LANG=ja_JP.UTF-8).

It changes three things, and nothing that is computed:
- the first line of every chapter's `--help` (its title, from common.catalog);
- the closing line of a run, which says where the results are and which figure to open first;
- figure titles and axis labels that a chapter gives in both languages (`say(en, ja)`), drawn
  with a font that has the glyphs: Noto Sans CJK JP (Debian's fonts-noto-cjk) or another
  Japanese font matplotlib finds. Without one, the figures stay English and one warning line
  says so, rather than drawing empty boxes.
`start(args)` (common.run) chooses the language for the run, as it chooses the dtype policy.
"""

from __future__ import annotations

import os
import sys

LANGUAGES = ("en", "ja")
FONTS = ("Noto Sans CJK JP", "Noto Sans JP", "Noto Serif CJK JP", "IPAexGothic", "IPAGothic",
         "TakaoGothic", "VL Gothic")
_current = "en"  # the language of figures in this process (set by `use`)


def chosen(argv=None, flag: str | None = None) -> str:
    """The language a command asks for: `--lang` (`flag`, or found in `argv`), else "ja" in
    a Japanese locale, else "en"."""
    if flag is None:
        argv = list(sys.argv[1:] if argv is None else argv)
        for i, word in enumerate(argv):
            if word == "--lang" and i + 1 < len(argv):
                flag = argv[i + 1]
            elif word.startswith("--lang="):
                flag = word.split("=", 1)[1]
    if flag in LANGUAGES:
        return flag
    locale = os.environ.get("LC_ALL") or os.environ.get("LC_MESSAGES") or os.environ.get("LANG")
    return "ja" if (locale or "").lower().startswith("ja") else "en"


def add_flag(parser) -> None:
    parser.add_argument("--lang", choices=LANGUAGES, default=None,
                        help="language of the help's first line, the closing message and the "
                             "figure titles (default: ja in a Japanese locale, else en)")


def japanese_font() -> str | None:
    """The first Japanese font matplotlib knows of, or None."""
    from matplotlib import font_manager

    known = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in FONTS if name in known), None)


def use(language: str) -> str:
    """Draw figures in `language` from now on; returns the language in use (English, with one
    warning line on stderr, where Japanese was asked for and no Japanese font is installed)."""
    global _current
    if language == "ja":
        font = japanese_font()
        if font is None:
            print("warning: no Japanese font found (install Debian's fonts-noto-cjk); "
                  "figures stay in English", file=sys.stderr)
            language = "en"
        else:
            import matplotlib

            matplotlib.rcParams["font.family"] = [font, "DejaVu Sans"]
    _current = language
    return language


def japanese_glyphs() -> bool:
    """Let figures in English draw Japanese words too (an emoji's name, a prompt): the
    Japanese font, where one is installed, after DejaVu Sans; matplotlib falls back from one
    to the next glyph by glyph. Returns whether a Japanese font was found."""
    font = japanese_font()
    if font is not None and _current == "en":
        import matplotlib

        matplotlib.rcParams["font.family"] = ["DejaVu Sans", font]
    return font is not None


def current() -> str:
    return _current


def say(en: str, ja: str) -> str:
    """The text of a figure in the language in use."""
    return ja if _current == "ja" else en


def closing(language: str, chapter: str, out, english: str) -> str:
    """A run's last line: `english`, or in Japanese where the results are and which figure
    of the chapter (common.catalog) to open first."""
    if language != "ja":
        return english
    from common.catalog import BY_NAME

    figure = BY_NAME[chapter].figure if chapter in BY_NAME else "metrics.json"
    return f"\n図、モデル、metrics.json は {out}/ にあります（まず {figure} を開いてください）"
