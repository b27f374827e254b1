"""Schemathesis hooks for keysentinel's admin API (tests/schemathesis.rs): NDJSON bodies, which
schemathesis cannot serialise by itself (key imports, event batches; one JSON value per line)."""
import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return (json.dumps(value) + "\n").encode()
