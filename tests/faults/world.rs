//! The world the scenario runs in: the simulators with a fault proxy in
//! front of each destination, the Customer.io workspace, the activation
//! spec, and the realtime changes with the membership they must end in.

use super::*;

pub(super) struct Sims {
    pub(super) cio: cio_sim::CioSim,
    pub(super) clevertap: Arc<ClevertapState>,
    pub(super) meta: MetaSim,
    pub(super) google: DataManagerSim,
    pub(super) hook: Arc<WebhookState>,
    pub(super) proxies: Vec<(&'static str, Arc<FaultProxyState>)>,
    /// Base URLs of the proxies, in the order of `proxies`.
    pub(super) proxy_urls: Vec<String>,
    pub(super) _servers: Vec<RunningSim>,
}

pub(super) fn destination_plan(seed: u64) -> FaultPlan {
    FaultPlan {
        server_error: 0.05,
        server_error_after_apply: 0.05,
        rate_limited: 0.02,
        retry_after_secs: 1,
        timeout: 0.01,
        timeout_hold: Duration::from_secs(6),
        seed,
    }
}

pub(super) fn workspace(people: usize, seed: u64) -> CioWorkspace {
    let mut rng = StdRng::seed_from_u64(seed);
    let now = chrono::Utc::now().timestamp();
    let mut ws = CioWorkspace::default();
    for i in 0..people {
        ws.people.push(SimPerson {
            id: Some(batch_id(i)),
            email: Some(batch_email(i)),
            cio_id: format!("cio_b{i:06}"),
            attributes: BTreeMap::from([(
                "lifetime_value".to_string(),
                rng.random_range(0..1_000u32).to_string(),
            )]),
            created_at: now - 86_400,
            unsubscribed: false,
        });
    }
    for (name, segment) in BATCH {
        let members = (0..people).filter(|_| rng.random::<f64>() < 0.4).collect();
        ws.segments.insert(
            segment,
            SimSegment {
                name: name.to_string(),
                description: String::new(),
                members,
            },
        );
    }
    ws
}

pub(super) async fn start_sims(scale: &Scale) -> Result<Sims> {
    let cio = cio_sim::start(CioSimConfig::new(
        CIO_KEY,
        workspace(scale.batch_people, scale.seed),
    ))
    .await?;
    let (ct_server, clevertap) = clevertap::start(ClevertapSimConfig {
        // CleverTap's answer time is not what this test is about.
        response_delay: None,
        ..ClevertapSimConfig::default()
    })
    .await?;
    if scale.faults {
        clevertap.set_unprocessed_share(0.01, scale.seed + 1);
    }
    // A brand in production runs an app past App Review: Meta's standard
    // access tier (190,000 + 40 × audiences calls an hour). The development
    // tier's 5,000 would be spent by the 100,000-change bench, whose drain
    // would then wait for the next hour.
    let (meta_server, meta) = MetaSim::start(MetaSimConfig {
        unmatched_share: 0.1,
        apply_delay: Duration::from_millis(300),
        ..MetaSimConfig::for_tier(AccessTier::Standard)
    })
    .await?;
    meta.create_audience(META_CART);
    meta.create_pixel(META_PIXEL);
    meta.create_audience(META_WINBACK);
    let mut dm = DataManagerSimConfig {
        processing_delay: Duration::from_millis(500),
        non_matching_share: 0.1,
        ..DataManagerSimConfig::default()
    };
    // Tokens expire every few seconds: the destination must refresh them.
    if scale.faults {
        dm.oauth.token_lifetime = Duration::from_secs(5);
    }
    let (google_server, google) = DataManagerSim::start(dm).await?;
    // Google's processing fails some members after accepting the request
    // (PARTIAL_SUCCESS, or FAILED when all did): by design, every 37th
    // batch person with a well-formed email.
    if scale.faults {
        let digests: Vec<String> = (0..scale.batch_people)
            .filter(|i| fails_at_google(*i))
            .map(|i| sha256_hex(&batch_email(i)))
            .collect();
        google.fail_members_with(&digests.iter().map(String::as_str).collect::<Vec<_>>());
    }
    google.create_user_list(GOOGLE_ACCOUNT, GOOGLE_PURCHASERS);
    google.create_user_list(GOOGLE_ACCOUNT, GOOGLE_VIP);
    let (hook_server, hook) = webhook_sim::start(WebhookSimConfig {
        secret: WEBHOOK_SECRET.into(),
        ..WebhookSimConfig::default()
    })
    .await?;
    let mut proxies = Vec::new();
    let mut proxy_urls = Vec::new();
    let mut servers = Vec::new();
    for (i, (name, upstream)) in [
        ("clevertap", &ct_server),
        ("meta", &meta_server),
        ("google", &google_server),
        ("hook", &hook_server),
    ]
    .into_iter()
    .enumerate()
    {
        let (server, state) = dataout_sim::faults::start(
            &upstream.base_url,
            if scale.faults {
                destination_plan(scale.seed + 10 + i as u64)
            } else {
                FaultPlan::default()
            },
        )
        .await?;
        proxies.push((name, state));
        proxy_urls.push(server.base_url.clone());
        servers.push(server);
    }
    servers.extend([ct_server, meta_server, google_server, hook_server]);
    Ok(Sims {
        cio,
        clevertap,
        meta,
        google,
        hook,
        proxies,
        proxy_urls,
        _servers: servers,
    })
}

pub(super) fn spec_text(ct: &str, meta: &str, google: &str, hook: &str) -> String {
    format!(
        r#"version: 1
destinations:
  clevertap:
    kind: clevertap
    region: us1
    account_id_env: CT_ACCOUNT
    passcode_env: CT_PASSCODE
    base_url: {ct}
    max_attempts: {MAX_ATTEMPTS}
  meta:
    kind: meta_audience
    api_version: v27.0
    ad_account_id: "1234567890"
    access_token_env: META_TOKEN
    base_url: {meta}
    max_attempts: {MAX_ATTEMPTS}
  google:
    kind: google_data_manager
    operating_account_id: "{GOOGLE_ACCOUNT}"
    service_account_key_env: GOOGLE_KEY
    token_url: {google}/token
    consent_ad_user_data: granted
    consent_ad_personalization: granted
    unknown_country_is_eea: false
    status_poll_after: 0
    base_url: {google}
    max_attempts: {MAX_ATTEMPTS}
  warehouse:
    kind: warehouse
    location: s3://fault-suite/warehouse
    max_attempts: {MAX_ATTEMPTS}
  capi:
    kind: meta_conversions
    api_version: v27.0
    pixel_id: "{META_PIXEL}"
    access_token_env: META_TOKEN
    action_source: system_generated
    base_url: {meta}
    max_attempts: {MAX_ATTEMPTS}
  hook:
    kind: webhook
    url: {hook}/hooks/dataout
    secret_env: HOOK_SECRET
    allow_private_network: true
    max_attempts: {HOOK_ATTEMPTS}
exports:
  cart:
    source: action
    mode: membership
    cadence: {{realtime: true}}
    identity: {{golden: id, fallbacks: [email]}}
    exit_on: [order_placed]
    suppress: [purchasers]
    destinations:
      meta:
        audience: "{META_CART}"
        keys: [email, extern_id]
      clevertap:
        audience: cio_cart
  purchasers:
    source: action
    mode: membership
    cadence: {{realtime: true}}
    identity: {{golden: id, fallbacks: [email]}}
    destinations:
      google:
        audience: "{GOOGLE_PURCHASERS}"
        keys: [email]
      warehouse:
        audience: purchasers
  newsletter:
    source: action
    mode: membership
    cadence: {{realtime: true}}
    identity: {{golden: id, fallbacks: [email]}}
    destinations:
      hook:
        audience: newsletter
      clevertap:
        audience: cio_newsletter
  vip:
    source: {{segment: 201}}
    mode: membership
    cadence: {{every: 1h}}
    identity: {{golden: id, fallbacks: [email]}}
    attributes:
      lifetime_value: number
    tiers:
      - {{name: high_value, attribute: lifetime_value, min: {VIP_HIGH_MIN}}}
    destinations:
      google:
        audience: "{GOOGLE_VIP}"
        keys: [email]
      clevertap:
        audience: cio_vip
        tier_audiences:
          high_value: {VIP_HIGH_PROPERTY}
      warehouse:
        audience: vip
  winback:
    source: {{segment: 202}}
    mode: membership
    cadence: {{every: 1h}}
    identity: {{golden: id, fallbacks: [email]}}
    destinations:
      meta:
        audience: "{META_WINBACK}"
        keys: [email, extern_id]
      hook:
        audience: winback
  orders:
    source: {{events: [order_placed]}}
    mode: events
    cadence: {{realtime: true}}
    identity: {{golden: id, fallbacks: [email]}}
    destinations:
      clevertap:
        audience: {CT_ORDER_EVENT}
      warehouse:
        audience: orders
  purchases:
    source: {{events: [order_placed]}}
    mode: conversions
    cadence: {{realtime: true}}
    identity: {{golden: id, fallbacks: [email]}}
    destinations:
      capi:
        audience: Purchase
events:
  order_placed:
    required: [order_id, total, currency]
    properties:
      order_id:
      total: number
      currency:
    value: total
    currency: currency
    order_id: order_id
"#
    )
}

/// One realtime webhook, in the order a person's changes happened: an
/// enter or exit of `export`, or (with `order`) an `order_placed` event,
/// which takes the person out of the cart (`exit_on`).
#[derive(Clone, Debug)]
pub(super) struct Webhook {
    pub(super) export: &'static str,
    pub(super) person: usize,
    pub(super) enter: bool,
    pub(super) sent_at_ms: i64,
    pub(super) order: Option<usize>,
}

/// The event name CleverTap gets for `order_placed`, and the Meta pixel.
pub(super) const CT_ORDER_EVENT: &str = "Placed Order";
pub(super) const META_PIXEL: &str = "555000901";

/// Order `n`'s id, and its total as Customer.io sends it (a string).
pub(super) fn order_id(n: usize) -> String {
    format!("ord_{n:06}")
}

pub(super) fn order_total(n: usize) -> String {
    format!("{}.{:02}", 10 + n % 190, n % 100)
}

/// The realtime changes, and each realtime export's final members by the
/// rules Customer.io and the spec set (a purchaser leaves the cart and
/// cannot re-enter it).
pub(super) fn realtime_plan(
    scale: &Scale,
) -> (Vec<Webhook>, BTreeMap<&'static str, BTreeSet<usize>>) {
    let mut rng = StdRng::seed_from_u64(scale.seed + 2);
    let base = chrono::Utc::now().timestamp_millis() - scale.realtime_changes as i64 - 1_000;
    let mut inside: BTreeMap<&'static str, BTreeSet<usize>> =
        REALTIME.iter().map(|e| (*e, BTreeSet::new())).collect();
    let mut out = Vec::with_capacity(scale.realtime_changes);
    for i in 0..scale.realtime_changes {
        let person = rng.random_range(0..scale.realtime_people);
        let u: f64 = rng.random();
        if u >= 0.9 {
            out.push(Webhook {
                export: "orders",
                person,
                enter: false,
                sent_at_ms: base + i as i64,
                order: Some(i),
            });
            if let Some(cart) = inside.get_mut("cart") {
                cart.remove(&person);
            }
            continue;
        }
        let export = if u < 0.45 {
            "cart"
        } else if u < 0.77 {
            "newsletter"
        } else {
            "purchasers"
        };
        let enter = export == "purchasers" || !inside[export].contains(&person);
        out.push(Webhook {
            export,
            person,
            enter,
            sent_at_ms: base + i as i64,
            order: None,
        });
        let set = inside.get_mut(export).expect("export");
        if enter {
            set.insert(person);
        } else {
            set.remove(&person);
        }
    }
    let purchasers = inside["purchasers"].clone();
    if let Some(cart) = inside.get_mut("cart") {
        cart.retain(|p| !purchasers.contains(p));
    }
    (out, inside)
}

pub(super) fn realtime_id(person: usize) -> String {
    format!("r{person:06}")
}

/// Every 29th realtime person has no email: Google (matched on email only)
/// cannot take them, and must say so per person.
pub(super) fn realtime_email(person: usize) -> Option<String> {
    (!person.is_multiple_of(29)).then(|| format!("{}@example.com", realtime_id(person)))
}

/// Whether Google's asynchronous processing fails batch person `i` (every
/// 37th with a well-formed email): the request answers PARTIAL_SUCCESS or
/// FAILED with a count per reason, never naming the member.
pub(super) fn fails_at_google(i: usize) -> bool {
    i.is_multiple_of(37) && !batch_email(i).contains("@@")
}

/// Every 31st batch person's email is malformed (two `@`): refused per
/// person by Google, accepted everywhere the id is enough.
pub(super) fn batch_email(i: usize) -> String {
    if i.is_multiple_of(31) {
        format!("b{i:06}@@example.com")
    } else {
        format!("b{i:06}@example.com")
    }
}

/// A batch person's email after the world changed it in `round` (every
/// change gives a new address; never for the people whose email is
/// malformed or whose Google processing fails by design, so those designs
/// stay as they are).
pub(super) fn changed_email(i: usize, round: usize) -> Option<String> {
    (!i.is_multiple_of(31) && !i.is_multiple_of(37))
        .then(|| format!("b{i:06}.r{round}@example.com"))
}

/// The tier of `vip` by lifetime value (CleverTap only): its threshold and
/// the profile property it sets.
pub(super) const VIP_HIGH_MIN: u32 = 500;
pub(super) const VIP_HIGH_PROPERTY: &str = "cio_vip_high";

pub(super) fn key_of(id: &str) -> String {
    format!("id:{id}")
}

pub(super) fn batch_id(i: usize) -> String {
    format!("b{i:06}")
}

/// A batch person as a round of runs found them: email and lifetime value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Profile {
    pub(super) email: Option<String>,
    pub(super) lifetime_value: Option<String>,
}

/// What the world did: the webhooks sent, and each batch export's segment
/// members (and every batch person's profile) before each round of runs.
#[derive(Default)]
pub(super) struct History {
    pub(super) webhooks: Vec<Webhook>,
    pub(super) rounds: BTreeMap<&'static str, Vec<BTreeSet<usize>>>,
    pub(super) profiles: Vec<Vec<Profile>>,
}

impl History {
    /// Note the batch segments' members as a round of runs starts.
    pub(super) fn start_round(&mut self, sims: &Sims) {
        let ws = sims.cio.handle.snapshot();
        for (export, segment) in BATCH {
            self.rounds
                .entry(export)
                .or_default()
                .push(ws.members(segment).into_iter().collect());
        }
        self.profiles.push(
            ws.people
                .iter()
                .map(|p| Profile {
                    email: p.email.clone(),
                    lifetime_value: p.attributes.get("lifetime_value").cloned(),
                })
                .collect(),
        );
    }

    /// Every email batch person `i` ever had, the current one last.
    pub(super) fn emails_of(&self, i: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for round in &self.profiles {
            if let Some(email) = round.get(i).and_then(|p| p.email.clone()) {
                if out.last() != Some(&email) {
                    out.push(email);
                }
            }
        }
        out
    }

    /// Everyone ever a member of `export`.
    fn ever(&self, export: &str) -> BTreeSet<usize> {
        match self.rounds.get(export) {
            Some(rounds) => rounds.iter().flatten().copied().collect(),
            None => self
                .webhooks
                .iter()
                .filter(|w| w.export == export && w.enter)
                .map(|w| w.person)
                .collect(),
        }
    }

    /// Who a destination leaves out without naming them, by the world's
    /// design: the batch people whose Google processing fails (the API
    /// counts them per reason, so nothing can log who), if that fault is on.
    pub(super) fn unnamed_by_design(
        &self,
        faults: bool,
    ) -> BTreeMap<(&'static str, &'static str), BTreeSet<String>> {
        let mut out = BTreeMap::new();
        if faults {
            out.insert(
                ("vip", "google"),
                self.ever("vip")
                    .into_iter()
                    .filter(|i| fails_at_google(*i))
                    .map(|i| key_of(&batch_id(i)))
                    .collect(),
            );
        }
        out
    }

    /// Who each destination must refuse or leave unmatched, by the world's
    /// design (person keys by (export, destination)): Google matches on
    /// email only, so the realtime people without one (every 29th) and the
    /// batch people whose email is malformed (every 31st) who were ever
    /// members. Everyone else is taken everywhere.
    pub(super) fn refused_by_design(
        &self,
    ) -> BTreeMap<(&'static str, &'static str), BTreeSet<String>> {
        let mut out = BTreeMap::new();
        out.insert(
            ("purchasers", "google"),
            self.ever("purchasers")
                .into_iter()
                .filter(|p| realtime_email(*p).is_none())
                .map(|p| key_of(&realtime_id(p)))
                .collect(),
        );
        out.insert(
            ("vip", "google"),
            self.ever("vip")
                .into_iter()
                .filter(|i| batch_email(*i).contains("@@"))
                .map(|i| key_of(&batch_id(i)))
                .collect(),
        );
        out
    }
}
