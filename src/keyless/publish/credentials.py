"""Upload credentials: an API token, or Trusted Publishing (the CI's OIDC token exchanged for a
short-lived upload token), with the token lifecycle and errors that say how to fix things.
Finding the CI and getting its OIDC token is `keyless.publish.ambient`; this module exchanges
that token with the index.

Discovery follows PEP 807 first (`/.well-known/pytp/{sha256 of the upload path}`), then PyPI's
root endpoints (`/_/oidc/audience`, `/_/oidc/mint-token`), so the same client works on keyless,
PyPI and TestPyPI. A minted token is masked in CI logs at once, re-minted between files when
it has under five minutes left, and burned by `close()`.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import httpx

from keyless.publish.errors import PublishError
from keyless.publish.indexclient import redact, retry_after_seconds, server_message
from keyless.publish.reporter import Reporter

PYTP_TYPE = "application/vnd.pypi.pytp.v1+json"
# Re-mint when a minted token has less than this left: one more file may take that long.
REFRESH_MARGIN = 5 * 60
# When an index omits `expires`: PyPI's (and PEP 807's minimum) lifetime.
DEFAULT_LIFETIME = 15 * 60
MINT_ATTEMPTS = 3
Mode = Literal["auto", "always", "never"]
MODES: tuple[str, ...] = ("auto", "always", "never")


# ------------------------------------------------------------------------------ discovery


@dataclass(frozen=True)
class Discovery:
    """Where an index mints upload tokens, and the audience its OIDC tokens must carry."""

    audience: str
    mint_url: str
    burn_url: str | None
    source: str  # "pep807" | "pypi-root"


def _root_of(upload_url: str) -> str:
    parts = urlsplit(upload_url)
    netloc = parts.netloc.rsplit("@", 1)[-1]  # never send userinfo anywhere else
    return urlunsplit((parts.scheme, netloc, "", "", ""))


def _same_origin(url: str, root: str) -> bool:
    a, b = urlsplit(url), urlsplit(root)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def _get_json(http: httpx.Client, url: str, accept: str) -> tuple[int, Any]:
    """(status, parsed JSON or None), with transport errors as PublishError."""
    try:
        response = http.get(url, headers={"Accept": accept})
    except httpx.TransportError as exc:
        raise _unreachable(url, exc) from exc
    if response.status_code != 200:
        return response.status_code, None
    try:
        return 200, response.json()
    except ValueError:
        return 200, None


def _unreachable(url: str, exc: httpx.TransportError) -> PublishError:
    text = str(exc) or type(exc).__name__
    hint = "check the URL and that the index is up."
    if "certificate" in text.lower():
        hint = (
            "the index's TLS certificate is not trusted: pass its CA with --cert "
            "(or SSL_CERT_FILE)."
        )
    return PublishError(
        f"cannot reach {redact(url)}: {text}", hint=hint, context={"url": redact(url)}
    )


def discover(upload_url: str, http: httpx.Client) -> Discovery | None:
    """How `upload_url`'s index does Trusted Publishing; None when it does not.

    PEP 807 first: GET `{scheme}://{host}/.well-known/pytp/{sha256(path)}` (the endpoints must
    be on the upload URL's own origin, or the OIDC token could be sent elsewhere), then its
    audience endpoint; else PyPI's root `/_/oidc/audience`. Raises PublishError when the index
    cannot be reached.
    """
    root = _root_of(upload_url)
    key = hashlib.sha256(urlsplit(upload_url).path.encode("utf-8")).hexdigest()
    status, document = _get_json(http, f"{root}/.well-known/pytp/{key}", PYTP_TYPE)
    if status == 200 and isinstance(document, dict):
        audience_url = document.get("audience-endpoint")
        mint_url = document.get("mint-token-endpoint")
        if (
            isinstance(audience_url, str)
            and isinstance(mint_url, str)
            and _same_origin(audience_url, root)
            and _same_origin(mint_url, root)
        ):
            status, answer = _get_json(http, audience_url, PYTP_TYPE)
            if (
                status == 200
                and isinstance(answer, dict)
                and isinstance(answer.get("audience"), str)
            ):
                return Discovery(
                    audience=answer["audience"],
                    mint_url=mint_url,
                    # PEP 807 defines no burn endpoint; the root one takes any minted token.
                    burn_url=f"{root}/_/oidc/burn-token",
                    source="pep807",
                )
    status, answer = _get_json(http, f"{root}/_/oidc/audience", "application/json")
    if status == 200 and isinstance(answer, dict) and isinstance(answer.get("audience"), str):
        return Discovery(
            audience=answer["audience"],
            mint_url=f"{root}/_/oidc/mint-token",
            burn_url=f"{root}/_/oidc/burn-token",
            source="pypi-root",
        )
    return None


# ------------------------------------------------------------------------ the credentials


class Credentials(Protocol):
    """Something that hands out an upload token."""

    source: str  # "trusted-publishing" | "api-token"

    def token(self) -> str:
        """A token valid now. Raises PublishError when none can be had."""

    def close(self) -> None:
        """Give up the credentials (burn minted tokens). Never raises."""


@runtime_checkable
class RenewableCredentials(Protocol):
    """Credentials that can fetch a fresh token on demand (after the index refused one)."""

    source: str

    def token(self) -> str: ...

    def close(self) -> None: ...

    def renew(self) -> str:
        """A brand-new token. Raises PublishError when none can be had."""


@dataclass
class ApiTokenCredentials:
    """A long-lived API token, from the environment or the keyring (`origin` says which)."""

    value: str = field(repr=False)
    origin: str
    source: str = "api-token"

    def token(self) -> str:
        return self.value

    def close(self) -> None:
        pass  # not ours to revoke


@dataclass
class NoCredentials:
    """Stands in for credentials in a dry run, which uploads nothing: a token is never had.

    ``source`` is what the report shows; ``reason`` the error if a token is asked for anyway.
    """

    source: str
    reason: str

    def token(self) -> str:
        raise PublishError(self.reason)

    def close(self) -> None:
        pass


def unverified_claims(jwt: str) -> dict[str, Any]:
    """The payload of a JWT, unverified: for explaining a refusal, never for trusting it."""
    try:
        payload = jwt.split(".")[1]
        document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


_SHOWN_CLAIMS = (
    "iss",
    "aud",
    "repository",
    "project_path",
    "workflow_ref",
    "job_workflow_ref",
    "ci_config_ref_uri",
    "ref",
    "ref_path",
    "environment",
    "event_name",
    "pipeline_source",
)


def _workflow_path(ref: str) -> str:
    """`owner/repo/.github/workflows/release.yml@refs/tags/v1` -> the part before `@`."""
    return ref.split("@", 1)[0]


def explain_refusal(document: Any, jwt: str, audience: str) -> PublishError:
    """The PublishError for a 422 from mint-token: every code/description from the index,
    the token's claims that decide the match, and the likely fix."""
    errors = document.get("errors") if isinstance(document, dict) else None
    pairs = [
        (str(e.get("code", "")), str(e.get("description", "")))
        for e in (errors if isinstance(errors, list) else [])
        if isinstance(e, dict)
    ]
    claims = unverified_claims(jwt)
    lines = ["the index refused to mint an upload token:"]
    lines += [f"  {code}: {description}" for code, description in pairs] or [
        f"  {document.get('message', 'no reason given') if isinstance(document, dict) else ''}"
    ]
    shown = [(name, claims[name]) for name in _SHOWN_CLAIMS if claims.get(name) not in (None, "")]
    if shown:
        lines.append("the job's OIDC token says:")
        lines += [f"  {name}: {value}" for name, value in shown]
    codes = {code for code, _ in pairs}
    hints: list[str] = []
    workflow_ref = str(claims.get("workflow_ref", ""))
    job_workflow_ref = str(claims.get("job_workflow_ref", ""))
    if (
        workflow_ref
        and job_workflow_ref
        and (_workflow_path(workflow_ref) != _workflow_path(job_workflow_ref))
    ):
        hints.append(
            f"this job runs the reusable workflow {_workflow_path(job_workflow_ref)}, called "
            f"from {_workflow_path(workflow_ref)}. PyPI cannot publish from reusable workflows "
            "(publish from a job of the calling workflow); keyless can, when the publisher "
            "names the calling workflow and sets that reusable workflow (--reusable-workflow)."
        )
    if claims.get("aud") not in (None, audience):
        hints.append(
            f"the token's audience is {claims.get('aud')!r} but this index expects "
            f"{audience!r}: request the token for {audience!r}."
        )
    if claims.get("event_name") == "pull_request_target":
        hints.append(
            "`pull_request_target` runs with the base repository's identity for code from a "
            "pull request; indexes refuse it. Publish from a tag or release."
        )
    if "invalid-publisher" in codes:
        hints.append(_publisher_hint(claims))
    if "invalid-reuse-token" in codes:
        hints.append(
            "an OIDC token is good for one upload token only; a GitLab job's ID token cannot be "
            "renewed mid-job: keep a release within one upload token's lifetime, or split it."
        )
    if "invalid-pending-publisher" in codes:
        hints.append(
            "the project was created meanwhile: ask its owner to add this publisher to it."
        )
    if "not-enabled" in codes:
        hints.append("Trusted Publishing is switched off on this index: use an API token.")
    hint = "\n".join(hints) or None
    return PublishError(
        "\n".join(lines), hint=hint, context={"codes": ",".join(sorted(codes)) or "none"}
    )


def _publisher_hint(claims: Mapping[str, Any]) -> str:
    """What to register on the index so that this job would match."""
    if claims.get("job_workflow_ref") and claims.get("repository"):
        owner, _, repo = str(claims["repository"]).partition("/")
        called = _workflow_path(str(claims["job_workflow_ref"]))
        caller = _workflow_path(str(claims.get("workflow_ref") or claims["job_workflow_ref"]))
        workflow = caller.rsplit("/", 1)[-1]
        environment = claims.get("environment")
        fields = f"owner {owner!r}, repository {repo!r}, workflow {workflow!r}"
        command = (
            f"keyless publisher add --index INDEX --project PROJECT github --issuer "
            f"{claims.get('iss', '')} --owner {owner} --repository {repo} --workflow {workflow}"
        )
        if called != caller:
            fields += f", reusable workflow {called!r}"
            command += f" --reusable-workflow {called}"
        fields += f", environment {environment!r}" if environment else " (no environment)"
        if environment:
            command += f" --environment {environment}"
        return (
            f"no trusted publisher on the index matches this job. A GitHub publisher for it "
            f"has {fields}; check the workflow file name and the job's `environment:` against "
            f"the one registered, or register it: {command}\n(`keyless doctor` explains more.)"
        )
    if claims.get("project_path"):
        namespace, _, project = str(claims["project_path"]).rpartition("/")
        config = str(claims.get("ci_config_ref_uri", "")).split("//", 1)[-1].split("@", 1)[0]
        environment = claims.get("environment")
        return (
            f"no trusted publisher on the index matches this job. A GitLab publisher for it "
            f"has namespace {namespace!r}, project {project!r}, workflow_filepath {config!r}"
            + (f", environment {environment!r}" if environment else " (no environment)")
            + ". (`keyless doctor` explains more.)"
        )
    return "no trusted publisher on the index matches this job (`keyless doctor` explains)."


class TrustedPublishingCredentials:
    """Upload tokens minted from the CI's OIDC token, renewed before they expire.

    Thread-safe: parallel uploads share one instance. `clock` is injectable so tests can
    make time pass.
    """

    source = "trusted-publishing"

    def __init__(
        self,
        discovery: Discovery,
        *,
        http: httpx.Client,
        reporter: Reporter,
        oidc_token: Callable[[str], str | None] | None = None,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = REFRESH_MARGIN,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.discovery = discovery
        self._http = http
        self._reporter = reporter
        if oidc_token is None:
            from keyless.publish.ambient import ambient_oidc_token

            oidc_token = ambient_oidc_token
        self._oidc_token: Callable[[str], str | None] = oidc_token
        self._clock = clock
        self._margin = refresh_margin
        self._sleep = sleep
        self._lock = threading.Lock()
        self._current: str | None = None
        self._expires = 0.0
        self._minted: list[str] = []
        self.mint_count = 0

    @property
    def expires(self) -> float:
        """When the current token expires (Unix seconds; 0 before the first mint)."""
        return self._expires

    def token(self) -> str:
        """The current upload token, re-minted first when it has under `refresh_margin` left.

        If re-minting fails while the current token is still valid, that one is used (with
        a warning). Raises PublishError when no valid token can be had.
        """
        with self._lock:
            now = self._clock()
            if self._current is not None and self._expires - now >= self._margin:
                return self._current
            try:
                return self._mint()
            except PublishError as exc:
                if self._current is not None and self._expires > now:
                    self._reporter.warning(
                        f"could not renew the upload token ({exc.message.splitlines()[0]}); "
                        f"the current one is valid for {int(self._expires - now)} s more."
                    )
                    return self._current
                raise

    def renew(self) -> str:
        """Mint a new token now (the index refused the current one). Raises PublishError."""
        with self._lock:
            return self._mint()

    def _mint(self) -> str:
        audience = self.discovery.audience
        attempt = 0
        while True:
            attempt += 1
            # A fresh OIDC token per attempt: an index refuses a token it has seen (replay).
            jwt = self._oidc_token(audience)
            if jwt is None:
                raise PublishError(
                    "not running in a CI job that provides OIDC tokens (GitHub Actions, "
                    "GitLab CI/CD, Google Cloud, Buildkite, CircleCI).",
                    hint="publish from CI, rehearse locally with `keyless ci-emulator run -- "
                    "keyless publish`, or use an API token (--trusted-publishing never).",
                )
            self._reporter.mask(jwt)
            try:
                response = self._http.post(
                    self.discovery.mint_url,
                    content=json.dumps({"token": jwt}),
                    headers={"Accept": f"{PYTP_TYPE}, application/json"},
                )
            except httpx.TransportError as exc:
                if attempt >= MINT_ATTEMPTS:
                    raise _unreachable(self.discovery.mint_url, exc) from exc
                self._sleep(min(2.0**attempt, 10.0))
                continue
            if (response.status_code >= 500 or response.status_code == 429) and (
                attempt < MINT_ATTEMPTS
            ):
                self._sleep(min(retry_after_seconds(response) or 2.0**attempt, 30.0))
                continue
            return self._accept(response, jwt)

    def _accept(self, response: httpx.Response, jwt: str) -> str:
        url = redact(self.discovery.mint_url)
        try:
            document = response.json()
        except ValueError:
            document = None
        if response.status_code == 422:
            raise explain_refusal(document, jwt, self.discovery.audience).with_context(url=url)
        if response.status_code != 200 or not isinstance(document, dict):
            raise PublishError(
                f"minting an upload token failed: {server_message(response)}",
                context={"url": url, "status": str(response.status_code)},
            )
        token = document.get("token")
        if not isinstance(token, str) or not token:
            raise PublishError("the index's mint-token answer has no token.", context={"url": url})
        self._reporter.mask(token)
        expires = document.get("expires")
        now = self._clock()
        self._expires = (
            float(expires) if isinstance(expires, int | float) else now + DEFAULT_LIFETIME
        )
        self._current = token
        self._minted.append(token)
        self.mint_count += 1
        return token

    def close(self) -> None:
        """Burn every token minted here (POST `{"token": …}` to the burn endpoint).

        A 404 means the index has no burn endpoint: fine, the tokens expire on their own.
        Never raises; problems become warnings.
        """
        with self._lock:
            minted, self._minted = self._minted, []
            self._current = None
        if not self.discovery.burn_url:
            return
        for token in minted:
            try:
                response = self._http.post(
                    self.discovery.burn_url,
                    content=json.dumps({"token": token}),
                    headers={"Accept": "application/json"},
                )
            except httpx.TransportError as exc:
                self._reporter.warning(f"could not burn the upload token: {exc}")
                continue
            if response.status_code == 404:
                return  # no burn endpoint here
            if response.status_code != 200:
                self._reporter.warning(
                    f"could not burn the upload token: {server_message(response)}"
                )


# ----------------------------------------------------------------------------- resolving


def api_token_from_env(
    environ: Mapping[str, str], reporter: Reporter
) -> ApiTokenCredentials | None:
    """An API token from KEYLESS_TOKEN, UV_PUBLISH_TOKEN, or TWINE_PASSWORD (when
    TWINE_USERNAME is `__token__` or unset); None when there is none."""
    for name in ("KEYLESS_TOKEN", "UV_PUBLISH_TOKEN"):
        if environ.get(name):
            return ApiTokenCredentials(environ[name], origin=name)
    if environ.get("TWINE_PASSWORD"):
        username = environ.get("TWINE_USERNAME") or "__token__"
        if username == "__token__":
            return ApiTokenCredentials(environ["TWINE_PASSWORD"], origin="TWINE_PASSWORD")
        reporter.warning(
            f"TWINE_USERNAME is {username!r}: keyless uploads with API tokens only "
            "(username __token__), so TWINE_PASSWORD is ignored."
        )
    return None


def api_token_from_keyring(upload_url: str, reporter: Reporter) -> ApiTokenCredentials | None:
    """A token stored with `keyring set <upload URL or host> __token__`; None when there is
    none or the `keyring` package is not installed."""
    try:
        keyring: Any = importlib.import_module("keyring")
    except ImportError:
        return None
    host = urlsplit(upload_url).hostname or ""
    for service in (upload_url, host):
        if not service:
            continue
        try:
            value = keyring.get_password(service, "__token__")
        except Exception as exc:  # any backend failure: keyring is a fallback, not a must
            reporter.warning(f"keyring: {type(exc).__name__}: {exc}")
            return None
        if value:
            return ApiTokenCredentials(str(value), origin=f"keyring ({service})")
    return None


def _no_api_token(upload_url: str) -> PublishError:
    return PublishError(
        f"no API token for {redact(upload_url)}.",
        hint="set KEYLESS_TOKEN (or UV_PUBLISH_TOKEN, or TWINE_PASSWORD with TWINE_USERNAME "
        "__token__), or store one with `keyring set <upload URL> __token__`.",
        context={"url": redact(upload_url)},
    )


def resolve_credentials(
    upload_url: str,
    *,
    mode: str = "auto",
    http: httpx.Client,
    reporter: Reporter,
    environ: Mapping[str, str] | None = None,
    oidc_token: Callable[[str], str | None] | None = None,
) -> Credentials:
    """The credentials to upload to `upload_url` with.

    `mode` "never": an API token (environment, then keyring). "always": Trusted Publishing
    only. "auto": an API token from the environment if set, else Trusted Publishing when in
    a CI that provides OIDC tokens, else a keyring token. A Trusted Publishing token is minted
    right away, so a misconfigured publisher fails before anything is uploaded. `oidc_token`
    replaces the ambient detection (tests, rehearsals). Raises PublishError with the cause and
    the fix when no credentials can be had.
    """
    env = os.environ if environ is None else environ
    if mode not in MODES:
        raise PublishError(
            f"unknown trusted-publishing mode {mode!r}.", hint="use auto, always or never."
        )
    if mode != "always":
        found = api_token_from_env(env, reporter)
        if found is not None:
            reporter.mask(found.value)
            reporter.info(f"using the API token from {found.origin}")
            return found
    if mode == "never":
        return _keyring_or(upload_url, reporter, _no_api_token(upload_url))
    # Only Trusted Publishing needs the CI detection (and the OIDC providers and the `id`
    # library behind it, ~10 ms to import): an API token, the common case, goes without.
    from keyless.publish.ambient import ambient_oidc_token, ci_name

    ci = ci_name(env)
    if mode == "auto" and ci is None and oidc_token is None:
        return _keyring_or(
            upload_url,
            reporter,
            PublishError(
                f"no credentials for {redact(upload_url)}: no API token, and not in a CI job "
                "that provides OIDC tokens for Trusted Publishing.",
                hint=f"{_no_api_token(upload_url).hint}"
                " To rehearse Trusted Publishing locally: keyless ci-emulator run -- "
                "keyless publish",
                context={"url": redact(upload_url)},
            ),
        )
    discovery = discover(upload_url, http)
    if discovery is None:
        refusal = PublishError(
            f"{redact(upload_url)} offers no Trusted Publishing (neither PEP 807 discovery "
            "nor /_/oidc/audience answered).",
            hint="check the upload URL, or use an API token (--trusted-publishing never).",
            context={"url": redact(upload_url)},
        )
        if mode == "always":
            raise refusal
        return _keyring_or(upload_url, reporter, refusal)

    def ambient_token(audience: str) -> str | None:
        return ambient_oidc_token(audience, env)

    credentials = TrustedPublishingCredentials(
        discovery, http=http, reporter=reporter, oidc_token=oidc_token or ambient_token
    )
    try:
        credentials.token()
    except PublishError as exc:
        if mode == "auto":
            fallback = api_token_from_keyring(upload_url, reporter)
            if fallback is not None:
                reporter.warning(
                    f"Trusted Publishing failed ({exc.message.splitlines()[0]}); using the "
                    f"API token from {fallback.origin}."
                )
                reporter.mask(fallback.value)
                return fallback
        raise exc.with_context(url=redact(upload_url)) from None
    where = f" ({ci})" if ci else ""
    reporter.info(
        f"Trusted Publishing{where}: minted an upload token (audience {discovery.audience!r}, "
        f"{discovery.source} endpoints)"
    )
    return credentials


def _keyring_or(upload_url: str, reporter: Reporter, error: PublishError) -> Credentials:
    found = api_token_from_keyring(upload_url, reporter)
    if found is None:
        raise error
    reporter.mask(found.value)
    reporter.info(f"using the API token from {found.origin}")
    return found
