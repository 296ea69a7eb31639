//! Tests of the Data Manager simulator: what it refuses, and how slowly it
//! applies what it accepts.

use super::*;
use crate::google_oauth::{
    DATA_MANAGER_SCOPE, TEST_SERVICE_ACCOUNT_EMAIL, TEST_SERVICE_ACCOUNT_PRIVATE_KEY_PEM,
};
use serde_json::json;

const ACCOUNT: &str = "1234567890";
const LIST: &str = "7000000101";

fn sha(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

struct T {
    running: RunningSim,
    sim: DataManagerSim,
    http: reqwest::Client,
    token: String,
}

async fn token_via_jwt(http: &reqwest::Client, base: &str) -> (u16, Value) {
    let now = now_ms() / 1000;
    let claims = json!({
        "iss": TEST_SERVICE_ACCOUNT_EMAIL,
        "scope": DATA_MANAGER_SCOPE,
        "aud": format!("{base}/token"),
        "iat": now,
        "exp": now + 3600,
    });
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(TEST_SERVICE_ACCOUNT_PRIVATE_KEY_PEM.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let resp = http
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", jwt.as_str()),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn setup(config: DataManagerSimConfig) -> T {
    let (running, sim) = DataManagerSim::start(config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sim.create_user_list(ACCOUNT, LIST);
    let http = reqwest::Client::new();
    let (status, body) = token_via_jwt(&http, &running.base_url).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    T {
        running,
        sim,
        http,
        token,
    }
}

impl T {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/v1/{path}", self.running.base_url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `GET /v1/requestStatus:retrieve?requestId=…`, as Google serves it.
    async fn status(&self, id: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!(
                "{}/v1/requestStatus:retrieve",
                self.running.base_url
            ))
            .query(&[("requestId", id)])
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn destination() -> Value {
    json!([{ "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": ACCOUNT}, "productDestinationId": LIST }])
}

fn email_member(email: &str) -> Value {
    json!({ "userData": { "userIdentifiers": [{ "emailAddress": sha(email) }] } })
}

fn ingest_body(members: Vec<Value>) -> Value {
    json!({
        "destinations": destination(),
        "audienceMembers": members,
        "encoding": "HEX",
        "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"},
        "termsOfService": {"customerMatchTermsOfServiceStatus": "ACCEPTED"},
    })
}

fn fast() -> DataManagerSimConfig {
    DataManagerSimConfig {
        processing_delay: Duration::ZERO,
        ..DataManagerSimConfig::default()
    }
}

#[tokio::test]
async fn refuses_requests_without_encoding_or_accepted_terms() {
    let t = setup(fast()).await;
    let mut no_encoding = ingest_body(vec![email_member("a@example.com")]);
    no_encoding.as_object_mut().map(|o| o.remove("encoding"));
    let (status, body) = t.post("audienceMembers:ingest", no_encoding).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("encoding"));

    let mut no_terms = ingest_body(vec![email_member("a@example.com")]);
    no_terms.as_object_mut().map(|o| o.remove("termsOfService"));
    let (status, body) = t.post("audienceMembers:ingest", no_terms).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["details"][0]["reason"],
        "TERMS_AND_CONDITIONS_NOT_SIGNED"
    );

    let mut denied_terms = ingest_body(vec![email_member("a@example.com")]);
    denied_terms["termsOfService"]["customerMatchTermsOfServiceStatus"] = json!("REJECTED");
    let (status, _) = t.post("audienceMembers:ingest", denied_terms).await;
    assert_eq!(status, 400);

    // Remove takes neither consent nor terms: their presence is an unknown field.
    let mut remove = ingest_body(vec![email_member("a@example.com")]);
    remove.as_object_mut().map(|o| o.remove("consent"));
    let (status, body) = t.post("audienceMembers:remove", remove).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(t.sim.pending_count(), 0, "nothing refused was queued");
}

#[tokio::test]
async fn refuses_more_than_10000_members_or_10_identifiers_per_member() {
    let t = setup(fast()).await;
    let many: Vec<Value> = (0..10_001)
        .map(|i| email_member(&format!("p{i}@example.com")))
        .collect();
    let (status, body) = t.post("audienceMembers:ingest", ingest_body(many)).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["details"][0]["reason"],
        "TOO_MANY_AUDIENCE_MEMBERS"
    );

    let ids: Vec<Value> = (0..11)
        .map(|i| json!({ "emailAddress": sha(&format!("x{i}@example.com")) }))
        .collect();
    let wide = json!({ "userData": { "userIdentifiers": ids } });
    let (status, body) = t
        .post("audienceMembers:ingest", ingest_body(vec![wide]))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["details"][0]["reason"],
        "TOO_MANY_USER_IDENTIFIERS"
    );

    let exactly: Vec<Value> = (0..10_000)
        .map(|i| email_member(&format!("p{i}@example.com")))
        .collect();
    let (status, body) = t.post("audienceMembers:ingest", ingest_body(exactly)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn refuses_unhashed_identifiers_and_hashed_postal_codes() {
    let t = setup(fast()).await;
    let raw = json!({ "userData": { "userIdentifiers": [{ "emailAddress": "ann@example.com" }] } });
    let (status, body) = t
        .post("audienceMembers:ingest", ingest_body(vec![raw]))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["details"][0]["reason"],
        "INVALID_HEX_ENCODING"
    );

    let phone = json!({ "userData": { "userIdentifiers": [{ "phoneNumber": "+16502530000" }] } });
    let (status, _) = t
        .post("audienceMembers:ingest", ingest_body(vec![phone]))
        .await;
    assert_eq!(status, 400);

    let hashed_zip = json!({ "userData": { "userIdentifiers": [{ "address": {
        "givenName": sha("ann"), "familyName": sha("lee"), "regionCode": "US", "postalCode": sha("94043"),
    }}]}});
    let (status, _) = t
        .post("audienceMembers:ingest", ingest_body(vec![hashed_zip]))
        .await;
    assert_eq!(status, 400);
    assert!(t.sim.requests().iter().all(|r| r.request_id.is_none()));
}

#[tokio::test]
async fn unknown_list_and_bad_or_expired_tokens_are_refused() {
    let mut t = setup(fast()).await;
    let mut body = ingest_body(vec![email_member("a@example.com")]);
    body["destinations"][0]["productDestinationId"] = json!("999");
    let (status, answer) = t.post("audienceMembers:ingest", body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"]["details"][0]["reason"],
        "INVALID_USER_LIST_ID"
    );

    t.sim.authority().expire_all();
    let (status, answer) = t
        .post(
            "audienceMembers:ingest",
            ingest_body(vec![email_member("a@example.com")]),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(answer["error"]["status"], "UNAUTHENTICATED");
    t.token = "made-up".into();
    let (status, _) = t
        .post(
            "audienceMembers:ingest",
            ingest_body(vec![email_member("a@example.com")]),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn token_endpoint_refuses_a_jwt_signed_with_another_key() {
    let (running, _sim) = DataManagerSim::start(fast())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A JWT with a valid shape but an HS256 signature: not the service account's key.
    let now = now_ms() / 1000;
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"iss": TEST_SERVICE_ACCOUNT_EMAIL, "scope": DATA_MANAGER_SCOPE, "aud": "x/token", "iat": now, "exp": now + 60}),
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-key"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let resp = reqwest::Client::new()
        .post(format!("{}/token", running.base_url))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", jwt.as_str()),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test]
async fn a_request_processes_after_its_delay_and_only_matched_members_count() {
    let t = setup(DataManagerSimConfig {
        processing_delay: Duration::from_secs(3600),
        non_matching_share: 0.2,
        ..DataManagerSimConfig::default()
    })
    .await;
    let members: Vec<Value> = (0..500)
        .map(|i| email_member(&format!("p{i}@example.com")))
        .collect();
    let (status, body) = t.post("audienceMembers:ingest", ingest_body(members)).await;
    assert_eq!(status, 200, "{body}");
    let id = body["requestId"].as_str().unwrap_or_default().to_string();
    let (_, st) = t.status(&id).await;
    assert_eq!(
        st["requestStatusPerDestination"][0]["requestStatus"],
        "PROCESSING"
    );
    assert_eq!(
        t.sim.member_count(ACCOUNT, LIST),
        0,
        "nothing applies while processing"
    );
    assert_eq!(t.sim.size(ACCOUNT, LIST), 0);

    t.sim.process_now();
    let (_, st) = t.status(&id).await;
    assert_eq!(
        st["requestStatusPerDestination"][0]["requestStatus"],
        "SUCCESS"
    );
    assert_eq!(t.sim.member_count(ACCOUNT, LIST), 500);
    let size = t.sim.size(ACCOUNT, LIST);
    assert!(
        (350..=450).contains(&size),
        "about 80 % of 500 match, got {size}"
    );
}

#[tokio::test]
async fn failing_members_make_a_request_partial_or_failed_with_counts() {
    let t = setup(fast()).await;
    t.sim.fail_members_with(&[&sha("bad@example.com")]);
    let (_, body) = t
        .post(
            "audienceMembers:ingest",
            ingest_body(vec![
                email_member("bad@example.com"),
                email_member("good@example.com"),
            ]),
        )
        .await;
    let id = body["requestId"].as_str().unwrap_or_default().to_string();
    let (_, st) = t.status(&id).await;
    let entry = &st["requestStatusPerDestination"][0];
    assert_eq!(entry["requestStatus"], "PARTIAL_SUCCESS", "{st}");
    assert_eq!(entry["errorInfo"]["errorCounts"][0]["recordCount"], "1");
    assert_eq!(t.sim.member_count(ACCOUNT, LIST), 1);

    t.sim
        .fail_next_requests(1, "PROCESSING_ERROR_REASON_NO_CONSENT");
    let (_, body) = t
        .post(
            "audienceMembers:ingest",
            ingest_body(vec![email_member("c@example.com")]),
        )
        .await;
    let id = body["requestId"].as_str().unwrap_or_default().to_string();
    let (_, st) = t.status(&id).await;
    assert_eq!(
        st["requestStatusPerDestination"][0]["requestStatus"],
        "FAILED"
    );
    assert_eq!(
        st["requestStatusPerDestination"][0]["errorInfo"]["errorCounts"][0]["reason"],
        "PROCESSING_ERROR_REASON_NO_CONSENT"
    );
    assert_eq!(t.sim.member_count(ACCOUNT, LIST), 1);
}

#[tokio::test]
async fn over_the_per_minute_budget_is_resource_exhausted() {
    let t = setup(DataManagerSimConfig {
        requests_per_minute: 3,
        ..fast()
    })
    .await;
    for _ in 0..3 {
        let (status, _) = t
            .post(
                "audienceMembers:ingest",
                ingest_body(vec![email_member("a@example.com")]),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (status, body) = t
        .post(
            "audienceMembers:ingest",
            ingest_body(vec![email_member("a@example.com")]),
        )
        .await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
}

#[tokio::test]
async fn remove_all_as_of_time_keeps_members_added_after_it() {
    let t = setup(fast()).await;
    t.post(
        "audienceMembers:ingest",
        ingest_body(vec![email_member("old@example.com")]),
    )
    .await;
    t.sim.process_now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let as_of = now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    t.post(
        "audienceMembers:ingest",
        ingest_body(vec![email_member("new@example.com")]),
    )
    .await;
    let secs = as_of.div_euclid(1000);
    let ms = as_of.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days (inverse of the parser's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let stamp = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    let (status, body) = t
        .post(
            "audienceMembers:removeAll",
            json!({ "destinations": destination(), "removeAsOfTime": stamp }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    t.sim.process_now();
    assert!(!t
        .sim
        .has_member_with(ACCOUNT, LIST, "emailAddress", &sha("old@example.com")));
    assert!(t
        .sim
        .has_member_with(ACCOUNT, LIST, "emailAddress", &sha("new@example.com")));
}

#[test]
fn rfc3339_parses_offsets_and_fractions() {
    assert_eq!(time_from_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        time_from_rfc3339("1970-01-02T00:00:01.5Z"),
        Some(86_401_500)
    );
    assert_eq!(time_from_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
    assert_eq!(
        time_from_rfc3339("2014-10-02T15:01:23Z"),
        Some(1_412_262_083_000)
    );
    assert_eq!(time_from_rfc3339("yesterday"), None);
}

#[tokio::test]
async fn request_status_is_served_on_get_only_and_a_post_gets_googles_404_page() {
    let t = setup(fast()).await;
    let (_, body) = t
        .post(
            "audienceMembers:ingest",
            ingest_body(vec![email_member("a@example.com")]),
        )
        .await;
    let id = body["requestId"].as_str().unwrap_or_default().to_string();
    let (status, st) = t.status(&id).await;
    assert_eq!(status, 200, "{st}");
    let resp = t
        .http
        .post(format!("{}/v1/requestStatus:retrieve", t.running.base_url))
        .bearer_auth(&t.token)
        .json(&json!({ "requestId": id }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 404);
    let page = resp.text().await.unwrap_or_default();
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    let (status, _) = t.post("audienceMembers:upsert", json!({})).await;
    assert_eq!(status, 404, "an unknown method is Google's 404 page");
}

#[tokio::test]
async fn an_unknown_request_id_is_invalid_request_id() {
    let t = setup(fast()).await;
    let (status, body) = t.status("no-such-request").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(body["error"]["details"][0]["reason"], "INVALID_REQUEST_ID");
}

#[tokio::test]
async fn a_remove_status_reports_user_data_removal_status() {
    let t = setup(fast()).await;
    let mut body = ingest_body(vec![email_member("a@example.com")]);
    let o = body.as_object_mut().unwrap_or_else(|| panic!("object"));
    o.remove("consent");
    o.remove("termsOfService");
    let (status, answer) = t.post("audienceMembers:remove", body).await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["requestId"].as_str().unwrap_or_default().to_string();
    t.sim.process_now();
    let (_, st) = t.status(&id).await;
    let entry = &st["requestStatusPerDestination"][0];
    assert_eq!(
        entry["audienceMembersRemovalStatus"]["userDataRemovalStatus"]["recordCount"], "1",
        "{st}"
    );
}

#[tokio::test]
async fn a_linked_account_with_a_google_ads_login_is_refused() {
    let t = setup(fast()).await;
    let mut body = ingest_body(vec![email_member("a@example.com")]);
    body["destinations"][0]["loginAccount"] =
        json!({"accountType": "GOOGLE_ADS", "accountId": ACCOUNT});
    body["destinations"][0]["linkedAccount"] =
        json!({"accountType": "GOOGLE_ADS", "accountId": "1112223333"});
    let (status, answer) = t.post("audienceMembers:ingest", body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["error"]["details"][0]["reason"],
        "LINKED_ACCOUNT_ONLY_ALLOWED_WITH_DATA_PARTNER_LOGIN_ACCOUNT"
    );
}

#[tokio::test]
async fn a_token_without_the_datamanager_scope_is_refused() {
    let mut config = fast();
    config.oauth.refresh_token_scopes = vec![crate::google_oauth::ADS_SCOPE.to_string()];
    let mut t = setup(config).await;
    let resp = t
        .http
        .post(format!("{}/token", t.running.base_url))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", crate::google_oauth::TEST_REFRESH_TOKEN),
            ("client_id", crate::google_oauth::TEST_CLIENT_ID),
            ("client_secret", crate::google_oauth::TEST_CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let grant: Value = resp.json().await.unwrap_or(Value::Null);
    t.token = grant["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (status, answer) = t
        .post(
            "audienceMembers:ingest",
            ingest_body(vec![email_member("a@example.com")]),
        )
        .await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(
        answer["error"]["details"][0]["reason"],
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    );
}

#[tokio::test]
async fn a_member_whose_consent_denies_ad_user_data_is_reported_not_dropped() {
    let t = setup(fast()).await;
    let mut denied = email_member("no@example.com");
    denied["consent"] =
        json!({"adUserData": "CONSENT_DENIED", "adPersonalization": "CONSENT_DENIED"});
    let (_, body) = t
        .post(
            "audienceMembers:ingest",
            ingest_body(vec![denied, email_member("yes@example.com")]),
        )
        .await;
    let id = body["requestId"].as_str().unwrap_or_default().to_string();
    t.sim.process_now();
    let (_, st) = t.status(&id).await;
    let entry = &st["requestStatusPerDestination"][0];
    assert_eq!(entry["requestStatus"], "PARTIAL_SUCCESS", "{st}");
    assert_eq!(
        entry["errorInfo"]["errorCounts"][0]["reason"],
        "PROCESSING_ERROR_REASON_DENIED_CONSENT"
    );
    assert_eq!(entry["errorInfo"]["errorCounts"][0]["recordCount"], "1");
    assert_eq!(t.sim.member_count(ACCOUNT, LIST), 1);
}

#[tokio::test]
async fn every_bad_member_is_named_in_the_field_violations() {
    let t = setup(fast()).await;
    let raw = json!({ "userData": { "userIdentifiers": [{ "emailAddress": "ann@example.com" }] } });
    let (status, body) = t
        .post(
            "audienceMembers:ingest",
            ingest_body(vec![
                email_member("ok@example.com"),
                raw.clone(),
                email_member("ok2@example.com"),
                raw,
            ]),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["fieldViolations"].as_array().into_iter().flatten())
        .filter_map(|v| v["field"].as_str())
        .collect();
    assert_eq!(fields, vec!["audience_members[1]", "audience_members[3]"]);
}
