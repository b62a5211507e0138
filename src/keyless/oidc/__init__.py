"""Trusted Publishing: OIDC token verification and publisher matching.

Pure: no web framework, no database. The index passes in what it has (an HTTP fetcher, a key
store, the clock, candidate publishers) and gets plain data or a ``TokenError`` back.

- ``verify``: ``unverified_claims``, ``verify_token``, ``token_replay_key``
- ``keys``: ``JWKSCache``, ``KeyStore``, ``MemoryKeyStore``
- ``providers``: ``PROVIDERS`` (github, gitlab, google, generic), ``Mismatch``, ``FieldSpec``
- ``matching``: ``Candidate``, ``match_publisher``, ``match_publishers``
- ``errors``: ``TokenError``, ``PublisherConfigError``
"""
