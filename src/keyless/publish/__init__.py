"""The release client as a library: credentials, index access, parallel upload, the release
pipeline (`release`), and the checks, diagnosis and workflow generation behind `keyless check`,
`doctor` and `init`.

Prints nothing: everything it has to say goes through a `Reporter`.

    from keyless.publish import new_http_client, publish, resolve_credentials

    with new_http_client() as http:
        credentials = resolve_credentials(url, http=http, reporter=reporter)
        try:
            result = publish(paths, url, credentials=credentials, reporter=reporter, http=http)
        finally:
            credentials.close()
"""

from keyless.publish.check import CheckReport, check_dists
from keyless.publish.credentials import (
    ApiTokenCredentials,
    Credentials,
    Discovery,
    RenewableCredentials,
    TrustedPublishingCredentials,
    ambient_oidc_token,
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
from keyless.publish.release import ReleaseResult, release
from keyless.publish.reporter import FileResult, NullReporter, RecordingReporter, Reporter
from keyless.publish.upload import Backoff, PublishResult, load_all, publish, read_dists

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
    "TransientError",
    "TrustedPublishingCredentials",
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
    "release",
    "resolve_credentials",
    "server_message",
    "simple_url_for",
    "upload_fields",
]
