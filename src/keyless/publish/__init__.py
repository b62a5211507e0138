"""The release client as a library: credentials, index access, parallel upload, the release
pipeline (`keyless.publish.release.release`; not exported here, where its subpackage has the
name), and the checks, diagnosis and workflow generation behind `keyless check`, `doctor` and
`init`.

Prints nothing: everything it has to say goes through a `Reporter`.

    from keyless.publish import new_http_client, publish, resolve_credentials

    with new_http_client() as http:
        credentials = resolve_credentials(url, http=http, reporter=reporter)
        try:
            result = publish(paths, url, credentials=credentials, reporter=reporter, http=http)
        finally:
            credentials.close()

How it uploads (files at once, retries, whether an identical file already there is done) is
one `UploadOptions` value, `publish(..., options=UploadOptions(parallel=8))`.

`publish` goes through PEP 694 upload sessions when the index offers them (all files, then
one atomic publish), else the legacy API. To test a release before it is visible, `stage`
uploads into sessions without publishing and returns a `Staged`: install from its sessions'
`stage_url`, then `publish()` or `cancel()` it (`keyless.publish.session`).
"""

from typing import TYPE_CHECKING, Any

from keyless import lazy_attribute

if TYPE_CHECKING:
    # The exports' own types for mypy (else each is the Any of `__getattr__`); at run time
    # nothing is imported here. tests/test_cli_imports.py keeps this list and _EXPORTS alike.
    from keyless.publish.ambient import ambient_oidc_token
    from keyless.publish.check import CheckReport, check_dists
    from keyless.publish.credentials import (
        ApiTokenCredentials,
        Credentials,
        Discovery,
        RenewableCredentials,
        TrustedPublishingCredentials,
        discover,
        explain_refusal,
        resolve_credentials,
    )
    from keyless.publish.doctor import Diagnosis, diagnose
    from keyless.publish.errors import PublishError
    from keyless.publish.indexclient import (
        IndexClient,
        RemoteFile,
        TransientError,
        check_upload_url,
        new_http_client,
        redact,
        server_message,
        simple_url_for,
    )
    from keyless.publish.init import InitResult, init_workflow
    from keyless.publish.localdist import LocalDist, load_dist, upload_fields
    from keyless.publish.options import Backoff, UploadOptions
    from keyless.publish.release import ReleaseResult
    from keyless.publish.reporter import (
        FileResult,
        NullReporter,
        RecordingReporter,
        Reporter,
    )
    from keyless.publish.session import Staged, stage
    from keyless.publish.upload import (
        PublishResult,
        load_all,
        publish,
        read_dists,
    )
    from keyless.publish.upload2 import Session

# Imported on first use (PEP 562): `keyless publish` must start fast, and most commands need
# only a few of these modules.
_EXPORTS = {
    "ApiTokenCredentials": "keyless.publish.credentials",
    "Backoff": "keyless.publish.options",
    "CheckReport": "keyless.publish.check",
    "Credentials": "keyless.publish.credentials",
    "Diagnosis": "keyless.publish.doctor",
    "Discovery": "keyless.publish.credentials",
    "FileResult": "keyless.publish.reporter",
    "IndexClient": "keyless.publish.indexclient",
    "InitResult": "keyless.publish.init",
    "LocalDist": "keyless.publish.localdist",
    "NullReporter": "keyless.publish.reporter",
    "PublishError": "keyless.publish.errors",
    "PublishResult": "keyless.publish.upload",
    "RecordingReporter": "keyless.publish.reporter",
    "ReleaseResult": "keyless.publish.release",
    "RemoteFile": "keyless.publish.indexclient",
    "RenewableCredentials": "keyless.publish.credentials",
    "Session": "keyless.publish.session",
    "Staged": "keyless.publish.session",
    "Reporter": "keyless.publish.reporter",
    "TransientError": "keyless.publish.indexclient",
    "TrustedPublishingCredentials": "keyless.publish.credentials",
    "UploadOptions": "keyless.publish.options",
    "ambient_oidc_token": "keyless.publish.ambient",
    "check_dists": "keyless.publish.check",
    "check_upload_url": "keyless.publish.indexclient",
    "diagnose": "keyless.publish.doctor",
    "discover": "keyless.publish.credentials",
    "explain_refusal": "keyless.publish.credentials",
    "init_workflow": "keyless.publish.init",
    "load_all": "keyless.publish.upload",
    "load_dist": "keyless.publish.localdist",
    "new_http_client": "keyless.publish.indexclient",
    "publish": "keyless.publish.upload",
    "read_dists": "keyless.publish.upload",
    "redact": "keyless.publish.indexclient",
    "resolve_credentials": "keyless.publish.credentials",
    "server_message": "keyless.publish.indexclient",
    "simple_url_for": "keyless.publish.indexclient",
    "stage": "keyless.publish.session",
    "upload_fields": "keyless.publish.localdist",
}


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _EXPORTS, globals(), name)


__all__ = [
    "ApiTokenCredentials",
    "Backoff",
    "CheckReport",
    "Credentials",
    "Diagnosis",
    "Discovery",
    "FileResult",
    "IndexClient",
    "InitResult",
    "LocalDist",
    "NullReporter",
    "PublishError",
    "PublishResult",
    "RecordingReporter",
    "ReleaseResult",
    "RemoteFile",
    "RenewableCredentials",
    "Reporter",
    "Session",
    "Staged",
    "TransientError",
    "TrustedPublishingCredentials",
    "UploadOptions",
    "ambient_oidc_token",
    "check_dists",
    "check_upload_url",
    "diagnose",
    "discover",
    "explain_refusal",
    "init_workflow",
    "load_all",
    "load_dist",
    "new_http_client",
    "publish",
    "read_dists",
    "redact",
    "resolve_credentials",
    "server_message",
    "simple_url_for",
    "stage",
    "upload_fields",
]
