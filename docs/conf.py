"""Sphinx configuration of eegsal's documentation (``docs/``).

Build with ``python -m sphinx -W --keep-going -b html docs docs/_build/html``
from the repository root, after ``pip install -e ".[doc]"``. The build needs
no network and runs none of the analyses: the gallery shows their code.
"""

import os
import sys
from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # importing eegsal.viz must not open a window

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import eegsal  # noqa: E402

project = "eegsal"
author = "eegsal developers"
copyright = f"{date.today().year}, {author}"  # noqa: A001
release = eegsal.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

# Links to MNE, NumPy, pandas... need the network at build time; CI builds
# offline, so they are opt-in (EEGSAL_DOCS_INTERSPHINX=1).
if os.environ.get("EEGSAL_DOCS_INTERSPHINX"):
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "pandas": ("https://pandas.pydata.org/docs", None),
        "mne": ("https://mne.tools/stable", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
        "matplotlib": ("https://matplotlib.org/stable", None),
    }

templates_path = ["_templates"]
exclude_patterns = ["_build", "README.md", "**.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
default_role = "py:obj"  # `name` links like :py:obj:`name`
smartquotes_action = "qe"  # curly quotes, but "--out" stays two hyphens

# -- API reference: autosummary pages from the docstrings, read by numpydoc --
autosummary_generate = True
autodoc_typehints = "none"  # the docstrings give the types, in MNE's dialect
autodoc_member_order = "bysource"
autodoc_default_options = {"inherited-members": False}
numpydoc_show_class_members = False  # the class template lists the members
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- Gallery: the scripts of analyses/, shown, never run ---------------------
# They train models for minutes and read data that a docs build does not
# have; `python analyses/NAME.py --help` shows how each one runs.
sphinx_gallery_conf = {
    "examples_dirs": [str(ROOT / "analyses")],
    "gallery_dirs": ["auto_analyses"],
    "filename_pattern": r"^$",  # execute nothing ...
    "plot_gallery": "False",  # ... and say so
    "download_all_examples": False,
    "write_computation_times": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "show_signature": False,
}

# -- HTML --------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"eegsal {release}"
html_static_path = []
html_show_sourcelink = False
html_theme_options = {
    "navbar_end": ["navbar-icon-links"],
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_context = {"default_mode": "light"}


def _skip_member(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated metadata-routing setters."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return skip


def setup(app):
    """Connect the hooks above."""
    app.connect("autodoc-skip-member", _skip_member)
