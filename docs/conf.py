"""Sphinx configuration: MyST Markdown pages, the furo theme, autodoc for the public API.

The build never touches the network (CI reaches only the package registries): intersphinx reads
the inventories committed in ``_inventories/``, each built from its project's own docs source
(Django 6.1.3's sdist, Channels 4.3.2's repository) with ``sphinx-build -b dirhtml`` (Django's
URLs) or ``-b html``. redis-py publishes no inventory: it is linked with an ``extlinks`` role,
``{redis-py}`...```.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import django

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(DOCS)]
os.environ["DJANGO_SETTINGS_MODULE"] = "_settings"
django.setup()

import worker  # noqa: E402  (needs the settings above)

project = "channel-worker"
author = "channel-worker maintainers"
copyright = "channel-worker maintainers"
release = worker.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.extlinks",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_inventories"]
html_theme = "furo"
html_title = f"channel-worker {release}"

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Inventories copied from Debian 12's python3.11-doc (3.11.2) and python-django-channels-doc
# (4.0.0) packages: real Sphinx output, committed so the build needs no network.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3/", str(DOCS / "_inventories" / "python.inv")),
    "channels": (
        "https://channels.readthedocs.io/en/latest/",
        str(DOCS / "_inventories" / "channels.inv"),
    ),
    "django": ("https://docs.djangoproject.com/en/6.1/", str(DOCS / "_inventories" / "django.inv")),
}

extlinks = {
    "redis-py": ("https://redis.readthedocs.io/en/stable/%s", "%s"),
    "gh": ("https://github.com/%s", "%s"),
}

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
python_use_unqualified_type_names = True
# Types in signatures that have no page here: the worker's internal helpers (documented by their
# public uses) and third-party classes whose inventories are not committed.
nitpick_ignore_regex = [
    ("py:class", r"(worker|routing)\.[a-z_]+\..+"),
    ("py:class", r"(channels|channels_redis|redis|django|asgiref)\..*"),
    (
        "py:class",
        r"(ASGIApp|RedisChannelLayer|Redis|Path|Stats|DeadLetter|DeadLetterBounds|NullMetrics)",
    ),
]
