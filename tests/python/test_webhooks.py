"""Herald's webhook deliveries verified by the Standard Webhooks reference
library, an implementation Herald does not share code with."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """A real HTTP server on loopback that records every POST."""

    def __init__(self):
        self.requests = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, count: int):
        deadline = time.time() + 20
        while len(self.requests) < count:
            assert time.time() < deadline, f"only {len(self.requests)} deliveries arrived"
            time.sleep(0.02)
        return self.requests


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def test_deliveries_verify_with_the_standard_webhooks_library(herald, receiver):
    spec = {"target": {"type": "webhook", "url": receiver.url, "secret": SECRET}}
    assert herald.put("/v1/subscriptions/orders", spec).status_code == 201
    event = {"id": "order-1", "source": "shop", "detail-type": "Order Placed", "detail": {"total": 12.5, "note": "é ✓"}}
    assert requests.post(herald.url + "/v1/events", json=event, timeout=10).status_code == 201

    headers, body = receiver.wait_for(1)[0]
    payload = Webhook(SECRET).verify(body, headers)
    assert payload["id"] == "order-1"
    assert payload["detail"] == {"total": 12.5, "note": "é ✓"}
    assert headers["webhook-id"] == "order-1", "the event id lets the receiver deduplicate"

    tampered = body.replace(b"12.5", b"99.9")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, headers)


def test_a_generated_secret_is_returned_and_signs(herald, receiver):
    created = herald.put("/v1/subscriptions/auto", {"target": {"type": "webhook", "url": receiver.url}})
    assert created.status_code == 201
    secret = created.json()["target"]["secret"]
    assert secret.startswith("whsec_")
    event = {"id": "e-1", "source": "shop", "detail-type": "Ping", "detail": {}}
    requests.post(herald.url + "/v1/events", json=event, timeout=10)
    headers, body = receiver.wait_for(1)[0]
    assert json.loads(body)["id"] == "e-1"
    Webhook(secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, headers)
