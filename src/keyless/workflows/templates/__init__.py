"""CI workflow templates (package data) that keyless.workflows and `keyless init` fill in.

Placeholders are written ``%%{name}``: neither GitHub's ``${{ … }}`` nor GitLab's ``$VAR``
nor shell ``%`` formats can be mistaken for them. A placeholder alone on its line whose value
is empty removes the line, so optional steps leave no gap.
"""

from __future__ import annotations

import re
import string
from importlib import resources

__all__ = ["TEMPLATES", "render"]

TEMPLATES = (
    "github-release.yml",
    "github-test-job.yml",
    "github-publish-job.yml",
    "gitlab-ci.yml",
    "gitlab-test-job.yml",
    "gitlab-publish-job.yml",
)


class _Template(string.Template):
    delimiter = "%%"
    idpattern = r"[a-z][a-z0-9_]*"


_ALONE = re.compile(r"^[ \t]*%%\{(?P<name>[a-z][a-z0-9_]*)\}[ \t]*$")


def render(name: str, values: dict[str, str]) -> str:
    """The template ``name`` (one of TEMPLATES) with every placeholder replaced.

    Raises KeyError for a placeholder without a value, ValueError for a malformed one, and
    FileNotFoundError for an unknown template.
    """
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines(keepends=True):
        alone = _ALONE.match(line)
        if alone and values[alone.group("name")] == "":
            continue
        lines.append(line)
    return _Template("".join(lines)).substitute(values)
