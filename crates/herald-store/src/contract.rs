//! The contract every [`Store`] backend must honour, as tests generic over the
//! backend. A backend's test file instantiates them all with
//! [`store_contract_tests!`](crate::store_contract_tests), giving it a function
//! that makes a fresh, empty store.

use std::collections::HashSet;
use std::sync::Arc;

use chrono_free::event;
use herald_core::IdRule;

use herald_core::subscription::{RetryPolicy, SubscriptionState};

use crate::{AppendOutcome, Attempt, AttemptQuery, Delivery, ListQuery, MAX_PAGE_BYTES, NewEvent, Settlement, Store};

/// Builds test events without pulling a clock into the contract.
mod chrono_free {
    use crate::NewEvent;

    pub fn event(id: &str, source: &str, detail: &str, stream: Option<&str>) -> NewEvent {
        let body = format!(
            r#"{{"version":"1","id":"{id}","detail-type":"t","source":"{source}","time":"2026-01-01T00:00:00Z","resources":[],"detail":{detail}}}"#
        );
        let mut hash = [0u8; 32];
        for (i, b) in format!("{source}|{detail}").bytes().enumerate() {
            hash[i % 32] ^= b.rotate_left(i as u32 % 8);
        }
        NewEvent {
            id: id.into(),
            content_hash: hash,
            source: source.into(),
            detail_type: "t".into(),
            stream: stream.map(Into::into),
            time_micros: 0,
            body,
        }
    }
}

fn positions(outcomes: &[AppendOutcome]) -> Vec<u64> {
    outcomes
        .iter()
        .map(|o| match o {
            AppendOutcome::Appended(p) | AppendOutcome::Duplicate(p) => *p,
            AppendOutcome::Conflict(s) => s.position,
        })
        .collect()
}

fn page(after: u64, limit: usize) -> ListQuery {
    ListQuery { after, limit, ..Default::default() }
}

pub async fn positions_start_at_one_and_increase(store: impl Store) {
    let out = store.append(vec![event("a", "s", "{}", None), event("b", "s", "{}", None)]).await.unwrap();
    assert_eq!(out, vec![AppendOutcome::Appended(1), AppendOutcome::Appended(2)]);
    let out = store.append(vec![event("c", "s", "{}", None)]).await.unwrap();
    assert_eq!(out, vec![AppendOutcome::Appended(3)]);
    assert_eq!(*store.head().borrow(), 3);
}

pub async fn same_id_same_content_is_a_duplicate(store: impl Store) {
    store.append(vec![event("a", "s", r#"{"n":1}"#, None)]).await.unwrap();
    let out = store.append(vec![event("a", "s", r#"{"n":1}"#, None), event("b", "s", "{}", None)]).await.unwrap();
    assert_eq!(out, vec![AppendOutcome::Duplicate(1), AppendOutcome::Appended(2)]);
    assert_eq!(store.list(page(0, 10)).await.unwrap().events.len(), 2, "a duplicate stores nothing");
}

pub async fn duplicates_within_one_append_are_detected(store: impl Store) {
    let out = store.append(vec![event("a", "s", "{}", None), event("a", "s", "{}", None)]).await.unwrap();
    assert_eq!(out, vec![AppendOutcome::Appended(1), AppendOutcome::Duplicate(1)]);
}

pub async fn same_id_other_content_is_a_conflict_and_changes_nothing(store: impl Store) {
    store.append(vec![event("a", "s", r#"{"n":1}"#, None)]).await.unwrap();
    let original = store.get("a").await.unwrap().unwrap();
    let out = store.append(vec![event("a", "s", r#"{"n":2}"#, None)]).await.unwrap();
    assert_eq!(out, vec![AppendOutcome::Conflict(original.clone())]);
    assert_eq!(store.get("a").await.unwrap().unwrap(), original);
    assert_eq!(*store.head().borrow(), 1, "a conflict takes no position");
    let next = store.append(vec![event("b", "s", "{}", None)]).await.unwrap();
    assert_eq!(next, vec![AppendOutcome::Appended(2)], "positions stay gap-free");
}

pub async fn get_returns_the_stored_body(store: impl Store) {
    let e = event("a/b c", "s", r#"{"x":"y"}"#, None);
    store.append(vec![e.clone()]).await.unwrap();
    let got = store.get("a/b c").await.unwrap().unwrap();
    assert_eq!((got.position, got.body), (1, e.body));
    assert!(store.get("missing").await.unwrap().is_none());
}

pub async fn list_pages_in_position_order_with_filters(store: impl Store) {
    let events: Vec<NewEvent> = (0..10)
        .map(|i| {
            event(
                &format!("e{i}"),
                if i % 2 == 0 { "even" } else { "odd" },
                "{}",
                Some(if i < 5 { "s1" } else { "s2" }),
            )
        })
        .collect();
    store.append(events).await.unwrap();
    let first = store.list(page(0, 4)).await.unwrap().events;
    assert_eq!(first.iter().map(|e| e.position).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    let rest = store.list(page(4, 100)).await.unwrap().events;
    assert_eq!(rest.iter().map(|e| e.position).collect::<Vec<_>>(), (5..=10).collect::<Vec<_>>());
    let odd = store.list(ListQuery { source: Some("odd".into()), ..page(0, 100) }).await.unwrap();
    assert_eq!(odd.events.iter().map(|e| e.position).collect::<Vec<_>>(), vec![2, 4, 6, 8, 10]);
    let odd_s2 =
        store.list(ListQuery { source: Some("odd".into()), stream: Some("s2".into()), ..page(6, 100) }).await.unwrap();
    assert_eq!(odd_s2.events.iter().map(|e| e.position).collect::<Vec<_>>(), vec![8, 10]);
    let none = store.list(ListQuery { detail_type: Some("other".into()), ..page(0, 100) }).await.unwrap();
    assert!(none.events.is_empty());
    assert_eq!(none.next, 10, "a fruitless filtered read still moves the reader on");
    // The stream filter has an index rather than a bounded scan; its `next` means the same.
    let no_stream = store.list(ListQuery { stream: Some("s3".into()), ..page(0, 100) }).await.unwrap();
    assert_eq!((no_stream.events.len(), no_stream.next), (0, 10));
    let s1 = store.list(ListQuery { stream: Some("s1".into()), ..page(0, 100) }).await.unwrap();
    assert_eq!((s1.events.len(), s1.next), (5, 10), "read through to the head");
    let s1_page = store.list(ListQuery { stream: Some("s1".into()), ..page(0, 2) }).await.unwrap();
    assert_eq!(s1_page.next, 2, "a full page ends at its last event");
    let caught_up = store.list(page(10, 100)).await.unwrap();
    assert_eq!((caught_up.events.len(), caught_up.next), (0, 10));
}

pub async fn a_page_ends_early_at_max_page_bytes_and_skips_nothing(store: impl Store) {
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(100_000));
    let count = 3 * MAX_PAGE_BYTES / 100_000; // 31 events: pages of 11, 11 and 9
    let events = (0..count).map(|i| event(&format!("e{i}"), "big", &big, None));
    store.append(events.collect()).await.unwrap();
    // Unfiltered, and filtered (a bounded scan, whose `next` may run ahead of its events).
    for source in [None, Some("big".to_owned())] {
        let (mut after, mut seen, mut pages) = (0, Vec::new(), 0);
        loop {
            let page = store.list(ListQuery { source: source.clone(), ..page(after, 1000) }).await.unwrap();
            let Some(last) = page.events.last() else { break };
            let bytes: usize = page.events.iter().map(|e| e.body.len()).sum();
            assert!(bytes - last.body.len() < MAX_PAGE_BYTES, "{bytes} bytes in {} events", page.events.len());
            assert_eq!(page.cut_short, bytes >= MAX_PAGE_BYTES);
            assert_eq!(page.next, last.position);
            seen.extend(page.events.iter().map(|e| e.position));
            (after, pages) = (page.next, pages + 1);
        }
        assert_eq!(seen, (1..=count as u64).collect::<Vec<_>>(), "filter {source:?}");
        assert_eq!(pages, 3, "filter {source:?}");
    }
}

pub async fn concurrent_appends_get_unique_increasing_positions(store: impl Store) {
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for i in 0..25 {
                // Every third append repeats an id another task also sends.
                let id = if i % 3 == 0 { format!("shared-{i}") } else { format!("t{t}-{i}") };
                let out = store.append(vec![event(&id, "s", "{}", None)]).await.unwrap();
                seen.push((id, positions(&out)[0]));
            }
            seen
        }));
    }
    let mut by_id = std::collections::HashMap::new();
    for task in tasks {
        for (id, position) in task.await.unwrap() {
            let first = *by_id.entry(id.clone()).or_insert(position);
            assert_eq!(first, position, "id {id} answered with two positions");
        }
    }
    let all = store.list(page(0, 10_000)).await.unwrap().events;
    let stored: Vec<u64> = all.iter().map(|e| e.position).collect();
    assert_eq!(stored, (1..=by_id.len() as u64).collect::<Vec<_>>(), "gap-free, strictly increasing");
    let unique: HashSet<u64> = by_id.values().copied().collect();
    assert_eq!(unique.len(), by_id.len(), "one position per id");
}

pub async fn head_notifies_live_readers(store: impl Store) {
    let mut head = store.head();
    assert_eq!(*head.borrow_and_update(), 0);
    store.append(vec![event("a", "s", "{}", None)]).await.unwrap();
    head.changed().await.unwrap();
    assert_eq!(*head.borrow(), 1);
}

pub async fn id_rules_are_upserted_listed_and_deleted(store: impl Store) {
    let rule = IdRule::new("Liked".into(), vec!["/detail/user".into()]).unwrap();
    store.put_id_rule(rule.clone()).await.unwrap();
    let changed = IdRule::new("Liked".into(), vec!["/detail/user".into(), "/detail/tweet".into()]).unwrap();
    store.put_id_rule(changed.clone()).await.unwrap();
    assert_eq!(store.id_rules().await.unwrap(), vec![changed]);
    assert!(store.delete_id_rule("Liked").await.unwrap());
    assert!(!store.delete_id_rule("Liked").await.unwrap());
    assert!(store.id_rules().await.unwrap().is_empty());
}

pub async fn ready_then_closed(store: impl Store) {
    store.ready().await.unwrap();
    store.append(vec![event("a", "s", "{}", None)]).await.unwrap();
    store.close().await;
    assert!(store.append(vec![event("b", "s", "{}", None)]).await.is_err(), "a closed store refuses writes");
}

fn owed(position: u64, stream: Option<&str>) -> Delivery {
    Delivery {
        position,
        event_id: format!("e{position}"),
        stream: stream.map(Into::into),
        attempts: 0,
        due_us: 100,
        first_due_us: 100,
        replay: false,
    }
}

fn attempt(position: u64, attempt: u32, outcome: &str) -> Attempt {
    Attempt {
        event_id: format!("e{position}"),
        position,
        attempt,
        time_us: 200,
        outcome: outcome.into(),
        status: Some(500),
        latency_us: 10,
        error: Some(format!("{outcome} {position}")),
        response: None,
        replay: false,
    }
}

pub async fn subscriptions_are_upserted_keeping_their_cursor(store: impl Store) {
    assert!(store.put_subscription("s1", "{}".into(), 5, 1).await.unwrap());
    assert!(!store.put_subscription("s1", r#"{"v":2}"#.into(), 0, 2).await.unwrap());
    let s = store.subscription("s1").await.unwrap().unwrap();
    assert_eq!((s.spec.as_str(), s.cursor, s.created_us, s.updated_us), (r#"{"v":2}"#, 5, 1, 2));
    assert_eq!(s.state, SubscriptionState::Active);
    assert!(store.set_subscription_state("s1", SubscriptionState::Paused, Some("why".into()), 3).await.unwrap());
    let s = store.subscription("s1").await.unwrap().unwrap();
    assert_eq!((s.state, s.last_error.as_deref()), (SubscriptionState::Paused, Some("why")));
    assert!(!store.set_subscription_state("nope", SubscriptionState::Paused, None, 3).await.unwrap());
    assert_eq!(store.subscriptions().await.unwrap().len(), 1);
    assert!(store.delete_subscription("s1").await.unwrap());
    assert!(store.subscription("s1").await.unwrap().is_none());
    assert!(!store.delete_subscription("s1").await.unwrap());
}

pub async fn fan_out_moves_the_cursor_only_from_where_it_was(store: impl Store) {
    store.put_subscription("s", "{}".into(), 0, 1).await.unwrap();
    assert!(store.fan_out("s", 1, 0, 3, vec![owed(1, None), owed(3, None)]).await.unwrap());
    assert!(!store.fan_out("s", 1, 0, 4, vec![owed(4, None)]).await.unwrap(), "a stale cursor changes nothing");
    assert!(!store.fan_out("gone", 1, 0, 4, vec![owed(4, None)]).await.unwrap());
    assert!(!store.fan_out("s", 2, 3, 4, vec![owed(4, None)]).await.unwrap(), "another generation changes nothing");
    let s = store.subscription("s").await.unwrap().unwrap();
    assert_eq!((s.cursor, s.pending), (3, 2));
    let due: Vec<u64> = store.due_deliveries("s", 100, 10, false).await.unwrap().iter().map(|d| d.position).collect();
    assert_eq!(due, vec![1, 3]);
    assert!(store.due_deliveries("s", 99, 10, false).await.unwrap().is_empty(), "nothing is due before its time");
    assert_eq!(store.next_due("s", 0).await.unwrap(), Some(100));
    assert_eq!(store.next_due("s", 100).await.unwrap(), None, "only later due times count");
    assert_eq!(store.enqueue("s", vec![owed(3, None), owed(7, None)]).await.unwrap(), Some(1), "owed once");
    assert_eq!(store.enqueue("gone", vec![owed(7, None)]).await.unwrap(), None);
}

pub async fn settling_records_attempts_retries_and_dead_letters(store: impl Store) {
    store.put_subscription("s", "{}".into(), 0, 1).await.unwrap();
    store.fan_out("s", 1, 0, 3, vec![owed(1, None), owed(2, None), owed(3, None)]).await.unwrap();
    store
        .settle(
            "s",
            1,
            vec![
                (attempt(1, 1, "delivered"), Settlement::Delivered),
                (attempt(2, 1, "failed"), Settlement::Retry { due_us: 500 }),
                (attempt(3, 4, "dead"), Settlement::Dead { reason: "gave up".into() }),
                (attempt(9, 1, "delivered"), Settlement::Delivered),
            ]
            .into(),
        )
        .await
        .unwrap();
    let s = store.subscription("s").await.unwrap().unwrap();
    assert_eq!((s.delivered, s.failed, s.pending, s.dead_letters), (1, 2, 1, 1));
    assert_eq!(s.last_error.as_deref(), Some("dead 3"));
    let retry = store.due_deliveries("s", 500, 10, false).await.unwrap();
    assert_eq!((retry.len(), retry[0].position, retry[0].attempts), (1, 2, 1));
    let all = store.attempts("s", AttemptQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all.iter().map(|a| a.position).collect::<Vec<_>>(), vec![3, 2, 1], "newest first; unknown ignored");
    let failed = AttemptQuery { outcome: Some("failed".into()), limit: 10, ..Default::default() };
    assert_eq!(store.attempts("s", failed).await.unwrap().len(), 1);
    let dead = store.dead_letters("s", 0, 10).await.unwrap();
    assert_eq!((dead.len(), dead[0].event_id.as_str(), dead[0].reason.as_str()), (1, "e3", "gave up"));

    assert_eq!(store.redrive("s", Some(vec!["e3".into()]), 600).await.unwrap(), 1);
    assert!(store.dead_letters("s", 0, 10).await.unwrap().is_empty());
    let owed_now = store.due_deliveries("s", 600, 10, false).await.unwrap();
    assert_eq!(owed_now.iter().map(|d| (d.position, d.attempts)).collect::<Vec<_>>(), vec![(2, 1), (3, 0)]);
    store
        .settle("s", 1, vec![(attempt(3, 1, "dead"), Settlement::Dead { reason: "again".into() })].into())
        .await
        .unwrap();
    assert_eq!(store.purge_dead_letters("s", None).await.unwrap(), 1);
    assert_eq!(store.subscription("s").await.unwrap().unwrap().dead_letters, 0);
}

pub async fn a_gone_target_disables_and_keeps_the_delivery(store: impl Store) {
    store.put_subscription("s", "{}".into(), 0, 1).await.unwrap();
    store.fan_out("s", 1, 0, 1, vec![owed(1, None)]).await.unwrap();
    store.settle("s", 1, vec![(attempt(1, 1, "gone"), Settlement::Gone)].into()).await.unwrap();
    let s = store.subscription("s").await.unwrap().unwrap();
    assert_eq!((s.state, s.pending), (SubscriptionState::Disabled, 1));
}

pub async fn a_recreated_subscription_ignores_the_old_ones_attempts(store: impl Store) {
    store.put_subscription("s", "{}".into(), 0, 1).await.unwrap();
    store.fan_out("s", 1, 0, 1, vec![owed(1, None)]).await.unwrap();
    store.delete_subscription("s").await.unwrap();
    store.put_subscription("s", "{}".into(), 0, 2).await.unwrap();
    assert!(store.fan_out("s", 2, 0, 1, vec![owed(1, None)]).await.unwrap());
    store.settle("s", 1, vec![(attempt(1, 1, "delivered"), Settlement::Delivered)].into()).await.unwrap();
    let s = store.subscription("s").await.unwrap().unwrap();
    assert_eq!((s.pending, s.delivered), (1, 0), "the old incarnation's answer does not settle the new delivery");
    store.settle("s", 2, vec![(attempt(1, 1, "delivered"), Settlement::Delivered)].into()).await.unwrap();
    assert_eq!(store.subscription("s").await.unwrap().unwrap().pending, 0);
}

pub async fn per_stream_only_the_oldest_owed_event_is_due(store: impl Store) {
    store.put_subscription("s", "{}".into(), 0, 1).await.unwrap();
    let mut later = owed(1, Some("a"));
    later.due_us = 1_000;
    let deliveries = vec![later, owed(2, Some("a")), owed(3, Some("b")), owed(4, None), owed(5, Some("b"))];
    store.fan_out("s", 1, 0, 5, deliveries).await.unwrap();
    let due: Vec<u64> = store.due_deliveries("s", 100, 10, true).await.unwrap().iter().map(|d| d.position).collect();
    assert_eq!(due, vec![3, 4], "stream a waits for its retry at 1000; b offers only its oldest");
    let unordered: Vec<u64> =
        store.due_deliveries("s", 100, 10, false).await.unwrap().iter().map(|d| d.position).collect();
    assert_eq!(unordered, vec![2, 3, 4, 5]);
}

pub async fn position_before_finds_the_first_event_at_a_time(store: impl Store) {
    let mut events = vec![event("a", "s", "{}", None), event("b", "s", "{}", None), event("c", "s", "{}", None)];
    for (i, e) in events.iter_mut().enumerate() {
        e.time_micros = 10 * (i as i64 + 1);
    }
    store.append(events).await.unwrap();
    assert_eq!(store.position_before(0).await.unwrap(), 0);
    assert_eq!(store.position_before(20).await.unwrap(), 1);
    assert_eq!(store.position_before(21).await.unwrap(), 2);
    assert_eq!(store.position_before(99).await.unwrap(), 3, "nothing that late: the head");
}

/// A retry policy of `max_attempts`, and the default `max_age` (a day).
fn retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy { max_attempts, ..RetryPolicy::default() }
}

pub async fn leases_are_exclusive_expire_and_are_settled_by_their_holder(store: impl Store) {
    store.append(vec![event("a", "s", "{}", None), event("b", "s", "{}", None)]).await.unwrap();
    store.put_subscription("s", "{}".into(), 0, 1).await.unwrap();
    store.fan_out("s", 1, 0, 2, vec![owed(1, None), owed(2, None)]).await.unwrap();
    let first = store.lease("s", "L1".into(), 100, 1_000, 10, false, retry(2)).await.unwrap();
    let got: Vec<(u64, u32, u64)> = first.iter().map(|(d, e)| (d.position, d.attempts, e.position)).collect();
    assert_eq!(got, vec![(1, 1, 1), (2, 1, 2)]);
    assert!(store.lease("s", "L2".into(), 200, 1_000, 10, false, retry(2)).await.unwrap().is_empty(), "held by L1");

    let ack =
        || -> crate::Decide { Box::new(|d| (attempt(d.position, d.attempts, "delivered"), Settlement::Delivered)) };
    assert_eq!(store.settle_leased("s", vec![(1, "L2".into())], ack()).await.unwrap(), 0, "not L2's to ack");
    assert_eq!(store.settle_leased("s", vec![(1, "L1".into())], ack()).await.unwrap(), 1);
    assert_eq!(store.subscription("s").await.unwrap().unwrap().delivered, 1);

    let again = store.lease("s", "L3".into(), 1_100, 1_000, 10, false, retry(2)).await.unwrap();
    assert_eq!(again.iter().map(|(d, _)| (d.position, d.attempts)).collect::<Vec<_>>(), vec![(2, 2)], "expired lease");
    assert_eq!(store.settle_leased("s", vec![(2, "L1".into())], ack()).await.unwrap(), 0, "L1 lost it");
    assert!(store.lease("s", "L4".into(), 5_000, 1_000, 10, false, retry(2)).await.unwrap().is_empty());
    let dead = store.dead_letters("s", 0, 10).await.unwrap();
    assert_eq!((dead.len(), dead[0].position), (1, 2), "past max_attempts it is dead-lettered");

    // Past max_age (counted from when it was first due, at 100) it is too,
    // however few its deliveries, as a webhook's is.
    store.append(vec![event("c", "s", "{}", None)]).await.unwrap();
    store.fan_out("s", 1, 2, 3, vec![owed(3, None)]).await.unwrap();
    let young = RetryPolicy { max_age: std::time::Duration::from_millis(10), ..retry(100) };
    assert_eq!(store.lease("s", "L5".into(), 10_000, 1_000, 10, false, young).await.unwrap().len(), 1);
    assert!(store.lease("s", "L6".into(), 11_100, 1_000, 10, false, young).await.unwrap().is_empty());
    let dead = store.dead_letters("s", 0, 10).await.unwrap();
    assert_eq!(dead.iter().map(|d| d.position).collect::<Vec<_>>(), vec![2, 3]);
    assert!(dead[1].reason.contains("max_age"), "{}", dead[1].reason);
}

pub async fn the_attempt_log_is_bounded(store: impl Store) {
    store.put_subscription("s", "{}".into(), 0, 1).await.unwrap();
    store.fan_out("s", 1, 0, 1, vec![owed(1, None)]).await.unwrap();
    let total = crate::subscriptions::ATTEMPTS_KEPT + 1_000;
    for chunk in 0..total / 100 {
        let settled = (0..100)
            .map(|i| (attempt(1, (chunk * 100 + i) as u32 + 1, "failed"), Settlement::Retry { due_us: 100 }))
            .collect();
        store.settle("s", 1, settled).await.unwrap();
    }
    let kept = store.attempts("s", AttemptQuery { limit: usize::MAX >> 1, ..Default::default() }).await.unwrap();
    assert!(kept.len() as u64 <= crate::subscriptions::ATTEMPTS_KEPT + 256, "{} attempts kept", kept.len());
    assert_eq!(kept[0].attempt as u64, total, "the newest are kept");
    assert_eq!(store.subscription("s").await.unwrap().unwrap().failed, total, "the counters count them all");
}

pub async fn a_lease_hands_out_a_bounded_number_of_bytes(store: impl Store) {
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(300 * 1024));
    let events: Vec<NewEvent> = (0..20).map(|i| event(&format!("big{i}"), "s", &big, None)).collect();
    store.append(events).await.unwrap();
    store.put_subscription("s", "{}".into(), 0, 1).await.unwrap();
    store.fan_out("s", 1, 0, 20, (1..=20).map(|p| owed(p, None)).collect()).await.unwrap();
    let leased = store.lease("s", "L".into(), 100, 1_000, 100, false, retry(5)).await.unwrap();
    let bytes: usize = leased.iter().map(|(_, e)| e.body.len()).sum();
    assert!(!leased.is_empty() && leased.len() < 20, "{} leased", leased.len());
    assert!(bytes <= crate::subscriptions::LEASE_BYTES, "{bytes} bytes in one lease");
}

pub async fn events_at_reads_by_position(store: impl Store) {
    store.append(vec![event("a", "s", "{}", None), event("b", "s", "{}", None)]).await.unwrap();
    let got = store.events_at(vec![2, 9, 1]).await.unwrap();
    assert_eq!(got.iter().map(|e| e.position).collect::<Vec<_>>(), vec![1, 2]);
}

/// Instantiates every contract test for a backend. `$make` is an async
/// expression evaluating to a fresh, empty store (it may use `?`-free setup).
#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        $crate::store_contract_tests!(@each $make;
            positions_start_at_one_and_increase,
            same_id_same_content_is_a_duplicate,
            duplicates_within_one_append_are_detected,
            same_id_other_content_is_a_conflict_and_changes_nothing,
            get_returns_the_stored_body,
            list_pages_in_position_order_with_filters,
            a_page_ends_early_at_max_page_bytes_and_skips_nothing,
            concurrent_appends_get_unique_increasing_positions,
            head_notifies_live_readers,
            id_rules_are_upserted_listed_and_deleted,
            ready_then_closed,
            subscriptions_are_upserted_keeping_their_cursor,
            fan_out_moves_the_cursor_only_from_where_it_was,
            settling_records_attempts_retries_and_dead_letters,
            a_gone_target_disables_and_keeps_the_delivery,
            a_recreated_subscription_ignores_the_old_ones_attempts,
            per_stream_only_the_oldest_owed_event_is_due,
            events_at_reads_by_position,
            position_before_finds_the_first_event_at_a_time,
            leases_are_exclusive_expire_and_are_settled_by_their_holder,
            the_attempt_log_is_bounded,
            a_lease_hands_out_a_bounded_number_of_bytes,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::contract::$name($make.await).await;
            }
        )*
    };
}
