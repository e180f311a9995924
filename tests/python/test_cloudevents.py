"""The CloudEvents Python SDK publishes to Herald in structured and binary mode."""

import json

import requests
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent


def order_event(event_id: str, **extra) -> CloudEvent:
    attributes = {
        "id": event_id,
        "source": "/shop/orders",
        "type": "com.shop.order.placed",
        "subject": "order-7",
        "time": "2026-11-28T10:00:00Z",
        **extra,
    }
    return CloudEvent(attributes, {"order_id": 7, "total": 3})


def test_structured_mode(herald):
    headers, body = to_structured(order_event("ce-1"))
    response = requests.post(herald.url + "/v1/events", headers=headers, data=body, timeout=10)
    assert response.status_code == 201, response.text
    assert response.json() == {"id": "ce-1", "position": 1, "duplicate": False}

    again = requests.post(herald.url + "/v1/events", headers=headers, data=body, timeout=10)
    assert again.status_code == 200 and again.json()["duplicate"] is True

    stored = herald.get("/v1/events/ce-1").json()
    assert stored["source"] == "/shop/orders"
    assert stored["detail-type"] == "com.shop.order.placed"
    assert stored["stream"] == "order-7"
    assert stored["detail"] == {"order_id": 7, "total": 3}
    assert stored["time"] == "2026-11-28T10:00:00Z"


def test_binary_mode(herald):
    headers, body = to_binary(order_event("ce-2", dataversion="2"))
    assert "ce-id" in {k.lower() for k in headers}
    response = requests.post(herald.url + "/v1/events", headers=headers, data=body, timeout=10)
    assert response.status_code == 201, response.text
    stored = herald.get("/v1/events/ce-2").json()
    assert stored["detail-type"] == "com.shop.order.placed"
    assert stored["version"] == "2"
    assert stored["detail"] == {"order_id": 7, "total": 3}


def test_batch_mode_and_errors_named_by_attribute(herald):
    batch = [
        json.loads(to_structured(order_event("ce-3"))[1]),
        {"specversion": "1.0", "id": "ce-4", "source": "/shop", "data": {}},
    ]
    response = requests.post(
        herald.url + "/v1/events",
        headers={"content-type": "application/cloudevents-batch+json"},
        data=json.dumps(batch),
        timeout=10,
    )
    assert response.status_code == 200
    results = response.json()
    assert results["failed"] == 1
    assert results["results"][0]["id"] == "ce-3"
    assert [e["pointer"] for e in results["results"][1]["error"]["errors"]] == ["/1/type"]
