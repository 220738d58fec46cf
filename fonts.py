"""Fonts for the run names of plot_curves.py's legends, which are often Chinese: find an installed font that draws
them (well-known CJK fonts first), never one that draws boxes, and where none does, number the runs in the legend and
say so in one line with the package to install.
"""

import collections
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from matplotlib import font_manager
from matplotlib.font_manager import FontProperties
from matplotlib.ft2font import FT2Font

from cli import InputError

CJK_FONT_INSTALL_HINT = "install a CJK font (`sudo apt install fonts-noto-cjk`) or pass --font /path/to/font.ttc"
# Families looked for first, in this order (Traditional Chinese first, as the ADL data is); any other installed font
# that has the characters comes after them.
PREFERRED_FONTS = (
    "Noto Sans CJK TC",
    "Noto Sans CJK",
    "Noto Sans TC",
    "Noto Sans SC",
    "Source Han Sans TW",
    "Source Han Sans",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Microsoft JhengHei",
    "PingFang TC",
    "PingFang",
    "Heiti TC",
    "Microsoft YaHei",
    "SimHei",
    "Noto Serif CJK",
    "AR PL UMing",
    "AR PL UKai",
    "Droid Sans Fallback",
)


# A font draws a character with a glyph of its own; it shares one only among a few equivalent characters (the spaces,
# a CJK compatibility ideograph and its unified form). A glyph that more characters than this map to is a placeholder:
# matplotlib's Last Resort font maps every character of Unicode to one box per block (20,992 to the one of the CJK
# ideographs), so its character map "has" every character and it draws none of them.
PLACEHOLDER_SHARE = 64


@dataclass(frozen=True)
class CharacterMap:
    glyphs: dict[int, int]  # character code: glyph index
    placeholders: frozenset[int]  # glyph indices shared by more than PLACEHOLDER_SHARE characters

    def draws(self, character: str) -> bool:
        glyph = self.glyphs.get(ord(character), 0)  # glyph 0 is .notdef, the font's own "missing" box
        return glyph != 0 and glyph not in self.placeholders


@lru_cache(maxsize=None)
def _character_map(font_path: str) -> CharacterMap:
    glyphs = FT2Font(font_path).get_charmap()
    shares = collections.Counter(glyphs.values())
    return CharacterMap(glyphs, frozenset(glyph for glyph, count in shares.items() if count > PLACEHOLDER_SHARE))


def missing_characters(font_path: str | Path, text: str) -> str:
    """The visible characters of `text` that the font file does not draw: no glyph, or only a placeholder glyph (see
    PLACEHOLDER_SHARE); all of them if the file cannot be read as a font."""
    try:
        character_map = _character_map(str(font_path))
    except (OSError, RuntimeError, ValueError):
        return "".join(dict.fromkeys(ch for ch in text if not ch.isspace()))
    return "".join(dict.fromkeys(ch for ch in text if not ch.isspace() and not character_map.draws(ch)))


def font_covers(font_path: str | Path, text: str) -> bool:
    """Whether the font file has a glyph for every visible character of `text`."""
    return not missing_characters(font_path, text)


def installed_fonts() -> list[tuple[str, str]]:
    """(family, file) of the fonts matplotlib knows, then of those installed since it cached its list."""
    fonts = {entry.fname: entry.name for entry in font_manager.fontManager.ttflist}
    for path in font_manager.findSystemFonts():
        if path not in fonts:
            try:
                fonts[path] = FT2Font(path).family_name
            except (OSError, RuntimeError, ValueError):
                continue
    return [(family, path) for path, family in fonts.items()]


def _preference(family: str) -> int:
    for rank, preferred in enumerate(PREFERRED_FONTS):
        if family.lower().startswith(preferred.lower()):
            return rank
    return len(PREFERRED_FONTS)


def default_font() -> str:
    """The font file matplotlib draws text with when no font is given."""
    return font_manager.findfont(FontProperties())


def find_font(text: str, forced: Path | None = None) -> str | None:
    """The font file to draw `text` with.

    Args:
        text: the run names, joined.
        forced: the user's --font, or None. An InputError when it is not a readable font file.

    Returns:
        `forced` if given; else None where matplotlib's default font will do; else the installed font that draws all
        the characters the default font does not (the legend falls back to the default font for the others),
        well-known CJK fonts first; else None (legend_names then numbers the runs, and says so).
    """
    if forced is not None:
        if not forced.is_file():
            raise InputError(f"--font {forced}: no such file")
        try:
            _character_map(str(forced))
        except (OSError, RuntimeError, ValueError):
            raise InputError(f"--font {forced}: cannot read it as a font file (.ttf, .otf or .ttc)") from None
        return str(forced)
    missing = missing_characters(default_font(), text)
    if not missing:
        return None
    for _, path in sorted(installed_fonts(), key=lambda font: (_preference(font[0]), font[0], font[1])):
        if font_covers(path, missing):
            return path
    return None


def legend_font(font_path: str | None) -> FontProperties | None:
    """Font properties for the legend (the run names).

    Args:
        font_path: the font find_font chose, or None.

    Returns:
        The given font, falling back to matplotlib's default for the characters it lacks; None for `font_path` None.
    """
    if font_path is None:
        return None
    font_manager.fontManager.addfont(font_path)
    family = FontProperties(fname=font_path).get_name()
    return FontProperties(family=[family, "DejaVu Sans"])


def legend_names(names: list[str], font_path: str | None, forced: bool = False) -> tuple[list[str], str | None]:
    """The legend's name of each run, and the warning to give when some could not be kept.

    A name is kept where the legend's fonts (`font_path`, then matplotlib's default font) draw all its characters;
    otherwise the run is called "run N", N its position among the runs, which any font draws: a legend of boxes
    would not tell the runs apart. The warning, one line, gives each renamed run's real name, the characters no font
    draws, and how to get a font for them.

    Args:
        names: the run names, in command-line order.
        font_path: the font find_font chose (None: matplotlib's default font).
        forced: whether `font_path` is the user's --font.

    Returns:
        (the legend names, the warning or None).
    """
    fonts = [path for path in (font_path, default_font()) if path is not None]
    labels, renamed, missing = [], [], ""
    for number, name in enumerate(names, 1):
        lacking = name
        for path in fonts:
            lacking = missing_characters(path, lacking)
        if lacking:
            labels.append(f"run {number}")
            renamed.append(f"run {number} = {name!r}")
            missing += lacking
        else:
            labels.append(name)
    if not renamed:
        return labels, None
    missing = "".join(dict.fromkeys(missing))
    cause = f"--font {font_path} does not draw" if forced else "no installed font draws"
    return labels, (
        f"{cause} the characters {missing!r} of the run names: the legend calls the runs by number "
        f"({', '.join(renamed)}); to see the names, {CJK_FONT_INSTALL_HINT}"
    )
