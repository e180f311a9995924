//! The contract every [`Store`] backend must honour, as tests generic over the
//! backend. A backend's test file instantiates them all with
//! [`store_contract_tests!`](crate::store_contract_tests), giving it a function
//! that makes a fresh, empty store.

use std::collections::HashSet;
use std::sync::Arc;

use chrono_free::event;
use herald_core::IdRule;

use crate::{AppendOutcome, ListQuery, NewEvent, Store};

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
    let caught_up = store.list(page(10, 100)).await.unwrap();
    assert_eq!((caught_up.events.len(), caught_up.next), (0, 10));
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
            concurrent_appends_get_unique_increasing_positions,
            head_notifies_live_readers,
            id_rules_are_upserted_listed_and_deleted,
            ready_then_closed,
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
