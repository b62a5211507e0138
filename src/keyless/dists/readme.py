"""A long description (the README) as HTML, rendered the way PyPI renders it.

readme_renderer picks the renderer by the declared media type (reStructuredText when none is
declared; Markdown in the declared variant, GFM by default) and sanitizes what it produces
(nh3 allow-list: no scripts, no event handlers, no javascript: links).

Unbounded: some inputs take minutes or gigabytes (quadratic Markdown heading anchors, large
reStructuredText). The index calls this only inside a worker process with a deadline and a
memory cap (keyless.index.rendering).
"""

from __future__ import annotations

import email.message

from keyless.dists import _texts


def _media_type(declared: str | None) -> tuple[str, str]:
    """(media type, Markdown variant) of a Description-Content-Type value."""
    if not declared:
        return "text/x-rst", "GFM"
    header = email.message.EmailMessage()
    header["content-type"] = declared
    return header.get_content_type(), str(header.get_param("variant") or "GFM")


def render_description(text: str, declared: str | None) -> str | None:
    """Sanitized HTML of ``text``, or None when it does not render as ``declared``.

    Media types other than reStructuredText and Markdown render as plain text.
    """
    # Imported here, not with the module: the release client reads metadata through
    # keyless.dists, and its start-up should not pay for docutils and the Markdown stack.
    import readme_renderer.markdown
    import readme_renderer.rst
    import readme_renderer.txt

    media_type, variant = _media_type(declared)
    if media_type == "text/markdown":
        return readme_renderer.markdown.render(text, variant=variant)
    if media_type == "text/x-rst":
        return readme_renderer.rst.render(text)
    return readme_renderer.txt.render(text)


def plain_html(text: str) -> str:
    """``text`` escaped, line breaks kept: what a page shows for a description that did not
    render. Linear in the text's length, safe to compute anywhere."""
    # Imported here: `html` builds its entity tables (~2,200 names) on import, ~8 million
    # instructions of every `keyless publish` (of ~610 million before its first request),
    # which reads metadata through this package but never needs this function (the index's
    # pages do).
    import html

    return html.escape(text).replace("\n", "<br>")


def render_failure(declared: str | None) -> str:
    """PyPI's text for a description that does not render as ``declared``."""
    if declared:
        reason = f"The description failed to render for '{declared}'."
    else:
        reason = "The description failed to render in the default format of reStructuredText."
    return f"{reason} See {_texts.DESCRIPTION_HELP_URL} for more information."
