"""MkDocs hook and griffe extension for the documentation site (mkdocs.yml names both).

The hook: the repository files the docs link to become part of the site.

The pages in ``docs/`` link to benchmark results and model cards where they live in the
repository (``../benchmarks/results/magnification.md``), so the links work where the Markdown is
read as it is (a forge's file view, an editor). MkDocs only knows ``docs/``: this hook adds those
files to the site under ``repo/`` (``repo/benchmarks/results/magnification.md``) and points the
links there. A link to any other file outside ``docs/`` is left as written, and
``mkdocs build --strict`` fails on it.

The griffe extension (:class:`SphinxRoles`): the docstrings name other objects with Sphinx
roles (``:func:`load```, ``:data:`~hardnet_export.runtime.BACKENDS```), which Markdown would
show as they are written; the API reference shows them as code (the last part of the name where
it starts with ``~``, as Sphinx does), leaving the docstrings as they are.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

import griffe
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent
PREFIX = "repo"
# What the docs may link to outside docs/: results, their plots and raw JSON, model cards.
INCLUDED = (
    "benchmarks/README.md",
    "benchmarks/results/*.md",
    "benchmarks/results/*.json",
    "benchmarks/results/*.png",
    "hardnet_export/weights/*.md",
)
# A Sphinx cross-reference role: :func:`name`, :class:`~package.module.Name`, ...
ROLE = re.compile(r":(?:py:)?(?:func|class|data|attr|meth|mod|exc|obj|const):`(~?)([^`]+)`")
# An inline Markdown link or image: ](target) or ](target#anchor "title").
LINK = re.compile(r"\]\((?P<target>[^()\s#]+)(?P<rest>[^()]*)\)")


def on_files(files: Files, config: Any) -> Files:
    for pattern in INCLUDED:
        for path in sorted(ROOT.glob(pattern)):
            src_uri = f"{PREFIX}/{path.relative_to(ROOT).as_posix()}"
            files.append(File.generated(config, src_uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    here = posixpath.dirname(page.file.src_uri)

    def repoint(match: re.Match[str]) -> str:
        target = match["target"]
        if "://" in target or target.startswith(("/", "mailto:")):
            return match[0]
        in_repo = posixpath.normpath(posixpath.join("docs", here, target))
        if in_repo.startswith(("docs/", "../")):
            return match[0]
        generated = f"{PREFIX}/{in_repo}"
        if files.get_file_from_path(generated) is None:
            return match[0]  # not included: --strict reports the link
        return f"]({posixpath.relpath(generated, here or '.')}{match['rest']})"

    return LINK.sub(repoint, markdown)


class SphinxRoles(griffe.Extension):
    """Sphinx roles in docstrings shown as code: ``:func:`~a.b.load``` becomes ```load```."""

    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_as_code, obj.docstring.value)


def _as_code(match: re.Match[str]) -> str:
    short, name = match.groups()
    return f"`{name.rsplit('.', 1)[-1] if short else name}`"
