#!/usr/bin/env python3
"""Signs private API requests with the real ccxt library, for keysentinel's conformance tests.

    python sign_requests.py golden   # fixed time and nonces: the committed golden.jsonl
    python sign_requests.py live     # real time and random uuid nonces, for end-to-end tests

Each output line is one request as a gateway would see it, with the key it was signed with and
the scope its endpoint needs. Nothing here re-implements a signature: ccxt's own sign() does it.
"""
import json
import sys
from urllib.parse import urlsplit

import ccxt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

GOLDEN_NOW = 1764300000000  # 2025-11-28T03:20:00Z
HMAC_SECRET = "kss_GoldenVectorSecretNotForProduction0123456789ab"
ED25519_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")  # RFC 8032 test 1

ed_private = ed25519.Ed25519PrivateKey.from_private_bytes(ED25519_SEED)
ED25519_PEM = ed_private.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
ED25519_PUBLIC = ed_private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

CALLS = {
    "binance": [
        ("account", "private", "GET", {}, "read"),
        ("openOrders", "private", "GET", {"symbol": "BTCUSDT"}, "read"),
        ("order", "private", "POST", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01",
                                      "price": "50000", "timeInForce": "GTC"}, "trade"),
        ("order", "private", "DELETE", {"symbol": "BTCUSDT", "orderId": "12345"}, "trade"),
        ("capital/withdraw/apply", "sapi", "POST", {"coin": "USDT", "network": "TRX", "address": "TXyzPqR7x",
                                                    "amount": "10"}, "withdraw"),
    ],
    "upbit": [
        ("accounts", "private", "GET", {}, "read"),
        ("orders/chance", "private", "GET", {"market": "KRW-BTC"}, "read"),
        ("orders", "private", "POST", {"market": "KRW-BTC", "side": "bid", "volume": "0.01", "price": "100000000",
                                       "ord_type": "limit"}, "trade"),
        ("order", "private", "DELETE", {"uuid": "cdd92199-2897-4e14-9448-f923320408ad"}, "trade"),
        ("withdraws/coin", "private", "POST", {"currency": "BTC", "net_type": "BTC", "amount": "0.01",
                                               "address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"}, "withdraw"),
    ],
    "bithumb": [
        ("v1/accounts", "private", "GET", {}, "read"),
        ("v1/orders/chance", "private", "GET", {"market": "KRW-BTC"}, "read"),
        ("v2/orders", "private", "POST", {"market": "KRW-BTC", "side": "bid", "volume": "0.01", "price": "84000000",
                                          "order_type": "limit"}, "trade"),
        ("v2/order", "private", "DELETE", {"order_id": "C0101000000001234567"}, "trade"),
        ("v1/withdraws/coin", "private", "POST", {"currency": "BTC", "net_type": "BTC", "amount": "0.01",
                                                  "address": "bc1q w/ space&amp"}, "withdraw"),
    ],
    "coinone": [
        ("account/balance/all", "v2_1Private", "POST", {}, "read"),
        ("order/limit", "v2_1Private", "POST", {"side": "BUY", "quote_currency": "KRW", "target_currency": "BTC",
                                                "price": "100000000", "qty": "0.01", "post_only": False}, "trade"),
        ("order/cancel", "v2_1Private", "POST", {"order_id": "0e30219d-7c3f-4d3c-8a55-f2a5cdd3e8e5",
                                                 "quote_currency": "KRW", "target_currency": "BTC"}, "trade"),
    ],
}


def exchange(name, access_key, secret, golden):
    ex = getattr(ccxt, name)({"apiKey": access_key, "secret": secret})
    if golden:
        counter = iter(range(1, 10_000))
        ex.uuid = lambda: "00000000-0000-4000-8000-%012d" % next(counter)
        ex.milliseconds = lambda: GOLDEN_NOW
        ex.nonce = lambda: GOLDEN_NOW
    return ex


def emit(out, name, scheme, algorithm, access_key, secret, public_key, ex, call, now_ms):
    path, api, method, params, scope = call
    signed = ex.sign(path, [api], method, dict(params))
    url = urlsplit(signed["url"])
    body = signed.get("body")
    out.write(json.dumps({
        "name": name,
        "scheme": scheme,
        "algorithm": algorithm,
        "access_key": access_key,
        "secret": secret,
        "public_key": public_key,
        "method": method,
        "path": url.path,
        "query": url.query,
        "body": body,
        "headers": {k: v for k, v in (signed.get("headers") or {}).items()},
        "now_ms": now_ms,
        "scope": scope,
    }) + "\n")


def main():
    golden = len(sys.argv) > 1 and sys.argv[1] == "golden"
    import time
    out = sys.stdout
    for scheme, calls in CALLS.items():
        keys = [("hmac", f"{scheme}-hmac-access-key-0001", HMAC_SECRET, None)]
        if scheme == "binance":
            import base64
            keys.append(("ed25519", "binance-ed25519-access-key-0001", ED25519_PEM, base64.b64encode(ED25519_PUBLIC).decode()))
        for algorithm, access_key, secret, public_key in keys:
            ex = exchange(scheme, access_key, secret, golden)
            for call in calls:
                now_ms = GOLDEN_NOW if golden else int(time.time() * 1000)
                name = f"{scheme}/{algorithm}/{call[2]} {call[0]}"
                emit(out, name, scheme, algorithm, access_key, secret if algorithm == "hmac" else None,
                     public_key, ex, call, now_ms)
    out.write(json.dumps({"ccxt_version": ccxt.__version__}) + "\n")


if __name__ == "__main__":
    main()
