"""Sphinx configuration of the skcds documentation.

Build (from the repository root, no network needed)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The build runs the gallery in ``examples/`` (sphinx-gallery) and writes API pages to
``docs/generated/`` (autosummary); both outputs are git-ignored.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the checkout wins over any other installed skcds

import torch  # noqa: E402

import skcds  # noqa: E402

sys.path.insert(0, str(DOCS))
from _tables import write_reports  # noqa: E402

# the benchmark reports, rendered as real tables (docs/_tables.py)
write_reports(
    ROOT,
    DOCS,
    {
        **{
            f"bench_{t}": f"benchmarks/results/bench_cpu/{t}/table.md"
            for t in ("gmm9", "mw54", "funnel", "mw52")
        },
        "speed_cpu": "benchmarks/results/speed_cpu/speed.md",
        "readme_results": "benchmarks/results/readme_results.md",
        "thread_contention": "benchmarks/results/thread_contention/table.md",
        "flow_student_study": "benchmarks/results/flow_student_study/table.md",
        "flow_distiller_study": "benchmarks/results/flow_distiller_study/table.md",
        "families_table": "benchmarks/results/families/table.md",
    },
)

# The gallery runs in this process. Its networks are tiny, and torch's thread pool spins
# waiting on other threads: on a 2-core machine shared with other jobs, training with one
# thread was 6-7x faster than with torch's default of two (30 s instead of 190 s for the
# quickstart). One thread keeps the build time predictable.
torch.set_num_threads(1)

# -- Project -------------------------------------------------------------------------------
project = "skcds"
author = "the skcds developers"
copyright = "2025, the skcds developers"
release = skcds.__version__
version = ".".join(release.split(".")[:2])

# -- Extensions ----------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
# no sphinx.ext.intersphinx: the build must work offline (no inventory is fetched)

templates_path = ["_templates"]
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
default_role = "literal"  # `x` in docstrings renders as code, never as a broken reference
pygments_style = "sphinx"

# -- autodoc / autosummary / numpydoc ------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
autodoc_member_order = "groupwise"
autodoc_default_options = {"members": True}
numpydoc_show_class_members = False  # the class template lists the members itself
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

# -- sphinx-gallery ------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "backreferences_dir": "generated/backreferences",
    "doc_module": ("skcds",),
    "reference_url": {"skcds": None},  # link skcds names locally; nothing else is fetched
    "remove_config_comments": True,
    "show_memory": False,
    "abort_on_example_error": True,
}

# -- HTML ----------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skcds {release}"
html_theme_options = {
    "navbar_end": ["theme-switcher", "navbar-icon-links"],
    # the benchmark page's wide tables get the whole width (no sidebars)
    "secondary_sidebar_items": {"**": ["page-toc"], "benchmarks": []},
    "show_prev_next": False,
}
html_sidebars = {"benchmarks": []}
html_show_sourcelink = False
html_static_path = ["_static"]
html_css_files = ["skcds.css"]


# -- The changelog -------------------------------------------------------------------------
_CHANGELOG = ROOT / "CHANGELOG.md"
_INCLUDE = re.compile(r"^\.\. literalinclude:: \.\./CHANGELOG\.md\n(?:   .*\n)*", re.MULTILINE)


def _changelog_fallback(app, docname: str, source: list[str]) -> None:
    """Replace the changelog include by a note while CHANGELOG.md does not exist yet.

    A missing include file is a warning, which ``-W`` turns into a failed build.
    """
    if docname == "changelog" and not _CHANGELOG.is_file():
        note = ".. note::\n\n   ``CHANGELOG.md`` is not in the repository yet.\n"
        source[0] = _INCLUDE.sub(note, source[0])


def setup(app) -> None:
    app.connect("source-read", _changelog_fallback)
