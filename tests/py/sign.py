"""Signs webhook requests with the senders' own libraries, so hooklake's verifiers are
checked against implementations we did not write.

stdin: a JSON list of {"lib": "svix"|"standardwebhooks"|"stripe"|"github",
        "secret": str, "msg_id": str, "timestamp": int, "payload": str}
stdout: a JSON list of header dicts, one per request.
"""
import hashlib
import hmac
import json
import sys
from datetime import datetime, timezone


def sign(req):
    lib, secret, payload = req["lib"], req["secret"], req["payload"]
    ts = int(req["timestamp"])
    when = datetime.fromtimestamp(ts, tz=timezone.utc)
    if lib == "svix":
        from svix.webhooks import Webhook

        sig = Webhook(secret).sign(req["msg_id"], when, payload)
        return {"svix-id": req["msg_id"], "svix-timestamp": str(ts), "svix-signature": sig}
    if lib == "standardwebhooks":
        from standardwebhooks.webhooks import Webhook

        sig = Webhook(secret).sign(req["msg_id"], when, payload)
        return {"webhook-id": req["msg_id"], "webhook-timestamp": str(ts), "webhook-signature": sig}
    if lib == "stripe":
        import stripe

        header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=ts)
        return {"stripe-signature": header}
    if lib == "github":
        # GitHub publishes no signing library; this is its documented algorithm.
        digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        return {"x-hub-signature-256": "sha256=" + digest, "x-github-delivery": req["msg_id"]}
    raise SystemExit(f"unknown lib {lib}")


def verify(req):
    """Checks a hooklake-produced signature with the sender's library (for `hooklake send`)."""
    from standardwebhooks.webhooks import Webhook

    Webhook(req["secret"]).verify(req["payload"], req["headers"], json_parse=False)
    return {"ok": True}


if __name__ == "__main__":
    requests = json.load(sys.stdin)
    op = verify if len(sys.argv) > 1 and sys.argv[1] == "verify" else sign
    json.dump([op(r) for r in requests], sys.stdout)
