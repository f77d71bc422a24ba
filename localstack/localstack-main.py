#!/usr/bin/env python3
"""Starts LocalStack (``python -m localstack.runtime.main``) with one fix for Python 3.11.

localstack-core 4.13.1's KMS derives key-material ids with ``uuid.uuid5(ns,
<bytes>)``, which only Python 3.12 accepts (3.11 raises "encoding without a
string argument", so every kms:CreateKey fails with InternalError, and S3
SSE-KMS, which checks its key through KMS, cannot be used). Below 3.12 this
wrapper installs 3.12's ``uuid5`` (RFC 4122 name-based SHA-1 UUID, name as
str or bytes) before LocalStack imports anything. localstack/up runs it.
"""

import hashlib
import runpy
import sys
import uuid


def uuid5_accepting_bytes(namespace, name):
    """RFC 4122 version 5 UUID of ``name`` (str, UTF-8 encoded, or bytes) in ``namespace``."""
    if isinstance(name, str):
        name = name.encode("utf-8")
    digest = hashlib.sha1(namespace.bytes + name, usedforsecurity=False).digest()
    return uuid.UUID(bytes=digest[:16], version=5)


if sys.version_info < (3, 12):
    uuid.uuid5 = uuid5_accepting_bytes

runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)
