"""boto3's EventBridge client publishes to Herald with no code change."""

from datetime import datetime, timezone

import boto3
import json


def events_client(herald, region="eu-west-1"):
    return boto3.client(
        "events",
        endpoint_url=herald.url,
        region_name=region,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
    )


def test_put_events_stores_entries_in_the_envelope(herald):
    client = events_client(herald)
    at = datetime(2026, 11, 28, 10, 0, 0, tzinfo=timezone.utc)
    response = client.put_events(
        Entries=[
            {
                "Source": "shop.orders",
                "DetailType": "Order Placed",
                "Detail": json.dumps({"order_id": "o-1", "total": 12.5}),
                "Resources": ["arn:aws:shop:order/o-1"],
                "Time": at,
                "EventBusName": "default",
            },
            {"Source": "shop.orders", "DetailType": "Order Placed", "Detail": json.dumps({"order_id": "o-2"})},
        ]
    )
    assert response["FailedEntryCount"] == 0
    ids = [entry["EventId"] for entry in response["Entries"]]
    assert len(set(ids)) == 2

    stored = herald.get(f"/v1/events/{ids[0]}").json()
    assert stored["source"] == "shop.orders"
    assert stored["detail-type"] == "Order Placed"
    assert stored["detail"] == {"order_id": "o-1", "total": 12.5}
    assert stored["resources"] == ["arn:aws:shop:order/o-1"]
    assert stored["time"] == "2026-11-28T10:00:00Z"
    assert stored["region"] == "eu-west-1", "region comes from the request's signature"
    assert stored["position"] == 1


def test_failed_entries_are_reported_in_eventbridge_shape(herald):
    client = events_client(herald)
    response = client.put_events(
        Entries=[
            {"Source": "s", "DetailType": "t", "Detail": "{not json"},
            {"Source": "s", "DetailType": "t", "Detail": "{}"},
            {"Source": "s", "DetailType": "t", "Detail": "[1, 2]"},
        ]
    )
    assert response["FailedEntryCount"] == 2
    first, second, third = response["Entries"]
    assert first["ErrorCode"] == "MalformedDetail" and "Detail" in first["ErrorMessage"]
    assert "EventId" in second
    assert third["ErrorCode"] == "MalformedDetail"
    assert len(herald.get("/v1/events").json()["events"]) == 1, "only the valid entry is stored"


def test_an_id_rule_makes_a_resent_put_events_idempotent(herald):
    assert herald.put("/v1/id-rules/Payment%20Captured", {"fields": ["/detail/payment_id"]}).status_code == 200
    client = events_client(herald)
    entry = {"Source": "payments", "DetailType": "Payment Captured", "Detail": json.dumps({"payment_id": "p-9"})}
    first = client.put_events(Entries=[entry])["Entries"][0]["EventId"]
    again = client.put_events(Entries=[entry])["Entries"][0]["EventId"]
    assert first == again
    assert len(herald.get("/v1/events").json()["events"]) == 1


def test_unknown_operation_is_an_aws_error(herald):
    client = events_client(herald)
    try:
        client.list_rules()
    except client.exceptions.ClientError as error:
        assert error.response["Error"]["Code"] == "UnknownOperationException"
    else:
        raise AssertionError("ListRules is not supported and must fail")
