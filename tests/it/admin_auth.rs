//! Web admin sign-in (issue 11): `/admin` in a DM vs a group, the one-time link, sessions,
//! CSRF, and who sees which group. Through the real boundaries: the core over in-memory SQLite
//! with the real migrations and the manual clock, the admin router on a real listener, reqwest
//! (no redirects followed, cookies sent by hand).
use chrono::Duration;
use reqwest::StatusCode;

use crate::support::{admin::*, *};

#[tokio::test]
async fn every_page_without_a_session_redirects_to_signin() {
    let a = setup().await;
    for path in [
        "/admin",
        "/admin/",
        "/admin/g/-1001",
        "/admin/g/x",
        "/admin/routines",
    ] {
        for cookie in [None, Some("hearth_admin=deadbeef")] {
            let (status, loc, _) = a.get(path, cookie).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
            assert_eq!(loc, "/admin/signin", "{path}");
        }
    }
    for path in ["/admin/logout", "/admin/g/-1001"] {
        let (status, loc) = a.post(path, None, &[("csrf", "x")]).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(loc, "/admin/signin");
    }
    let (status, _, body) = a.get("/admin/signin", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("/admin</code> to the bot in a direct message"),
        "{body}"
    );
}

#[tokio::test]
async fn a_link_works_once() {
    let a = setup().await;
    let path = a.link(&alice()).await;
    let token = path.rsplit('/').next().unwrap();
    assert_eq!(token.len(), 64);
    // only the hash is stored: the token itself is not a key of any link
    assert!(a
        .app
        .store
        .consume_admin_link(token, hearth::clock::Clock::now(&a.app.clock))
        .await
        .unwrap()
        .is_none());
    let first = a
        .client
        .post(format!("{}{path}", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let again = a
        .client
        .post(format!("{}{path}", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::GONE);
    assert!(again.headers().get("set-cookie").is_none());
    assert!(again.text().await.unwrap().contains("no longer works"));
}

#[tokio::test]
async fn a_link_works_only_within_ten_minutes() {
    let a = setup().await;
    let late = a.link(&alice()).await;
    let in_time = a.link(&alice()).await;
    a.app
        .clock
        .advance(Duration::minutes(9) + Duration::seconds(59));
    let r = a
        .client
        .post(format!("{}{in_time}", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    a.app.clock.advance(Duration::seconds(1));
    let r = a
        .client
        .post(format!("{}{late}", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::GONE);
    assert!(r.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn a_session_lasts_seven_days_and_logout_ends_it() {
    let a = setup().await;
    let c = a.sign_in(&alice()).await;
    a.app
        .clock
        .advance(Duration::days(7) - Duration::seconds(1));
    let (status, _, body) = a.get("/admin", Some(&c)).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_of(&body);
    let (status, loc) = a.post("/admin/logout", Some(&c), &[("csrf", &csrf)]).await;
    assert_eq!(
        (status, loc.as_str()),
        (StatusCode::SEE_OTHER, "/admin/signin")
    );
    assert_eq!(a.get("/admin", Some(&c)).await.0, StatusCode::SEE_OTHER);

    let c2 = a.sign_in(&alice()).await;
    a.app.clock.advance(Duration::days(7));
    let (status, loc, _) = a.get("/admin", Some(&c2)).await;
    assert_eq!(
        (status, loc.as_str()),
        (StatusCode::SEE_OTHER, "/admin/signin")
    );
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing() {
    let a = setup().await;
    let c = a.sign_in(&alice()).await;
    let other = a.sign_in(&bob()).await;
    let (_, _, bobs_page) = a.get("/admin", Some(&other)).await;
    let bobs_csrf = csrf_of(&bobs_page);
    for form in [
        vec![],
        vec![("csrf", "")],
        vec![("csrf", bobs_csrf.as_str())],
    ] {
        let (status, _) = a.post("/admin/logout", Some(&c), &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // still signed in: the refused logout changed nothing
        assert_eq!(a.get("/admin", Some(&c)).await.0, StatusCode::OK);
    }
    let (status, _) = a
        .post("/admin/g/-1001", Some(&c), &[("csrf", "nope")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_admin_sees_only_their_groups_and_another_group_is_404() {
    let a = setup().await;
    let alice_c = a.sign_in(&alice()).await;
    let (status, _, body) = a.get("/admin", Some(&alice_c)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("href=\"/admin/g/-1001\""), "{body}");
    assert!(!body.contains("-1002") && !body.contains("Cabin"), "{body}");
    let (status, _, home) = a.get("/admin/g/-1001", Some(&alice_c)).await;
    assert_eq!(status, StatusCode::OK);
    for name in [
        "Home",
        "Alice",
        "Bob",
        "Carol",
        "Open chores",
        "Pending approvals",
    ] {
        assert!(home.contains(name), "{name} missing: {home}");
    }
    let csrf = csrf_of(&home);
    assert_eq!(csrf.len(), 64);
    // Bob's group: 404 like a group that does not exist (no existence leak)
    let (b, _, body_b) = a.get("/admin/g/-1002", Some(&alice_c)).await;
    let (n, _, body_n) = a.get("/admin/g/-999999", Some(&alice_c)).await;
    assert_eq!((b, n), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(body_b, body_n);
    assert!(!body_b.contains("Cabin"));

    let bob_c = a.sign_in(&bob()).await;
    let (_, _, body) = a.get("/admin", Some(&bob_c)).await;
    assert!(
        body.contains("href=\"/admin/g/-1002\"") && !body.contains("-1001"),
        "{body}"
    );
    assert_eq!(
        a.get("/admin/g/-1001", Some(&bob_c)).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_non_admin_members_session_shows_no_group() {
    let a = setup().await;
    let c = a.sign_in(&carol()).await;
    let (status, _, body) = a.get("/admin", Some(&c)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("not an admin of any group"), "{body}");
    assert!(!body.contains("Home") && !body.contains("-1001"), "{body}");
    let (status, _, body) = a.get("/admin/g/-1001", Some(&c)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!body.contains("Home") && !body.contains("Alice"), "{body}");
}

#[tokio::test]
async fn a_session_sees_its_own_dm_and_no_one_elses() {
    let a = setup().await;
    let c = a.sign_in(&carol()).await;
    // Carol's DM exists (she asked for the link there): listed, and its page opens
    let (_, _, body) = a.get("/admin", Some(&c)).await;
    assert!(body.contains("href=\"/admin/g/3\""), "{body}");
    let (status, _, page) = a.get("/admin/g/3", Some(&c)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Your direct messages"), "{page}");
    // Alice's DM and Bob's DM are not Carol's: 404 like any other chat
    let _ = a.sign_in(&alice()).await;
    for other in ["/admin/g/1", "/admin/g/2"] {
        assert_eq!(
            a.get(other, Some(&c)).await.0,
            StatusCode::NOT_FOUND,
            "{other}"
        );
    }
}

#[tokio::test]
async fn admin_in_a_group_points_to_the_dm_and_sends_no_link() {
    let a = setup().await;
    a.app.say(&group(), &alice(), "/admin").await;
    let text = a.app.last_text(GROUP);
    assert!(text.contains("direct message"), "{text}");
    assert!(!text.contains("/admin/login/"), "{text}");
    // the DM answer carries the link
    let path = a.link(&alice()).await;
    assert!(path.starts_with("/admin/login/"));
}

#[tokio::test]
async fn admin_without_a_public_url_says_it_is_not_configured() {
    let app = TestApp::new().await;
    app.say(&dm(&alice()), &alice(), "/admin").await;
    let text = app.last_text(alice().id);
    assert!(
        text.contains("not configured") && text.contains("http.public_url"),
        "{text}"
    );
    assert!(!text.contains("/admin/login/"));
}

#[tokio::test]
async fn two_racing_uses_of_one_link_open_one_session() {
    let a = setup().await;
    let path = a.link(&alice()).await;
    let url = format!("{}{path}", a.base);
    let (r1, r2) = tokio::join!(a.client.post(&url).send(), a.client.post(&url).send());
    let mut codes = [r1.unwrap().status(), r2.unwrap().status()];
    codes.sort();
    assert_eq!(codes, [StatusCode::SEE_OTHER, StatusCode::GONE]);
}
