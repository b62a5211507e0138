"""Server settings: defaults < config file (TOML) < environment (KEYLESS_*) < command line.

Settings are a plain value passed to `create_app`; nothing reads them from globals.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from keyless.oidc.providers import PROVIDERS, default_issuers

MIB = 1024 * 1024
GIB = 1024 * MIB
PROFILES = ("pypi", "private")
INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\Z")
# Index names that would shadow the host-level routes.
RESERVED_INDEX_NAMES = frozenset(
    {
        "_",
        "files",
        "simple",
        "pypi",
        "api",
        "static",
        "integrity",
        "github",
        "audience",
        "account",
        "admin",
        "ui",
        "help",  # the help page the error texts link to (index/help.py)
    }
)


class ConfigError(ValueError):
    """A setting has a value keyless cannot use; the message names the setting and the fix."""


@dataclass(frozen=True)
class IndexSettings:
    name: str
    profile: str = "pypi"
    max_file_size: int = 100 * MIB  # PyPI's default per-file limit
    max_project_size: int = 10 * GIB  # PyPI's default per-project limit
    # Trusted Publishing audience for this index (PEP 807); None = the server's audience. A
    # separate audience makes the index its own trust boundary, as TestPyPI is to PyPI.
    audience: str | None = None
    # Closed releases: a release takes no new files this many seconds after its first file
    # (PyPI closes them after 14 days, so that a stolen token or a hijacked workflow cannot
    # add a poisoned wheel to an old, trusted release); None: releases never close.
    close_releases_after: int | None = None
    # A release published through an upload session (PEP 694) takes no new files at all: it
    # was published whole, at once, and what comes later goes into a new version.
    close_session_releases: bool = False
    # A PEP 503/691 index whose projects this one mirrors (`upstream`, ending in /simple/), for
    # names it does not have itself; None: no mirror (index/mirror/).
    upstream: str | None = None
    # Seconds a fetched upstream page is served before it is revalidated (`upstream-ttl`).
    upstream_ttl: int = 600
    # Seconds to wait for the upstream (to connect, and between two reads) before a 504, or
    # the cached page (`upstream-timeout`).
    upstream_timeout: float = 10.0
    # `user:password` for a private upstream, read from the environment variable that
    # `upstream-credentials-env` names: never in the config file, never in a repr or a log.
    upstream_credentials: str | None = field(default=None, repr=False)
    # Name patterns (`reserved-names`, e.g. "acme-*") the index keeps for itself, as it keeps
    # its own projects: such names are never served from the upstream. Stored normalized
    # (PEP 503), `*` standing for any run of characters (index/mirror/policy.py).
    reserved_names: tuple[str, ...] = ()
    # The index's own projects (normalized names, `upstream-merge`) whose pages also list the
    # upstream's files: the explicit exception to the rule above (index/mirror/merge.py).
    upstream_merge: tuple[str, ...] = ()
    # Offline (`upstream-offline`): the upstream is never asked; only the files stored from
    # it are served (air-gapped builds).
    upstream_offline: bool = False


MIN_TOKEN_LIFETIME = 15 * 60  # PEP 807's bounds for minted tokens
MAX_TOKEN_LIFETIME = 6 * 60 * 60


@dataclass(frozen=True)
class TrustedPublishingSettings:
    enabled: bool = True
    audience: str = "keyless"  # what the root /_/oidc/audience answers
    token_lifetime: int = MIN_TOKEN_LIFETIME
    # Extra issuers to trust (e.g. the local CI emulator, GitHub Enterprise Server, a
    # self-managed GitLab): (issuer URL, kind).
    issuers: tuple[tuple[str, str], ...] = ()

    def trusted_issuers(self) -> dict[str, str]:
        """Issuer URL -> kind of publisher its tokens can match: the providers' default issuers
        (keyless.oidc.providers, the registry), then the configured ones."""
        defaults = default_issuers().items()
        return {url.rstrip("/"): kind for url, kind in (*defaults, *self.issuers)}


@dataclass(frozen=True)
class LimitsSettings:
    """How much time, memory and how many connections one client may take (`[limits]`).

    Each limit answers a way one client could stall or starve the server for everyone else;
    SECURITY.md lists them with the tests that hold them.
    """

    # A request's line and headers must arrive whole within this many seconds of the
    # connection opening (or of the previous response): slow-header clients are closed.
    header_timeout: float = 10.0
    # The longest pause between two pieces of a request body, in seconds.
    body_timeout: float = 30.0
    # A body must also keep up this average rate (bytes per second) over each `body_timeout`
    # window, so a client trickling a byte every few seconds does not hold its slot forever.
    min_body_rate: int = 1024
    # An idle keep-alive connection is closed after this many seconds.
    keep_alive_timeout: float = 5.0
    # Connections held at once; a new one beyond takes the place of the oldest idle one,
    # or, when none is idle, is answered 503 and closed at once.
    max_connections: int = 1000
    # A description (README) longer than this is refused before it is rendered.
    max_description_size: int = 1 * MIB
    # Rendering a description runs in a worker process with this deadline and memory cap.
    render_timeout: float = 5.0
    render_memory: int = 512 * MIB
    render_workers: int = 2


ADDRESSING_STYLES = ("auto", "virtual", "path")


@dataclass(frozen=True)
class StorageSettings:
    """Where blobs are kept (`[storage]`): the data folder unless `blobs` names a bucket.

    Credentials are never settings of keyless: an S3 client finds them where every AWS tool
    does (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws, an instance role).
    """

    # `s3://bucket/prefix`, or None for the local folder `DATA/blobs`.
    blobs: str | None = None
    # An S3-compatible server (MinIO, Ceph, R2, ...); None: AWS itself.
    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: str = "auto"  # how the bucket is named in URLs: auto, virtual or path
    # Seconds a presigned download URL lives; 0 streams downloads through keyless instead.
    presigned_downloads: int = 0

    @property
    def bucket_and_prefix(self) -> tuple[str, str] | None:
        """("bucket", "prefix/") of an `s3://` URL ("" when none), or None for the folder."""
        if self.blobs is None:
            return None
        bucket, _, prefix = self.blobs.removeprefix("s3://").partition("/")
        prefix = prefix.strip("/")
        return bucket, f"{prefix}/" if prefix else ""


STORAGE_KEYS = {
    "blobs": "blobs",
    "endpoint-url": "endpoint_url",
    "region": "region",
    "addressing-style": "addressing_style",
    "presigned-downloads": "presigned_downloads",
}
# Bucket names as S3 allows them (3-63 lowercase letters, digits, dots and hyphens).
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")


def _storage(current: StorageSettings, values: Mapping[str, Any], where: str) -> StorageSettings:
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in STORAGE_KEYS:
            if "key" in key or "secret" in key or "token" in key or "password" in key:
                raise ConfigError(
                    f"{where}: storage.{key}: keyless takes no credentials in its settings; "
                    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, in the "
                    "server's environment."
                )
            known = ", ".join(STORAGE_KEYS)
            raise ConfigError(f"{where}: [storage] has no setting {key!r}; known: {known}.")
        if value in (None, ""):
            continue
        attr = STORAGE_KEYS[key]
        if attr == "presigned_downloads":
            changes[attr] = parse_duration_seconds(value, f"{where}: storage.{key}")
        else:
            changes[attr] = str(value)
    storage = replace(current, **changes)
    if storage.blobs is not None:
        bucket_and_prefix = storage.bucket_and_prefix
        if not storage.blobs.startswith("s3://") or bucket_and_prefix is None:
            raise ConfigError(
                f"{where}: storage.blobs {storage.blobs!r} is not a bucket URL; write "
                "s3://BUCKET or s3://BUCKET/PREFIX, or leave it out for the data folder."
            )
        if not BUCKET_NAME.match(bucket_and_prefix[0]):
            raise ConfigError(
                f"{where}: storage.blobs {storage.blobs!r}: {bucket_and_prefix[0]!r} is not a "
                "bucket name (3 to 63 lowercase letters, digits, '.' and '-')."
            )
    if storage.addressing_style not in ADDRESSING_STYLES:
        raise ConfigError(
            f"{where}: storage.addressing-style must be one of {', '.join(ADDRESSING_STYLES)}, "
            f"not {storage.addressing_style!r}."
        )
    if storage.endpoint_url is not None and not re.match(
        r"^https?://[^/\s]+", storage.endpoint_url
    ):
        raise ConfigError(
            f"{where}: storage.endpoint-url {storage.endpoint_url!r} is not a URL "
            "(http(s)://host[:port])."
        )
    return storage


def default_indexes() -> tuple[IndexSettings, ...]:
    return (IndexSettings("test"), IndexSettings("prod"))


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("keyless-data")
    database_url: str | None = None
    # An older database schema is upgraded at start instead of refused (`[database]`). Off by
    # default: an upgrade is a step to take with a backup, and with several servers on one
    # database, once. A new database needs neither: it is created at the current schema.
    database_auto_upgrade: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    # Server processes sharing the listening socket (`keyless serve --workers N`).
    workers: int = 1
    tls_cert: Path | None = None
    tls_key: Path | None = None
    public_url: str | None = None
    indexes: tuple[IndexSettings, ...] = field(default_factory=default_indexes)
    access_log: bool = True
    # Seconds between two passes of the garbage collector inside the server (0: only at start).
    gc_interval: int = 600
    # How long a PEP 694 upload session lives from its creation (the PEP recommends a week);
    # extensions bring it to at most UPLOAD_SESSION_EXTENSIONS times that after creation.
    upload_session_lifetime: int = 7 * 86400
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    # `[static] folder`: where the server keeps the static copy of its read path (simple
    # pages, .metadata files, distributions) for nginx to serve; None: no copy.
    static_folder: Path | None = None
    # `[static] bucket`: the same copy in `s3://BUCKET/PREFIX` (reached with `[storage]`'s
    # endpoint, region and addressing style), for a bucket's website hosting or a CDN.
    static_bucket: str | None = None
    trusted_publishing: TrustedPublishingSettings = field(default_factory=TrustedPublishingSettings)

    def audience_for(self, index: str) -> str:
        for named in self.indexes:
            if named.name == index and named.audience:
                return named.audience
        return self.trusted_publishing.audience

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def base_url(self) -> str:
        """The URL clients use to reach the server (no trailing slash)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def database(self) -> str:
        return self.database_url or str(self.data_dir / "keyless.db")

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"


def parse_size(value: str | int, setting: str) -> int:
    """`"100MiB"`, `"10 GB"`, `1048576` -> bytes."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?i?B?)?\s*", value, re.IGNORECASE)
    if not match:
        raise ConfigError(f"{setting}: {value!r} is not a size; write e.g. '100MiB' or '2GiB'.")
    number, unit = int(match.group(1)), (match.group(2) or "").upper().rstrip("B").rstrip("I")
    return number * {"": 1, "K": 1024, "M": MIB, "G": GIB, "T": 1024 * GIB}[unit]


def validate_index_name(name: str) -> str:
    if not INDEX_NAME.match(name) or name in RESERVED_INDEX_NAMES:
        raise ConfigError(
            f"index name {name!r} is not allowed: use lowercase letters, digits and '-', "
            f"at most 63 characters, and none of {', '.join(sorted(RESERVED_INDEX_NAMES))}."
        )
    return name


# The keys of an `[indexes.NAME]` table. Anything else is refused: a misspelt limit left
# silently at its default (say, releases that never close) is worse than a server that does
# not start.
INDEX_KEYS = (
    "profile",
    "max-file-size",
    "max-project-size",
    "audience",
    "close-releases-after",
    "close-session-releases",
    "upstream",
    "upstream-ttl",
    "upstream-timeout",
    "upstream-credentials-env",
    "reserved-names",
    "upstream-merge",
    "upstream-offline",
)


def index_settings(name: str, values: Mapping[str, Any]) -> IndexSettings:
    validate_index_name(name)
    unknown = sorted(set(values) - set(INDEX_KEYS))
    if unknown:
        raise ConfigError(
            f"index {name!r} has no setting {unknown[0]!r}; known: {', '.join(INDEX_KEYS)}."
        )
    profile = str(values.get("profile", "pypi"))
    if profile not in PROFILES:
        raise ConfigError(f"index {name!r}: profile must be one of {PROFILES}, not {profile!r}.")
    audience = values.get("audience")
    if audience is not None and not (isinstance(audience, str) and audience.strip()):
        raise ConfigError(f"index {name!r}: audience must be a non-empty string.")
    upstream, ttl, timeout, credentials = _upstream_settings(name, values)
    return IndexSettings(
        name=name,
        profile=profile,
        audience=audience,
        upstream=upstream,
        upstream_ttl=ttl,
        upstream_timeout=timeout,
        upstream_credentials=credentials,
        reserved_names=_name_patterns(values, "reserved-names", name, upstream),
        upstream_merge=_name_patterns(values, "upstream-merge", name, upstream, wildcards=False),
        upstream_offline=_offline(values, name, upstream),
        max_file_size=parse_size(values.get("max-file-size", 100 * MIB), f"{name}.max-file-size"),
        max_project_size=parse_size(
            values.get("max-project-size", 10 * GIB), f"{name}.max-project-size"
        ),
        close_releases_after=_close_after(values.get("close-releases-after"), name),
        close_session_releases=_flag(
            values.get("close-session-releases", False), f"index {name!r}: close-session-releases"
        ),
    )


def _close_after(value: Any, index: str) -> int | None:
    """`close-releases-after`: a duration ("14d", "36h", seconds), or "never" (the default)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "never")):
        return None
    setting = f"index {index!r}: close-releases-after"
    if (
        isinstance(value, bool)
        or not isinstance(value, int | str)
        or not _DURATION.match(str(value))
    ):
        raise ConfigError(f"{setting}: {value!r} is not a duration; write e.g. '14d' or 'never'.")
    return parse_duration_seconds(value, setting)  # never negative: the pattern has no sign


def _upstream_settings(
    name: str, values: Mapping[str, Any]
) -> tuple[str | None, int, float, str | None]:
    """An index's `upstream`, `upstream-ttl`, `upstream-timeout` and the credentials
    `upstream-credentials-env` names (the variable is read here, once, so a missing one stops
    the server at start)."""
    upstream = values.get("upstream")
    if upstream is None:
        return None, 600, 10.0, None
    parsed = urlparse(upstream) if isinstance(upstream, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(
            f"index {name!r}: upstream must be an http(s) URL of a simple index, "
            f"e.g. 'https://pypi.org/simple/', not {upstream!r}."
        )
    if parsed.username or parsed.password:
        raise ConfigError(
            f"index {name!r}: upstream must not carry credentials; put 'user:password' in an "
            "environment variable and name it in upstream-credentials-env."
        )
    ttl = values.get("upstream-ttl", 600)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 0:
        raise ConfigError(f"index {name!r}: upstream-ttl must be seconds (0 or more).")
    timeout = values.get("upstream-timeout", 10.0)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise ConfigError(f"index {name!r}: upstream-timeout must be seconds (more than 0).")
    credentials = None
    variable = values.get("upstream-credentials-env")
    if variable is not None:
        credentials = os.environ.get(str(variable))
        if not credentials or ":" not in credentials:
            raise ConfigError(
                f"index {name!r}: upstream-credentials-env names {variable!r}, which must be "
                "set to 'user:password' in the server's environment."
            )
    return upstream.rstrip("/") + "/", ttl, float(timeout), credentials


def _offline(values: Mapping[str, Any], index: str, upstream: str | None) -> bool:
    offline = _flag(values.get("upstream-offline", False), f"index {index!r}: upstream-offline")
    if offline and upstream is None:
        raise ConfigError(
            f"index {index!r}: upstream-offline only matters for an index with an upstream; "
            "set upstream (the index serves what it stored from it), or remove it."
        )
    return offline


_NAME_PATTERN = re.compile(r"^[a-z0-9*]([a-z0-9*-]*[a-z0-9*])?\Z")


def _name_patterns(
    values: Mapping[str, Any], key: str, index: str, upstream: str | None, wildcards: bool = True
) -> tuple[str, ...]:
    """A list of project names, each possibly with `*` wildcards, normalized as PEP 503
    normalizes names (so `Acme_*` and `acme-*` are one pattern)."""
    patterns = values.get(key, [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise ConfigError(f'index {index!r}: {key} must be a list of names, e.g. ["acme-*"].')
    if patterns and upstream is None:
        raise ConfigError(
            f"index {index!r}: {key} only matters for an index with an upstream; "
            "set upstream, or remove it."
        )
    normalized = []
    for pattern in patterns:
        name = re.sub(r"[-_.]+", "-", pattern.strip()).lower()
        if not _NAME_PATTERN.match(name) or (not wildcards and "*" in name):
            wildcard = ", and '*' for any characters" if wildcards else ""
            raise ConfigError(
                f"index {index!r}: {key}: {pattern!r} is not a project name (letters, digits, "
                f"'-', '_', '.'{wildcard})."
            )
        normalized.append(name)
    return tuple(dict.fromkeys(normalized))


def parse_index_list(text: str) -> tuple[IndexSettings, ...]:
    """`"test,prod:private"` -> index settings (profile after a colon, pypi by default)."""
    result = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, profile = item.partition(":")
        result.append(index_settings(name, {"profile": profile or "pypi"}))
    if not result:
        raise ConfigError("no index named: give at least one, e.g. 'test,prod'.")
    return tuple(result)


def _from_mapping(settings: Settings, values: Mapping[str, Any], where: str) -> Settings:
    changes: dict[str, Any] = {}
    for key, attr in (
        ("data", "data_dir"),
        ("tls-cert", "tls_cert"),
        ("tls-key", "tls_key"),
    ):
        if values.get(key):
            changes[attr] = Path(values[key])
    for key, attr in (("database-url", "database_url"), ("public-url", "public_url")):
        if values.get(key):
            changes[attr] = str(values[key])
    if values.get("host"):
        changes["host"] = str(values["host"])
    if values.get("port") not in (None, ""):
        try:
            changes["port"] = int(values["port"])
        except ValueError:
            raise ConfigError(f"{where}: port must be a number, not {values['port']!r}.") from None
    if values.get("workers") not in (None, ""):
        try:
            changes["workers"] = int(values["workers"])
        except ValueError:
            changes["workers"] = 0
        if not 1 <= changes["workers"] <= MAX_WORKERS:
            raise ConfigError(
                f"{where}: workers must be a number from 1 to {MAX_WORKERS}, "
                f"not {values['workers']!r}."
            )
    if "access-log" in values:
        changes["access_log"] = str(values["access-log"]).lower() not in ("0", "false", "no")
    if values.get("gc-interval") not in (None, ""):
        changes["gc_interval"] = parse_duration_seconds(
            values["gc-interval"], f"{where}: gc-interval"
        )
    if values.get("upload-session-lifetime") not in (None, ""):
        lifetime = parse_duration_seconds(
            values["upload-session-lifetime"], f"{where}: upload-session-lifetime"
        )
        if lifetime < 1:
            raise ConfigError(f"{where}: upload-session-lifetime must be at least 1s.")
        changes["upload_session_lifetime"] = lifetime
    return replace(settings, **changes)


# An upload session's total lifetime, extensions included, is at most this many lifetimes.
UPLOAD_SESSION_EXTENSIONS = 4
MAX_WORKERS = 256  # a typo's guard: each worker holds its own caches and connections


# `[limits]` keys: (attribute, kind) where kind is "seconds", "size" or "count".
LIMIT_KEYS = {
    "header-timeout": ("header_timeout", "seconds"),
    "body-timeout": ("body_timeout", "seconds"),
    "min-body-rate": ("min_body_rate", "size"),
    "keep-alive-timeout": ("keep_alive_timeout", "seconds"),
    "max-connections": ("max_connections", "count"),
    "max-description-size": ("max_description_size", "size"),
    "render-timeout": ("render_timeout", "seconds"),
    "render-memory": ("render_memory", "size"),
    "render-workers": ("render_workers", "count"),
}


def _limits(current: LimitsSettings, values: Mapping[str, Any], where: str) -> LimitsSettings:
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in LIMIT_KEYS:
            known = ", ".join(LIMIT_KEYS)
            raise ConfigError(f"{where}: [limits] has no setting {key!r}; known: {known}.")
        attr, kind = LIMIT_KEYS[key]
        setting = f"{where}: limits.{key}"
        number: float
        if kind == "seconds":
            number = _seconds(value, setting)
        elif kind == "size":
            number = parse_size(value, setting)
        else:
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{setting} must be a whole number, not {value!r}.")
            number = value
        if number <= 0:
            raise ConfigError(f"{setting} must be more than zero, not {value!r}.")
        changes[attr] = number
    return replace(current, **changes)


def _seconds(value: Any, setting: str) -> float:
    """A duration that may be fractional: `2.5`, `"10s"`, `"2m"`."""
    if isinstance(value, bool):
        raise ConfigError(f"{setting}: {value!r} is not a duration; write e.g. 10 or '2m'.")
    if isinstance(value, int | float):
        return float(value)
    return float(parse_duration_seconds(str(value), setting))


_DURATION = re.compile(r"^\s*\d+\s*[smhd]?\s*$")  # what parse_duration_seconds reads


def parse_duration_seconds(value: str | int, setting: str) -> int:
    """`"15m"`, `"2h"`, `"900s"`, `900` -> seconds."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", value)
    if not match:
        raise ConfigError(f"{setting}: {value!r} is not a duration; write e.g. '15m' or '1h'.")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return int(match.group(1)) * unit


def parse_issuers(items: Mapping[str, str] | str, setting: str) -> tuple[tuple[str, str], ...]:
    """`{"https://ghe.example/_services/token": "github"}` or `"github=URL,gitlab=URL"`."""
    if isinstance(items, str):
        pairs = []
        for item in filter(None, (part.strip() for part in items.split(","))):
            kind, sep, url = item.partition("=")
            if not sep:
                raise ConfigError(f"{setting}: write each issuer as KIND=URL, not {item!r}.")
            pairs.append((url.strip(), kind.strip()))
    else:
        pairs = [(str(url), str(kind)) for url, kind in items.items()]
    for url, kind in pairs:
        if kind not in PROVIDERS:
            kinds = ", ".join(PROVIDERS)
            raise ConfigError(f"{setting}: issuer {url!r} has kind {kind!r}; use one of {kinds}.")
        if not re.match(r"^https?://[^/\s]+", url):
            raise ConfigError(f"{setting}: {url!r} is not an issuer URL (https://host/...).")
    return tuple((url.rstrip("/"), kind) for url, kind in pairs)


def _trusted_publishing(
    current: TrustedPublishingSettings, values: Mapping[str, Any], where: str
) -> TrustedPublishingSettings:
    changes: dict[str, Any] = {}
    if "enabled" in values:
        changes["enabled"] = str(values["enabled"]).lower() not in ("0", "false", "no")
    if values.get("audience"):
        changes["audience"] = str(values["audience"])
    if values.get("token-lifetime") not in (None, ""):
        lifetime = parse_duration_seconds(values["token-lifetime"], f"{where}: token-lifetime")
        if not MIN_TOKEN_LIFETIME <= lifetime <= MAX_TOKEN_LIFETIME:
            raise ConfigError(
                f"{where}: token-lifetime must be between 15m and 6h (PEP 807), not {lifetime}s."
            )
        changes["token_lifetime"] = lifetime
    if values.get("issuers"):
        changes["issuers"] = parse_issuers(values["issuers"], f"{where}: issuers")
    return replace(current, **changes)


ENV_KEYS = {
    "KEYLESS_DATA": "data",
    "KEYLESS_DATABASE_URL": "database-url",
    "KEYLESS_HOST": "host",
    "KEYLESS_PORT": "port",
    "KEYLESS_WORKERS": "workers",
    "KEYLESS_TLS_CERT": "tls-cert",
    "KEYLESS_TLS_KEY": "tls-key",
    "KEYLESS_PUBLIC_URL": "public-url",
    "KEYLESS_ACCESS_LOG": "access-log",
    "KEYLESS_GC_INTERVAL": "gc-interval",
    "KEYLESS_UPLOAD_SESSION_LIFETIME": "upload-session-lifetime",
}
# `[storage]` from the environment (credentials: the AWS variables, read by the S3 client).
STORAGE_ENV_KEYS = {
    "KEYLESS_BLOBS": "blobs",
    "KEYLESS_S3_ENDPOINT_URL": "endpoint-url",
    "KEYLESS_S3_REGION": "region",
    "KEYLESS_S3_ADDRESSING_STYLE": "addressing-style",
    "KEYLESS_S3_PRESIGNED_DOWNLOADS": "presigned-downloads",
}


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    as_the_server_runs: bool = False,
) -> Settings:
    """Build settings from a TOML file, the environment and command-line overrides.

    With `as_the_server_runs` (the admin commands), the settings `keyless serve` last started
    with on the same data folder (`record_settings`) come first, under the other three: an
    issuer the running server trusts through its own environment or flags is trusted by
    `keyless publisher add` in another shell too, and its indexes are the ones the commands
    see. Raises ConfigError naming the bad setting.
    """
    environ = os.environ if environ is None else environ
    config_file = config_file or (
        Path(environ["KEYLESS_CONFIG"]) if "KEYLESS_CONFIG" in environ else None
    )
    document: Mapping[str, Any] = {}
    if config_file is not None:
        try:
            document = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {config_file}: {exc}") from None
    settings = _layered(Settings(), document, str(config_file), environ, overrides)
    if as_the_server_runs:
        recorded = read_recorded_settings(settings.data_dir)
        if recorded is not None:
            where = str(settings.data_dir / SETTINGS_RECORD)
            base = _from_document(replace(Settings(), data_dir=settings.data_dir), recorded, where)
            settings = _layered(base, document, str(config_file), environ, overrides)
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ConfigError("TLS needs both --tls-cert and --tls-key (or neither).")
    return settings


def _table(
    values: object, section: str, where: str, *, known: Sequence[str] | None = None
) -> Mapping[str, Any]:
    """A section of the config file, refused unless it is a table (of only ``known`` keys).

    Sections whose keys come from a table of settings (limits, storage) check them there.
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: [{section}] must be a table.")
    unknown = set(values) - set(known or values)
    if unknown:
        raise ConfigError(
            f"{where}: [{section}] has no setting {sorted(unknown)[0]!r}; "
            f"known: {', '.join(known or ())}."
        )
    return values


def _database(settings: Settings, values: Mapping[str, Any], where: str) -> Settings:
    """`[database]`: `url` (the same as `[server] database-url`) and `auto-upgrade`."""
    values = _table(values, "database", where, known=("url", "auto-upgrade"))
    if values.get("url"):
        settings = replace(settings, database_url=str(values["url"]))
    if "auto-upgrade" in values:
        upgrade = _flag(values["auto-upgrade"], f"{where}: auto-upgrade")
        return replace(settings, database_auto_upgrade=upgrade)
    return settings


def _static(settings: Settings, values: Mapping[str, Any], where: str) -> Settings:
    """`[static]`: `folder` or `bucket` (one of them)."""
    values = _table(values, "static", where, known=("folder", "bucket"))
    if values.get("folder"):
        settings = replace(settings, static_folder=Path(str(values["folder"])), static_bucket=None)
    if values.get("bucket"):
        bucket = str(values["bucket"])
        if not bucket.startswith("s3://") or not bucket.removeprefix("s3://").strip("/"):
            raise ConfigError(
                f"{where}: static.bucket {bucket!r} must be s3://BUCKET or s3://BUCKET/PREFIX."
            )
        settings = replace(settings, static_bucket=bucket, static_folder=None)
    if values.get("folder") and values.get("bucket"):
        raise ConfigError(f"{where}: [static] takes a folder or a bucket, not both.")
    return settings


def _flag(value: Any, setting: str) -> bool:
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{setting} must be true or false, not {value!r}.")


def _from_document(settings: Settings, document: Mapping[str, Any], where: str) -> Settings:
    """`settings` changed by a document in the config file's shape."""
    settings = _from_mapping(settings, document.get("server", {}), where)
    settings = _database(settings, document.get("database", {}), where)
    settings = replace(
        settings,
        trusted_publishing=_trusted_publishing(
            settings.trusted_publishing, document.get("trusted-publishing", {}), where
        ),
    )
    limits = _table(document.get("limits", {}), "limits", where)
    settings = replace(settings, limits=_limits(settings.limits, limits, where))
    storage = _table(document.get("storage", {}), "storage", where)
    settings = replace(settings, storage=_storage(settings.storage, storage, where))
    settings = _static(settings, document.get("static", {}), where)
    if "indexes" in document:
        settings = replace(
            settings,
            indexes=tuple(
                index_settings(name, values) for name, values in document["indexes"].items()
            ),
        )
    return settings


def _layered(
    settings: Settings,
    document: Mapping[str, Any],
    where: str,
    environ: Mapping[str, str],
    overrides: Mapping[str, Any] | None,
) -> Settings:
    """`settings` < config file < environment < command line."""
    settings = _from_document(settings, document, where)
    env_values = {key: environ[var] for var, key in ENV_KEYS.items() if var in environ}
    settings = _from_mapping(settings, env_values, "environment")
    storage_env = {key: environ[var] for var, key in STORAGE_ENV_KEYS.items() if var in environ}
    settings = replace(settings, storage=_storage(settings.storage, storage_env, "environment"))
    if "KEYLESS_DATABASE_AUTO_UPGRADE" in environ:
        settings = _database(
            settings, {"auto-upgrade": environ["KEYLESS_DATABASE_AUTO_UPGRADE"]}, "environment"
        )
    if environ.get("KEYLESS_STATIC_FOLDER"):
        settings = _static(settings, {"folder": environ["KEYLESS_STATIC_FOLDER"]}, "environment")
    if environ.get("KEYLESS_STATIC_BUCKET"):
        settings = _static(settings, {"bucket": environ["KEYLESS_STATIC_BUCKET"]}, "environment")
    if environ.get("KEYLESS_INDEXES"):
        settings = replace(settings, indexes=parse_index_list(environ["KEYLESS_INDEXES"]))
    tp_env = {
        key: environ[var]
        for var, key in (
            ("KEYLESS_TRUSTED_PUBLISHING", "enabled"),
            ("KEYLESS_AUDIENCE", "audience"),
            ("KEYLESS_TOKEN_LIFETIME", "token-lifetime"),
            ("KEYLESS_TRUSTED_ISSUERS", "issuers"),
        )
        if var in environ
    }
    settings = replace(
        settings,
        trusted_publishing=_trusted_publishing(settings.trusted_publishing, tp_env, "environment"),
    )
    if overrides:
        settings = _from_mapping(settings, overrides, "command line")
        if overrides.get("indexes"):
            settings = replace(settings, indexes=parse_index_list(overrides["indexes"]))
        if overrides.get("static-folder"):
            settings = _static(settings, {"folder": overrides["static-folder"]}, "command line")
        if overrides.get("blobs"):
            storage = _storage(settings.storage, {"blobs": overrides["blobs"]}, "command line")
            settings = replace(settings, storage=storage)
    return settings


# The settings `keyless serve` started with, kept in its data folder for the admin commands.
SETTINGS_RECORD = "server-settings.json"


def settings_document(settings: Settings) -> dict[str, Any]:
    """`settings` in the config file's shape (all but the data folder, which holds it)."""
    tp = settings.trusted_publishing
    server: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "access-log": settings.access_log,
        "gc-interval": settings.gc_interval,
        "upload-session-lifetime": settings.upload_session_lifetime,
    }
    for key, value in (
        ("database-url", settings.database_url),
        ("public-url", settings.public_url),
        ("tls-cert", settings.tls_cert),
        ("tls-key", settings.tls_key),
    ):
        if value:
            server[key] = str(value)
    return {
        "server": server,
        "database": {"auto-upgrade": settings.database_auto_upgrade},
        "trusted-publishing": {
            "enabled": tp.enabled,
            "audience": tp.audience,
            "token-lifetime": tp.token_lifetime,
            "issuers": dict(tp.issuers),
        },
        "limits": {key: getattr(settings.limits, attr) for key, (attr, _) in LIMIT_KEYS.items()},
        "storage": {
            key: getattr(settings.storage, attr)
            for key, attr in STORAGE_KEYS.items()
            if getattr(settings.storage, attr) is not None
        },
        # Absolute: the admin commands may run from another folder (`keyless static rebuild`).
        "static": {"folder": str(settings.static_folder.resolve())}
        if settings.static_folder
        else {"bucket": settings.static_bucket}
        if settings.static_bucket
        else {},
        "indexes": {
            index.name: {
                "profile": index.profile,
                "max-file-size": index.max_file_size,
                "max-project-size": index.max_project_size,
                **({"audience": index.audience} if index.audience else {}),
                **(
                    {"close-releases-after": index.close_releases_after}
                    if index.close_releases_after is not None
                    else {}
                ),
                "close-session-releases": index.close_session_releases,
                # Not the upstream's credentials: the admin commands never fetch from it.
                **(
                    {
                        "upstream": index.upstream,
                        "upstream-ttl": index.upstream_ttl,
                        "upstream-timeout": index.upstream_timeout,
                        "reserved-names": list(index.reserved_names),
                        "upstream-merge": list(index.upstream_merge),
                        "upstream-offline": index.upstream_offline,
                    }
                    if index.upstream
                    else {}
                ),
            }
            for index in settings.indexes
        },
    }


def record_settings(settings: Settings) -> None:
    """Keep the settings the server runs with in its data folder (readable by its owner only),
    for the admin commands that act on the same data (`load_settings(as_the_server_runs=True)`).
    """
    target = settings.data_dir / SETTINGS_RECORD
    partial = target.with_suffix(".partial")
    text = json.dumps(settings_document(settings), indent=2) + "\n"
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(partial, target)


def read_recorded_settings(data_dir: Path) -> dict[str, Any] | None:
    """What `record_settings` kept in `data_dir`, or None when no server has run there."""
    try:
        document = json.loads((data_dir / SETTINGS_RECORD).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{data_dir / SETTINGS_RECORD}: {exc}; delete it, and start `keyless serve` again "
            "to write it anew."
        ) from None
    if not isinstance(document, dict):
        raise ConfigError(f"{data_dir / SETTINGS_RECORD}: not a JSON object; delete it.")
    return document
