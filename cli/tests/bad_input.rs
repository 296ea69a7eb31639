//! Bad input where it enters `dataout serve`: each request below gets a
//! clear answer, nothing valid is lost, and nothing invalid is applied.
//! The README's bad-input table is this test's list.

use std::sync::Arc;
use std::time::Duration;

use dataout::customerio::webhook::sign;
use dataout::ports::SystemClock;
use dataout_cli::demo::{SimEnv, ACTION_SECRET, SIGNING_SECRET};
use serde_json::{json, Value};

struct Served {
    base: String,
    rt: Arc<dataout::local::LocalRuntime>,
    http: reqwest::Client,
    _env: SimEnv,
    _dir: tempfile::TempDir,
}

async fn serve() -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = SimEnv::start(200, &dir.path().join("warehouse"))
        .await
        .expect("simulators");
    let rt = Arc::new(
        env.runtime(&dir.path().join("state"), Arc::new(SystemClock))
            .expect("runtime"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = rt.router();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Served {
        base,
        rt,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        _env: env,
        _dir: dir,
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl Served {
    /// A reporting webhook signed at `ts` over `body`.
    async fn reporting(&self, body: Vec<u8>, ts: i64, content_type: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/webhooks/customerio", self.base))
            .header("X-CIO-Timestamp", ts.to_string())
            .header(
                "X-CIO-Signature",
                sign(SIGNING_SECRET.as_bytes(), ts, &body),
            )
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("send");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// POST announcing `announced` bytes, sending only `sent`, then read
    /// the answer.
    async fn announce_and_read(&self, announced: usize, sent: usize) -> (u16, Value) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.base.trim_start_matches("http://");
        let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let ts = now_s();
        let head = format!(
            "POST /webhooks/customerio HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             x-cio-timestamp: {ts}\r\nx-cio-signature: 00\r\ncontent-length: {announced}\r\n\r\n"
        );
        sock.write_all(head.as_bytes()).await.expect("head");
        // The server may answer (and stop reading) before all of it is in.
        let _ = sock.write_all(&vec![b' '; sent]).await;
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut buf)).await;
        let text = String::from_utf8_lossy(&buf);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b.trim()).ok())
            .unwrap_or(Value::Null);
        (status, body)
    }

    async fn action(&self, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/webhooks/actions", self.base))
            .header("x-dataout-token", ACTION_SECRET)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).expect("json"))
            .send()
            .await
            .expect("send");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn quarantined(&self) -> usize {
        self.rt
            .deps
            .state
            .list_quarantine(1000)
            .await
            .expect("quarantine")
            .len()
    }

    /// Membership of the person with this customer id, whatever the
    /// export's golden identifier makes their key.
    async fn member_by_id(&self, export: &str, id: &str) -> Option<bool> {
        let page = self
            .rt
            .deps
            .state
            .list_memberships(export, None, 1000)
            .await
            .expect("list");
        page.items
            .iter()
            .find(|r| r.current.ids.id.as_deref() == Some(id))
            .map(|r| r.current.member)
    }

    async fn member(&self, export: &str, key: &str) -> Option<bool> {
        self.rt
            .deps
            .state
            .get_membership(export, &dataout::domain::model::PersonKey(key.to_string()))
            .await
            .expect("get")
            .map(|r| r.current.member)
    }
}

fn unsubscribed(id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "event_id": format!("01J{id}"),
        "object_type": "email",
        "metric": "unsubscribed",
        "timestamp": now_s(),
        "data": {"customer_id": id, "identifiers": {"id": id, "email": format!("{id}@example.com")}}
    }))
    .expect("json")
}

fn enter(id: &str, email: &str) -> Value {
    json!({
        "action": "enter",
        "export": "cart_abandoners",
        "person": {"id": id, "email": email},
        "sent_at": now_s()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_at_serve_gets_a_clear_answer_and_loses_nothing_valid() {
    let s = serve().await;
    let now = now_s();

    // Malformed JSON, correctly signed: kept in quarantine for replay.
    let (status, body) = s
        .reporting(
            b"{\"event_id\": \"01JX\", \"metric\": ".to_vec(),
            now,
            "application/json",
        )
        .await;
    println!("malformed JSON: {status} {body}");
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("quarantined"))
    );
    assert_eq!(s.quarantined().await, 1);

    // 10 MB: refused unread, nothing kept. Over a raw socket, announcing
    // 10 MB and sending the first 1 MB: the answer comes before the rest is
    // sent (a client still writing would see the connection close).
    let (status, body) = s.announce_and_read(10 * 1024 * 1024, 1024 * 1024).await;
    println!("10 MB body: {status} {body}");
    assert_eq!((status, body["status"].as_str()), (413, Some("too_large")));
    assert_eq!(s.quarantined().await, 1, "a body over the limit was kept");

    // JSON nested 100,000 deep: a parse error, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, body) = s
        .reporting(deep.into_bytes(), now, "application/json")
        .await;
    println!("deep nesting: {status} {body}");
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("quarantined"))
    );

    // Wrong content type: the signature covers the bytes, which are JSON:
    // taken as sent.
    let (status, body) = s.reporting(unsubscribed("cust_ct"), now, "text/html").await;
    println!("text/html content type: {status} {body}");
    assert_eq!((status, body["status"].as_str()), (200, Some("accepted")));
    assert_eq!(
        s.member_by_id("email_suppression", "cust_ct").await,
        Some(true)
    );

    // Correctly signed ten minutes ago, outside the replay window: authentic
    // (a late retry), so applied with its age, never a stream-stalling 401.
    let (status, body) = s
        .reporting(unsubscribed("cust_old"), now - 600, "application/json")
        .await;
    println!("old timestamp: {status} {body}");
    assert_eq!((status, body["status"].as_str()), (200, Some("accepted")));
    assert!(
        // Signed 600 s before the request left; the answer comes within seconds.
        body["signed_age_s"]
            .as_i64()
            .is_some_and(|a| (600..=660).contains(&a)),
        "{body}"
    );
    assert_eq!(
        s.member_by_id("email_suppression", "cust_old").await,
        Some(true)
    );

    // Unicode tricks in identifiers: kept byte for byte, never folded into
    // another person. A zero-width space and a right-to-left override make
    // new ids, not cust_00031.
    for id in ["cust\u{200b}_00031", "cust_\u{202e}13000"] {
        let (status, body) = s.action(&enter(id, "")).await;
        println!("id {id:?}: {status} {body}");
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            s.member("cart_abandoners", &format!("id:{id}")).await,
            Some(true)
        );
    }
    assert_eq!(s.member("cart_abandoners", "id:cust_00031").await, None);
    // A fullwidth email is kept as given, never compatibility-folded into
    // ann@example.com: it cannot land on another person's hash.
    let fullwidth = "\u{ff21}\u{ff2e}\u{ff2e}@example.com";
    let (status, body) = s.action(&enter("cust_fw", fullwidth)).await;
    println!("fullwidth email: {status} {body}");
    assert_eq!(status, 200, "{body}");
    let stored =
        s.rt.deps
            .state
            .get_membership(
                "cart_abandoners",
                &dataout::domain::model::PersonKey("id:cust_fw".into()),
            )
            .await
            .expect("get")
            .expect("stored");
    assert_eq!(stored.current.ids.email.as_deref(), Some(fullwidth));
    assert_ne!(
        dataout::domain::identity::normalize_email(fullwidth, false)
            .ok()
            .as_deref(),
        Some("ann@example.com")
    );
    // An action with no identifier at all: the README promises `202
    // quarantined` with the reason, the body kept byte for byte for replay,
    // and nothing applied.
    let before = s.quarantined().await;
    let members_before =
        s.rt.deps
            .state
            .count_members("cart_abandoners")
            .await
            .expect("count");
    let no_identifier = enter("", "");
    let sent = serde_json::to_vec(&no_identifier).expect("json");
    let (status, body) = s.action(&no_identifier).await;
    println!("no identifier: {status} {body}");
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("quarantined")),
        "{body}"
    );
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("no usable identifier")
            && reason.contains("id, email, cio_id all absent or empty"),
        "{body}"
    );
    assert_eq!(s.quarantined().await, before + 1);
    let id = body["quarantine_id"].as_str().expect("a quarantine id");
    let kept =
        s.rt.deps
            .state
            .list_quarantine(1000)
            .await
            .expect("quarantine")
            .into_iter()
            .find(|e| e.id == id)
            .expect("the entry the answer names");
    use base64::Engine as _;
    let kept_body = base64::engine::general_purpose::STANDARD
        .decode(&kept.body_b64)
        .expect("base64");
    assert_eq!(kept_body, sent, "the quarantined body is not the one sent");
    assert_eq!(kept.route, "actions");
    assert_eq!(
        s.rt.deps
            .state
            .count_members("cart_abandoners")
            .await
            .expect("count"),
        members_before,
        "a body without an identifier changed membership"
    );
    s.rt.shutdown().await;
}
