//! Replicas on one database (issue 12): the real binary, several processes.
//!
//! - Item 3: long polling with two processes of one bot: exactly one calls getUpdates (the holder
//!   of the `poller` lease), a message is answered once, a poller that loses the lease stops at
//!   once, SIGKILL of the poller → the other polls within 2 × `cluster.lease`, and no 409 loop.
//! - Item 0: three processes started at the same moment on an empty database all come up.
//!
//! SQLite (one file) by default; a fresh Postgres database when `HEARTH_TEST_DATABASE_URL` names a
//! Postgres server (`binary_db_url`).
use std::time::{Duration, Instant};

use hearth::store::Store;

use crate::{
    binary::{binary_db_url, Daemon},
    support::{
        fake_telegram::{Chat, FakeBotApi, User},
        tg::{completion, mount_default},
    },
};

/// `cluster.lease` of [`Daemon::start_polling`].
const LEASE: Duration = Duration::from_secs(2);

fn mention(update_id: i64, message_id: i64) -> serde_json::Value {
    FakeBotApi::text_message(
        update_id,
        Chat::group(-700, "Flat"),
        User::new(7, "Alice").with_username("alice"),
        message_id,
        "@hearth_bot hello?",
    )
}

/// Replies "answer" sent, by replied-to message id.
fn answers(fake: &FakeBotApi) -> Vec<i64> {
    fake.calls_to("sendMessage")
        .into_iter()
        .filter(|b| b["text"] == "answer")
        .map(|b| {
            let p = match &b["reply_parameters"] {
                serde_json::Value::String(s) => serde_json::from_str(s).unwrap_or_default(),
                v => v.clone(),
            };
            p["message_id"].as_i64().unwrap_or(0)
        })
        .collect()
}

/// getUpdates calls through prefix `a` and `b`.
fn polls(fake: &FakeBotApi) -> (usize, usize) {
    (
        fake.calls_via("getUpdates", "a"),
        fake.calls_via("getUpdates", "b"),
    )
}

/// Wait until `cond` holds; false after `timeout`.
async fn until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[tokio::test]
async fn two_polling_replicas_one_poller_takeover_after_sigkill_no_409_loop() {
    let fake = FakeBotApi::start().await;
    let llm = wiremock::MockServer::start().await;
    mount_default(&llm, completion("answer")).await;
    let llm_uri = llm.uri();
    let dir = tempfile::tempdir().unwrap();
    let db = binary_db_url(dir.path()).await;
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    // one bot, one fake: each process through its own URL prefix so its getUpdates are countable
    let (url_a, url_b) = (format!("{}/a", fake.url()), format!("{}/b", fake.url()));
    let (a, b) = tokio::join!(
        Daemon::start_polling(&url_a, &llm_uri, &db, &log_a),
        Daemon::start_polling(&url_b, &llm_uri, &db, &log_b),
    );
    let store = Store::connect(&db, 2, Duration::from_secs(5))
        .await
        .unwrap();

    // both run for 3 s (several lease checks each): exactly one of them polls
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (na, nb) = polls(&fake);
    assert!(
        (na > 0) != (nb > 0),
        "exactly one process polls: a {na}, b {nb} getUpdates"
    );
    let a_leads = na > 0;
    let holder = store
        .lease_holder("poller", chrono::Utc::now())
        .await
        .unwrap()
        .expect("the poller holds the lease");
    let leader_log = std::fs::read_to_string(if a_leads { &log_a } else { &log_b }).unwrap();
    let follower_log = std::fs::read_to_string(if a_leads { &log_b } else { &log_a }).unwrap();
    assert!(leader_log.contains("took the poller lease") && leader_log.contains(&holder));
    assert!(!follower_log.contains("took the poller lease"));

    // a message is answered once
    fake.push_update(mention(1, 10));
    assert!(until(Duration::from_secs(20), || answers(&fake).len() == 1).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(answers(&fake), vec![10]);
    let nf = if a_leads {
        polls(&fake).1
    } else {
        polls(&fake).0
    };
    assert_eq!(nf, 0, "the follower never called getUpdates");

    // a poller whose renewal finds another holder stops at once: an intruder takes the lease
    store.release_lease("poller", &holder).await.unwrap();
    let now = chrono::Utc::now();
    assert!(store
        .acquire_lease(
            "poller",
            "intruder",
            now,
            now + chrono::Duration::seconds(60)
        )
        .await
        .unwrap());
    // the leader notices within one renewal (0.5 s) and drops its open poll
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let quiet = polls(&fake);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        polls(&fake),
        quiet,
        "nobody polls while another owner holds the lease"
    );
    // the intruder lets go: one of the two takes it at its next check (a third of the lease)
    store.release_lease("poller", "intruder").await.unwrap();
    assert!(
        until(Duration::from_secs(5), || {
            let (x, y) = polls(&fake);
            x > quiet.0 || y > quiet.1
        })
        .await,
        "a process polls again once the lease is free"
    );
    // who polls now: exactly one of them over the next 1.5 s
    let t1 = polls(&fake);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let t2 = polls(&fake);
    let (da, db_) = (t2.0 - t1.0, t2.1 - t1.1);
    assert!((da > 0) != (db_ > 0), "one poller again: a +{da}, b +{db_}");
    let a_leads = da > 0;
    let (leader, follower, follower_via) = if a_leads { (a, b, "b") } else { (b, a, "a") };

    // SIGKILL the poller: the other polls within 2 × cluster.lease and answers a new message
    let before = fake.calls_via("getUpdates", follower_via);
    let killed = Instant::now();
    leader.kill9();
    assert!(
        until(2 * LEASE + Duration::from_secs(2), || fake
            .calls_via("getUpdates", follower_via)
            > before)
        .await,
        "no takeover"
    );
    let takeover = killed.elapsed();
    eprintln!("poller takeover after SIGKILL: {} ms", takeover.as_millis());
    assert!(
        takeover <= 2 * LEASE,
        "the other process polls within 2 × cluster.lease (took {takeover:?})"
    );
    fake.push_update(mention(2, 11));
    assert!(until(Duration::from_secs(20), || answers(&fake).len() == 2).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = answers(&fake);
    got.sort();
    assert_eq!(got, vec![10, 11], "each message answered once");

    let conflicts = fake.conflicts();
    eprintln!("409 answers over the test: {conflicts}");
    assert!(conflicts <= 3, "no 409 loop: {conflicts} conflicts");

    // graceful stop releases the lease
    assert_eq!(follower.stop_code().await, Some(0));
    assert_eq!(
        store
            .lease_holder("poller", chrono::Utc::now())
            .await
            .unwrap(),
        None,
        "the lease is released on SIGTERM"
    );
}

#[tokio::test]
async fn three_replicas_started_together_on_an_empty_database_all_come_up() {
    let fake = FakeBotApi::start().await;
    let llm = wiremock::MockServer::start().await;
    mount_default(&llm, completion("answer")).await;
    let llm_uri = llm.uri();
    let dir = tempfile::tempdir().unwrap();
    let db = binary_db_url(dir.path()).await;
    let logs: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("r{i}.log")))
        .collect();
    // the three spawn in the first poll of the join (before any of them waits): the same moment
    let started = Instant::now();
    let (r0, r1, r2) = tokio::join!(
        Daemon::start(&fake, &llm_uri, &db, &logs[0]),
        Daemon::start(&fake, &llm_uri, &db, &logs[1]),
        Daemon::start(&fake, &llm_uri, &db, &logs[2]),
    );
    eprintln!(
        "three replicas ready on an empty database after {} ms",
        started.elapsed().as_millis()
    );
    assert!(r0.pid() != r1.pid() && r1.pid() != r2.pid());
    for r in [r0, r1, r2] {
        assert_eq!(r.stop_code().await, Some(0), "graceful stop exits 0");
    }
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(!text.contains("ERROR"), "{text}");
        assert!(text.contains("stopped"), "{text}");
    }
}

/// getUpdates through `{url}/{via}`: the HTTP status.
async fn get_updates(url: &str, via: &str, timeout: u64) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/{via}/bot123:TEST/getUpdates"))
        .json(&serde_json::json!({ "timeout": timeout }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn fake_bot_api_ends_an_older_open_long_poll_with_409() {
    let fake = FakeBotApi::start().await;
    let url = fake.url();
    let older = tokio::spawn({
        let url = url.clone();
        async move { get_updates(&url, "a", 1).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get_updates(&url, "b", 1).await, 200, "the newer poll runs");
    assert_eq!(
        older.await.unwrap(),
        409,
        "the older open poll is terminated"
    );
    assert_eq!(fake.conflicts(), 1);
    // polls one after the other do not conflict
    assert_eq!(get_updates(&url, "a", 0).await, 200);
    assert_eq!(get_updates(&url, "b", 0).await, 200);
    assert_eq!(fake.conflicts(), 1);
}

#[tokio::test]
async fn a_poller_meeting_409_backs_off_instead_of_looping() {
    let fake = FakeBotApi::start().await;
    let llm = wiremock::MockServer::start().await;
    mount_default(&llm, completion("answer")).await;
    let dir = tempfile::tempdir().unwrap();
    let db = binary_db_url(dir.path()).await;
    let log = dir.path().join("a.log");
    let a = Daemon::start_polling(&format!("{}/a", fake.url()), &llm.uri(), &db, &log).await;
    // a poller outside the lease (an older deploy, a second copy on a laptop) polls without pause
    let url = fake.url();
    let rogue = tokio::spawn(async move {
        let end = Instant::now() + Duration::from_secs(6);
        while Instant::now() < end {
            get_updates(&url, "rogue", 1).await;
        }
    });
    let before = fake.calls_via("getUpdates", "a");
    rogue.await.unwrap();
    let hearth_polls = fake.calls_via("getUpdates", "a") - before;
    let conflicts = fake.conflicts();
    eprintln!(
        "over 6 s against a rogue poller: hearth {hearth_polls} getUpdates, {conflicts} 409s"
    );
    // backing off 1 s, 2 s, 2 s … (≤ cluster.lease): a handful of polls, not a loop
    assert!(
        hearth_polls <= 8,
        "hearth polled {hearth_polls} times in 6 s"
    );
    assert_eq!(a.stop_code().await, Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("conflicts with another poller").count(),
        1,
        "logged once per episode: {text}"
    );
}
