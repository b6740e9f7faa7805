//! Sessions as replicas see them: on the machine's Redis where they share a store.

use super::*;
use crate::shared_state::tests::{clean, random_prefix, store_at, unreachable};

fn principal(sub: &str, client: &str) -> Principal {
    Principal {
        issuer: "https://issuer".into(),
        subject: sub.into(),
        client_id: client.into(),
    }
}

fn settings(keys: &[SessionKey]) -> SessionSettings {
    SessionSettings {
        keys: Some(keys.to_vec()),
        idle_timeout: Duration::from_secs(3600),
        max_lifetime: Duration::from_secs(7 * 24 * 3600),
    }
}

/// Two replicas sharing `key`, and a store under one prefix when `shared`.
async fn replicas(
    key: &SessionKey,
    shared: bool,
) -> (Sessions, Sessions, Option<Arc<SharedStore>>) {
    let store = match shared {
        true => Some(Arc::new(
            store_at(SharedMode::Strict, &random_prefix()).await,
        )),
        false => None,
    };
    let settings = settings(std::slice::from_ref(key));
    (
        Sessions::new(&settings, store.clone()),
        Sessions::new(&settings, store.clone()),
        store,
    )
}

async fn upstream_id(
    sessions: &Sessions,
    id: &str,
    upstream: &str,
    who: &Principal,
) -> Option<String> {
    sessions
        .resolve(id, upstream, who)
        .await
        .expect("the store answers")
        .map(|r| r.upstream_id)
}

#[tokio::test]
async fn a_session_resolves_only_for_the_principal_and_upstream_that_opened_it() {
    let sessions = Sessions::new(&settings(&[SessionKey::generate()]), None);
    let alice = principal("alice", "agent-a");
    let id = sessions
        .open("a", "upstream-1", &alice, ClientAbilities::default())
        .await;
    assert!(!id.contains("upstream-1"), "the upstream id is never shown");
    assert_eq!(
        upstream_id(&sessions, &id, "a", &alice).await.as_deref(),
        Some("upstream-1")
    );
    assert_eq!(
        upstream_id(&sessions, &id, "a", &principal("mallory", "agent-a")).await,
        None
    );
    assert_eq!(
        upstream_id(&sessions, &id, "a", &principal("alice", "agent-b")).await,
        None
    );
    assert_eq!(upstream_id(&sessions, &id, "b", &alice).await, None);
    assert_eq!(
        upstream_id(&sessions, "upstream-1", "a", &alice).await,
        None
    );
}

#[tokio::test]
async fn any_replica_with_the_key_serves_a_session_and_no_other_does() {
    let key = SessionKey::generate();
    let (a, b, _) = replicas(&key, false).await;
    let alice = principal("alice", "agent-a");
    let id = a
        .open("mail", "u-1", &alice, ClientAbilities::default())
        .await;
    assert_eq!(
        upstream_id(&b, &id, "mail", &alice).await.as_deref(),
        Some("u-1")
    );
    let stranger = Sessions::new(&settings(&[SessionKey::generate()]), None);
    assert_eq!(upstream_id(&stranger, &id, "mail", &alice).await, None);
}

#[tokio::test]
async fn without_a_store_a_session_ended_here_is_unknown_here() {
    let (a, b, _) = replicas(&SessionKey::generate(), false).await;
    let alice = principal("alice", "agent-a");
    let id = a
        .open("mail", "u", &alice, ClientAbilities::default())
        .await;
    a.end(&id).await;
    assert_eq!(upstream_id(&a, &id, "mail", &alice).await, None);
    // The documented limit: another replica learns it from the upstream's 404.
    assert!(upstream_id(&b, &id, "mail", &alice).await.is_some());
}

#[tokio::test]
async fn with_a_store_a_session_ended_at_one_replica_is_unknown_at_all() {
    let (a, b, store) = replicas(&SessionKey::generate(), true).await;
    let alice = principal("alice", "agent-a");
    let id = a
        .open("mail", "u", &alice, ClientAbilities::default())
        .await;
    assert!(upstream_id(&b, &id, "mail", &alice).await.is_some());
    b.end(&id).await;
    assert_eq!(upstream_id(&a, &id, "mail", &alice).await, None);
    assert_eq!(upstream_id(&b, &id, "mail", &alice).await, None);
    clean(&store.unwrap()).await;
}

#[tokio::test]
async fn with_a_store_idle_expiry_counts_uses_at_every_replica() {
    let store = Arc::new(store_at(SharedMode::Strict, &random_prefix()).await);
    let settings = SessionSettings {
        idle_timeout: Duration::from_secs(2),
        ..settings(&[SessionKey::generate()])
    };
    let a = Sessions::new(&settings, Some(store.clone()));
    let b = Sessions::new(&settings, Some(store.clone()));
    let alice = principal("alice", "agent-a");
    let id = a
        .open("mail", "u", &alice, ClientAbilities::default())
        .await;
    // Used at b every second: a, which has not seen it for longer than the idle time, still
    // serves it.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(upstream_id(&b, &id, "mail", &alice).await.is_some());
    }
    assert!(upstream_id(&a, &id, "mail", &alice).await.is_some());
    // Unused anywhere for longer: gone at both.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(upstream_id(&a, &id, "mail", &alice).await, None);
    assert_eq!(upstream_id(&b, &id, "mail", &alice).await, None);
    clean(&store).await;
}

#[tokio::test]
async fn an_aged_out_id_is_unknown() {
    let settings = SessionSettings {
        max_lifetime: Duration::ZERO,
        ..settings(&[SessionKey::generate()])
    };
    let sessions = Sessions::new(&settings, None);
    let alice = principal("alice", "agent-a");
    let id = sessions
        .open("mail", "u", &alice, ClientAbilities::default())
        .await;
    assert_eq!(upstream_id(&sessions, &id, "mail", &alice).await, None);
}

#[tokio::test]
async fn an_unreachable_store_refuses_in_strict_mode_and_serves_in_lenient_mode() {
    let key = SessionKey::generate();
    let alice = principal("alice", "agent-a");
    let strict = Sessions::new(
        &settings(std::slice::from_ref(&key)),
        Some(Arc::new(unreachable(SharedMode::Strict))),
    );
    let id = strict
        .open("mail", "u", &alice, ClientAbilities::default())
        .await;
    assert!(matches!(
        strict.resolve(&id, "mail", &alice).await,
        Err(SessionError::Unavailable(_))
    ));
    let lenient = Sessions::new(
        &settings(&[key]),
        Some(Arc::new(unreachable(SharedMode::Lenient))),
    );
    let before = metrics::shared_store_fallbacks("session");
    assert_eq!(
        upstream_id(&lenient, &id, "mail", &alice).await.as_deref(),
        Some("u")
    );
    assert!(metrics::shared_store_fallbacks("session") > before);
    lenient.end(&id).await;
    assert_eq!(upstream_id(&lenient, &id, "mail", &alice).await, None);
}

#[tokio::test]
async fn a_fleet_session_keeps_the_first_member_session_bound_at_any_replica() {
    let (a, b, store) = replicas(&SessionKey::generate(), true).await;
    let alice = principal("alice", "agent-a");
    let id = a
        .open("office", "", &alice, ClientAbilities::default())
        .await;
    assert!(upstream_id(&b, &id, "office", &alice).await.is_some());
    assert_eq!(a.member(&id, "mail").await.unwrap(), None);
    assert_eq!(
        a.bind_member(&id, "mail", "m-1".into()).await.unwrap(),
        Some(("m-1".into(), true))
    );
    assert_eq!(
        b.bind_member(&id, "mail", "m-2".into()).await.unwrap(),
        Some(("m-1".into(), false)),
        "a racing second opening, at another replica, loses"
    );
    assert_eq!(b.member(&id, "mail").await.unwrap().as_deref(), Some("m-1"));
    assert_eq!(b.end(&id).await, [("mail".to_owned(), "m-1".to_owned())]);
    assert_eq!(upstream_id(&a, &id, "office", &alice).await, None);
    clean(&store.unwrap()).await;
}

#[tokio::test]
async fn a_fleet_session_without_a_store_keeps_its_members_here() {
    let sessions = Sessions::new(&settings(&[SessionKey::generate()]), None);
    let alice = principal("alice", "agent-a");
    let id = sessions
        .open("office", "", &alice, ClientAbilities::default())
        .await;
    assert_eq!(
        sessions
            .bind_member(&id, "mail", "m-1".into())
            .await
            .unwrap(),
        Some(("m-1".into(), true))
    );
    assert_eq!(
        sessions.end(&id).await,
        [("mail".to_owned(), "m-1".to_owned())]
    );
    assert_eq!(
        sessions
            .bind_member(&id, "mail", "m-3".into())
            .await
            .unwrap(),
        None
    );
}
