"""The trusted-publisher form, built from each provider's FieldSpecs, and its snippet preview.

Shared by a project's Publishing page and the pending-publisher page; the fields, labels,
help texts and validation all come from the provider, so the form, the CLI and the JSON API
accept exactly the same entries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from keyless.oidc.errors import PublisherConfigError
from keyless.oidc.providers import PROVIDERS, FieldSpec, Provider
from keyless.workflows import ClientSource

from ..client_dist import ClientUnavailable, client_description
from ..indexes import IndexInfo
from ..projects import ProjectError
from ..routes.common import public_base, services
from .base import Form
from .render import WebError
from .snippets import Snippet, snippet

MULTILINE = frozenset({"claims"})  # generic: one 'name=value' per line
MAX_VALUE = 2000


@dataclass
class PublisherForm:
    kind: str
    title: str
    index_name: str
    fields: tuple[FieldSpec, ...]
    values: dict[str, str]
    snippet: Snippet
    errors: dict[str, str] = field(default_factory=dict)
    problem: str = ""  # a form-level refusal (not about one field)

    @property
    def tabs(self) -> list[tuple[str, str]]:
        # One tab per registered provider, in the registry's order.
        return [(kind, provider.short_title) for kind, provider in PROVIDERS.items()]

    @property
    def multiline(self) -> frozenset[str]:
        return MULTILINE

    @property
    def other_errors(self) -> dict[str, str]:
        """Errors not about a field of the form (shown at the top)."""
        names = {spec.name for spec in self.fields}
        return {key: value for key, value in self.errors.items() if key not in names}


def provider(kind: str) -> Provider:
    found = PROVIDERS.get(kind)
    if found is None:
        kinds = ", ".join(PROVIDERS)
        raise WebError(404, f"Unknown publisher kind {kind!r}; choose one of {kinds}.")
    return found


def values_from(form: Form, kind: str) -> dict[str, str]:
    """The provider's fields from a posted form (absent ones as "")."""
    values = {}
    for spec in provider(kind).fields:
        value = form.get(spec.name, "").strip()
        if len(value) > MAX_VALUE:
            raise WebError(400, f"{spec.label} is too long (at most {MAX_VALUE} characters).")
        values[spec.name] = value
    return values


def values_of_config(kind: str, config: Mapping[str, Any]) -> dict[str, str]:
    """A stored config as form values (generic claims as lines, pins comma-separated)."""
    values = {}
    for spec in provider(kind).fields:
        value = config.get(spec.name, "")
        if isinstance(value, dict):
            value = "\n".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        values[spec.name] = str(value or "")
    return values


def preview(request: Request, index: IndexInfo, kind: str, values: Mapping[str, str]) -> Snippet:
    base = public_base(request)
    return snippet(
        kind,
        values,
        upload_url=f"{base}/{index.name}/legacy/",
        audience=services(request).settings.audience_for(index.name),
        client_source=_served_client(base),
    )


def _served_client(base: str) -> ClientSource | None:
    """The client this server serves at /+client/, pinned as `keyless init` would pin it;
    None when it cannot serve one (the /+client/ page says why)."""
    try:
        described = client_description(base)
    except ClientUnavailable:
        return None
    return ClientSource(
        index_url=base,
        version=described["version"],
        requirements_url=described["requirements"]["url"],
        requirements_sha256=described["requirements"]["sha256"],
    )


def build(
    request: Request,
    index: IndexInfo,
    kind: str,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    problem: str = "",
) -> PublisherForm:
    chosen = provider(kind)
    filled = {spec.name: (values or {}).get(spec.name, "") for spec in chosen.fields}
    return PublisherForm(
        kind=kind,
        title=chosen.title,
        index_name=index.name,
        fields=chosen.fields,
        values=filled,
        snippet=preview(request, index, kind, filled),
        errors=dict(errors or {}),
        problem=problem,
    )


async def submit(
    request: Request,
    index: IndexInfo,
    form: Form,
    add: Callable[[str, dict[str, str]], object],
) -> tuple[PublisherForm, int] | None:
    """Preview or add the posted entry; `add(kind, values)` is the use case (run in a thread).

    Returns None once the entry is added, else the form to show again and its status: 200 for
    a preview, 400 with each message next to its field, or a refusal's status with its message
    on top. Raises WebError for an unknown kind or an overlong value.
    """
    kind = form.get("kind", "")
    values = values_from(form, kind)
    if form.get("action") == "preview":
        return build(request, index, kind, values), 200
    try:
        await run_in_threadpool(add, kind, values)
    except PublisherConfigError as exc:
        return build(request, index, kind, values, exc.errors), 400
    except ProjectError as exc:
        return build(request, index, kind, values, problem=exc.message), exc.status
    return None
