"""Titles that fit their figure: long ones are broken into lines."""

from __future__ import annotations

import textwrap

from matplotlib.figure import Figure

#: mean width of a character in DejaVu Sans, in units of the font size (a
#: little above the true ~0.55, so that wrapped lines fit)
_CHAR_WIDTH = 0.62


def wrap(text: str, width: float, fontsize: float) -> str:
    """Break ``text`` into lines no wider than ``width``.

    Parameters
    ----------
    text : str
        The text; its own line breaks are kept.
    width : float
        The width available (inches).
    fontsize : float
        The font size (points).

    Returns
    -------
    text : str
        The text with line breaks between words where a line would not fit.
    """
    chars = max(12, int(width * 72 / (_CHAR_WIDTH * fontsize)))
    return "\n".join(
        textwrap.fill(line, chars, break_on_hyphens=False) for line in text.split("\n")
    )


def suptitle(fig: Figure, text: str, fontsize: float = 10) -> None:
    """Set ``fig``'s title, broken into lines that fit the figure's width.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    text : str
        The title.
    fontsize : float
        The font size (points).
    """
    width = fig.get_size_inches()[0] * 0.95
    fig.suptitle(wrap(text, width, fontsize), fontsize=fontsize)


def axes_title_width(fig: Figure, n_cols: int = 1) -> float:
    """Return the width (inches) an axes title may take in a grid of ``n_cols``.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    n_cols : int
        Columns of axes side by side.

    Returns
    -------
    width : float
        About the width of one axes (inches).
    """
    return 0.8 * fig.get_size_inches()[0] / n_cols
