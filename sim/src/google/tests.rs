//! Tests of the Google Ads simulator.

use super::*;

fn sha(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

struct Client {
    base: String,
    http: reqwest::Client,
    token: &'static str,
}

impl Client {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/v26/{path}", self.base))
            .bearer_auth(self.token)
            .header("developer-token", DEFAULT_DEVELOPER_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

async fn setup() -> (RunningSim, GoogleSim, Client) {
    let (running, sim) = GoogleSim::start(GoogleSimConfig::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sim.create_user_list("1234567890", "555");
    let client = Client {
        base: running.base_url.clone(),
        http: reqwest::Client::new(),
        token: DEFAULT_ACCESS_TOKEN,
    };
    (running, sim, client)
}

async fn new_job(client: &Client) -> String {
    let (status, body) = client
        .post(
            "customers/1234567890/offlineUserDataJobs:create",
            json!({"job": {"type": "CUSTOMER_MATCH_USER_LIST",
                "customer_match_user_list_metadata": {"user_list": "customers/1234567890/userLists/555"}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["resourceName"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn job_create_add_run_puts_members_in_list() {
    let (_running, sim, client) = setup().await;
    let job = new_job(&client).await;
    let ops = json!({"operations": [
        {"create": {"userIdentifiers": [{"hashedEmail": sha("a@example.com")}, {"hashedPhoneNumber": sha("+15551234567")}]}},
        {"create": {"user_identifiers": [{"hashed_email": sha("b@example.com")}]}},
    ], "enablePartialFailure": true});
    let (status, body) = client.post(&format!("{job}:addOperations"), ops).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("partialFailureError").is_none());
    assert_eq!(
        sim.member_count("1234567890", "555"),
        0,
        "nothing applies before run"
    );
    let (status, body) = client.post(&format!("{job}:run"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sim.member_count("1234567890", "555"), 2);
    assert!(sim.has_member_with(
        "1234567890",
        "555",
        "hashedPhoneNumber",
        &sha("+15551234567")
    ));
    let query = format!("SELECT offline_user_data_job.status FROM offline_user_data_job WHERE offline_user_data_job.resource_name = '{job}'");
    let (_, found) = client
        .post(
            "customers/1234567890/googleAds:search",
            json!({ "query": query }),
        )
        .await;
    assert_eq!(
        found["results"][0]["offlineUserDataJob"]["status"],
        "SUCCESS"
    );
}

#[tokio::test]
async fn partial_failure_reports_failing_operation_index() {
    let (_running, sim, client) = setup().await;
    let job = new_job(&client).await;
    let ops = json!({"operations": [
        {"create": {"userIdentifiers": [{"hashedEmail": sha("a@example.com")}]}},
        {"create": {"userIdentifiers": [{"hashedEmail": "Raw@Example.com"}]}},
        {"create": {"userIdentifiers": [{"hashedEmail": sha("c@example.com")}]}},
    ], "enablePartialFailure": true});
    let (status, body) = client.post(&format!("{job}:addOperations"), ops).await;
    assert_eq!(status, 200);
    let errors = &body["partialFailureError"]["details"][0]["errors"];
    assert_eq!(errors.as_array().map(Vec::len), Some(1));
    assert_eq!(errors[0]["location"]["fieldPathElements"][0]["index"], 1);
    client.post(&format!("{job}:run"), json!({})).await;
    assert_eq!(sim.member_count("1234567890", "555"), 2);
}

#[tokio::test]
async fn bad_operation_without_partial_failure_fails_whole_request() {
    let (_running, sim, client) = setup().await;
    let job = new_job(&client).await;
    let ops = json!({"operations": [
        {"create": {"userIdentifiers": [{"hashedEmail": sha("a@example.com")}]}},
        {"create": {"userIdentifiers": [{"hashedEmail": sha("b"), "hashedPhoneNumber": sha("c")}]}},
    ]});
    let (status, body) = client.post(&format!("{job}:addOperations"), ops).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    client.post(&format!("{job}:run"), json!({})).await;
    assert_eq!(sim.member_count("1234567890", "555"), 0);
}

#[tokio::test]
async fn too_many_identifiers_refused_with_400() {
    let (running, sim) = GoogleSim::start(GoogleSimConfig {
        max_identifiers_per_request: 3,
        ..GoogleSimConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    sim.create_user_list("1234567890", "555");
    let client = Client {
        base: running.base_url.clone(),
        http: reqwest::Client::new(),
        token: DEFAULT_ACCESS_TOKEN,
    };
    let job = new_job(&client).await;
    let op = json!({"create": {"userIdentifiers": [{"hashedEmail": sha("a")}, {"hashedPhoneNumber": sha("b")}]}});
    let (status, body) = client
        .post(
            &format!("{job}:addOperations"),
            json!({"operations": [op.clone(), op], "enablePartialFailure": true}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
}

#[tokio::test]
async fn more_than_twenty_identifiers_in_one_user_data_is_a_bad_operation() {
    let (_running, _sim, client) = setup().await;
    let job = new_job(&client).await;
    let ids: Vec<Value> = (0..21)
        .map(|i| json!({"hashedEmail": sha(&i.to_string())}))
        .collect();
    let (_, body) = client
        .post(&format!("{job}:addOperations"), json!({"operations": [{"create": {"userIdentifiers": ids}}], "enablePartialFailure": true}))
        .await;
    assert_eq!(
        body["partialFailureError"]["details"][0]["errors"][0]["location"]["fieldPathElements"][0]
            ["index"],
        0
    );
}

#[tokio::test]
async fn wrong_token_is_401_and_wrong_manager_is_403() {
    let (running, sim) = GoogleSim::start(GoogleSimConfig {
        login_customer_id: Some("9999999999".into()),
        ..GoogleSimConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    sim.create_user_list("1234567890", "555");
    let bad = Client {
        base: running.base_url.clone(),
        http: reqwest::Client::new(),
        token: "expired",
    };
    let (status, body) = bad
        .post("customers/1234567890/offlineUserDataJobs:create", json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["status"].clone()),
        (401, json!("UNAUTHENTICATED"))
    );
    let good = Client {
        token: DEFAULT_ACCESS_TOKEN,
        ..bad
    };
    let (status, body) = good
        .post("customers/1234567890/offlineUserDataJobs:create", json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["status"].clone()),
        (403, json!("PERMISSION_DENIED"))
    );
}

#[tokio::test]
async fn injected_quota_error_is_429_resource_exhausted() {
    let (_running, sim, client) = setup().await;
    sim.fail_next(1, GoogleFault::ResourceExhausted);
    let (status, body) = client
        .post("customers/1234567890/offlineUserDataJobs:create", json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["status"].clone()),
        (429, json!("RESOURCE_EXHAUSTED"))
    );
    new_job(&client).await;
    assert_eq!(sim.request_count(), 2);
}

#[tokio::test]
async fn remove_operation_takes_member_out() {
    let (_running, sim, client) = setup().await;
    let add = new_job(&client).await;
    let a =
        json!({"userIdentifiers": [{"hashedEmail": sha("a")}, {"hashedPhoneNumber": sha("+1")}]});
    client
        .post(
            &format!("{add}:addOperations"),
            json!({"operations": [{"create": a}]}),
        )
        .await;
    client.post(&format!("{add}:run"), json!({})).await;
    assert_eq!(sim.member_count("1234567890", "555"), 1);
    let remove = new_job(&client).await;
    let by_email = json!({"userIdentifiers": [{"hashedEmail": sha("a")}]});
    client
        .post(
            &format!("{remove}:addOperations"),
            json!({"operations": [{"remove": by_email}]}),
        )
        .await;
    client.post(&format!("{remove}:run"), json!({})).await;
    assert_eq!(sim.member_count("1234567890", "555"), 0);
}

#[tokio::test]
async fn second_run_on_busy_list_is_aborted() {
    let (running, sim) = GoogleSim::start(GoogleSimConfig {
        run_completes: false,
        ..GoogleSimConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    sim.create_user_list("1234567890", "555");
    let client = Client {
        base: running.base_url.clone(),
        http: reqwest::Client::new(),
        token: DEFAULT_ACCESS_TOKEN,
    };
    let (first, second) = (new_job(&client).await, new_job(&client).await);
    assert_eq!(client.post(&format!("{first}:run"), json!({})).await.0, 200);
    assert_eq!(
        client.post(&format!("{second}:run"), json!({})).await.0,
        409
    );
    sim.complete_jobs();
    assert_eq!(
        client.post(&format!("{second}:run"), json!({})).await.0,
        200
    );
}

#[tokio::test]
async fn contact_info_list_refuses_third_party_user_id() {
    let (_running, _sim, client) = setup().await;
    let job = new_job(&client).await;
    let ops = json!({"operations": [
        {"create": {"userIdentifiers": [{"hashedEmail": sha("a")}]}},
        {"create": {"userIdentifiers": [{"thirdPartyUserId": "u1"}]}},
    ], "enablePartialFailure": true});
    let (_, body) = client.post(&format!("{job}:addOperations"), ops).await;
    let error = &body["partialFailureError"]["details"][0]["errors"][0];
    assert_eq!(
        error["errorCode"]["offlineUserDataJobError"],
        "INCOMPATIBLE_UPLOAD_KEY_TYPE"
    );
    assert_eq!(error["location"]["fieldPathElements"][0]["index"], 1);
}

async fn create_with(client: &Client, metadata_extra: Value) -> (u16, Value) {
    let mut metadata = json!({"userList": "customers/1234567890/userLists/555"});
    if let (Some(m), Some(extra)) = (metadata.as_object_mut(), metadata_extra.as_object()) {
        m.extend(extra.clone());
    }
    client
        .post(
            "customers/1234567890/offlineUserDataJobs:create",
            json!({"job": {"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata": metadata}}),
        )
        .await
}

#[tokio::test]
async fn an_unknown_field_is_400_invalid_argument_naming_where() {
    let (_running, sim, client) = setup().await;
    let (status, body) = create_with(&client, json!({"colour": "red"})).await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    let violation = &body["error"]["details"][0];
    assert_eq!(
        violation["@type"],
        "type.googleapis.com/google.rpc.BadRequest"
    );
    assert_eq!(
        violation["fieldViolations"][0]["field"],
        "job.customer_match_user_list_metadata"
    );
    assert!(sim.job_details().is_empty());
    let job = new_job(&client).await;
    let (status, _) = client
        .post(
            &format!("{job}:addOperations"),
            json!({"operations": [{"create": {"userIdentifiers": [{"hashedEmail": sha("a")}]}}],
                   "partialFailure": true}),
        )
        .await;
    assert_eq!(status, 400, "enablePartialFailure is the field's name");
}

#[tokio::test]
async fn job_consent_is_recorded_and_read_back() {
    let (_running, sim, client) = setup().await;
    let (status, body) = create_with(
        &client,
        json!({"consent": {"adUserData": "GRANTED", "adPersonalization": "UNSPECIFIED"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let jobs = sim.job_details();
    assert_eq!(
        jobs[0].consent,
        Some(SimConsent {
            ad_user_data: "GRANTED".into(),
            ad_personalization: "UNSPECIFIED".into(),
        })
    );
    let (_, found) = client
        .post(
            "customers/1234567890/googleAds:search",
            json!({"query": "SELECT offline_user_data_job.status FROM offline_user_data_job"}),
        )
        .await;
    assert_eq!(
        found["results"][0]["offlineUserDataJob"]["customerMatchUserListMetadata"]["consent"]
            ["adUserData"],
        "GRANTED"
    );
    let (status, _) = create_with(&client, json!({"consent": {}})).await;
    assert_eq!(status, 200);
    assert_eq!(
        sim.job_details()[1].consent,
        Some(SimConsent {
            ad_user_data: "UNSPECIFIED".into(),
            ad_personalization: "UNSPECIFIED".into(),
        }),
        "an absent field is UNSPECIFIED"
    );
}

#[tokio::test]
async fn a_consent_value_outside_the_enum_is_refused() {
    let (_running, sim, client) = setup().await;
    for value in [
        json!("CONSENT_GRANTED"),
        json!("granted"),
        json!(7),
        json!(true),
    ] {
        let (status, body) = create_with(&client, json!({"consent": {"adUserData": value}})).await;
        assert_eq!(
            (status, body["error"]["status"].as_str()),
            (400, Some("INVALID_ARGUMENT")),
            "{value}: {body}"
        );
    }
    let (status, body) = create_with(
        &client,
        json!({"consent": {"adPersonalization": "UNKNOWN"}}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["details"][0]["errors"][0]["errorCode"]["requestError"], "INVALID_ENUM_VALUE",
        "UNKNOWN is output only"
    );
    assert!(sim.job_details().is_empty());
}

#[tokio::test]
async fn a_job_whose_consent_denies_is_refused_with_customer_data_terms() {
    let (_running, sim, client) = setup().await;
    for consent in [
        json!({"adUserData": "DENIED", "adPersonalization": "GRANTED"}),
        json!({"adUserData": "GRANTED", "adPersonalization": "DENIED"}),
    ] {
        let (status, body) = create_with(&client, json!({ "consent": consent })).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            body["error"]["details"][0]["errors"][0]["errorCode"]["offlineUserDataJobError"],
            "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS"
        );
    }
    assert!(sim.job_details().is_empty());
}

#[tokio::test]
async fn creates_and_removes_in_one_job_conflict() {
    let (_running, sim, client) = setup().await;
    let job = new_job(&client).await;
    let ops = json!({"operations": [
        {"create": {"userIdentifiers": [{"hashedEmail": sha("a")}]}},
        {"remove": {"userIdentifiers": [{"hashedEmail": sha("b")}]}},
    ], "enablePartialFailure": true});
    let (_, body) = client.post(&format!("{job}:addOperations"), ops).await;
    let error = &body["partialFailureError"]["details"][0]["errors"][0];
    assert_eq!(
        error["errorCode"]["offlineUserDataJobError"],
        "CONFLICTING_OPERATION"
    );
    assert_eq!(error["location"]["fieldPathElements"][0]["index"], 1);
    // Across requests too: the job already holds a create.
    let (status, body) = client
        .post(
            &format!("{job}:addOperations"),
            json!({"operations": [{"remove": {"userIdentifiers": [{"hashedEmail": sha("c")}]}}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["details"][0]["errors"][0]["errorCode"]["offlineUserDataJobError"],
        "CONFLICTING_OPERATION"
    );
    let jobs = sim.job_details();
    assert_eq!((jobs[0].creates, jobs[0].removes), (1, 0));
}

#[tokio::test]
async fn remove_all_goes_first_and_creates_may_follow() {
    let (_running, sim, client) = setup().await;
    let job = new_job(&client).await;
    let ops = json!({"operations": [
        {"removeAll": true},
        {"create": {"userIdentifiers": [{"hashedEmail": sha("a")}]}},
        {"removeAll": true},
    ], "enablePartialFailure": true});
    let (_, body) = client.post(&format!("{job}:addOperations"), ops).await;
    let errors = &body["partialFailureError"]["details"][0]["errors"];
    assert_eq!(errors.as_array().map(Vec::len), Some(1));
    assert_eq!(
        errors[0]["errorCode"]["offlineUserDataJobError"],
        "INVALID_OPERATION_ORDER"
    );
    assert_eq!(errors[0]["location"]["fieldPathElements"][0]["index"], 2);
    client.post(&format!("{job}:run"), json!({})).await;
    assert_eq!(sim.member_count("1234567890", "555"), 1);
}

#[tokio::test]
async fn a_users_own_consent_is_accepted_and_recorded() {
    let (_running, sim, client) = setup().await;
    let job = new_job(&client).await;
    let ops = json!({"operations": [
        {"create": {"userIdentifiers": [{"hashedEmail": sha("a")}],
                    "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}}},
    ]});
    let (status, body) = client.post(&format!("{job}:addOperations"), ops).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        sim.job_details()[0].operation_consents,
        vec![SimConsent {
            ad_user_data: "GRANTED".into(),
            ad_personalization: "GRANTED".into(),
        }]
    );
}

#[tokio::test]
async fn only_the_four_post_routes_exist() {
    let (running, _sim, client) = setup().await;
    let job = new_job(&client).await;
    let http = reqwest::Client::new();
    for (method, path) in [
        (reqwest::Method::GET, format!("/v26/{job}")),
        (
            reqwest::Method::GET,
            "/v26/customers/1234567890/offlineUserDataJobs:create".into(),
        ),
        (
            reqwest::Method::POST,
            "/v26/customers/1234567890/googleAds:searchStream".into(),
        ),
        (reqwest::Method::POST, format!("/v26/{job}:cancel")),
    ] {
        let status = http
            .request(method.clone(), format!("{}{path}", running.base_url))
            .bearer_auth(DEFAULT_ACCESS_TOKEN)
            .header("developer-token", DEFAULT_DEVELOPER_TOKEN)
            .json(&json!({}))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 404, "{method} {path}");
    }
}

#[test]
fn snake_case_keys_become_lower_camel_case() {
    assert_eq!(
        camel_key("customer_match_user_list_metadata"),
        "customerMatchUserListMetadata"
    );
    assert_eq!(camel_key("hashedEmail"), "hashedEmail");
    assert_eq!(camel_key("@type"), "@type");
}
