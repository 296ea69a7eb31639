//! The App API's response bodies: pure parsers (a body in, typed data out)
//! and the wire types they read. The client calls the same code after each
//! request; `fuzz/` feeds them arbitrary bytes.

use super::*;

/// A JSON body as `T`; a syntax or shape error is `Malformed`.
pub(super) fn decode<T: DeserializeOwned>(
    endpoint: &'static str,
    bytes: &[u8],
) -> Result<T, AppApiError> {
    serde_json::from_slice(bytes).map_err(|e| AppApiError::Malformed {
        endpoint,
        line: e.line(),
        column: e.column(),
        source: e,
    })
}

/// A membership page (`GET /v1/segments/{id}/membership`) from its body, as
/// asked for with the paging token `start`: members without any identifier
/// are skipped, a blank `next` ends paging, a `next` equal to `start` is
/// refused. `segment_id` only names the segment in the log.
pub fn parse_membership_page(
    segment_id: u64,
    body: &[u8],
    start: Option<&str>,
) -> Result<MembershipPage, AppApiError> {
    page_from_wire(segment_id, decode("membership", body)?, start)
}

pub(super) fn page_from_wire(
    segment_id: u64,
    body: WireMembership,
    start: Option<&str>,
) -> Result<MembershipPage, AppApiError> {
    let people: Vec<Identifiers> = if body.identifiers.is_empty() {
        body.ids
            .into_iter()
            .flatten()
            .map(|id| Identifiers {
                id: Some(id),
                ..Identifiers::default()
            })
            .collect()
    } else {
        body.identifiers
            .into_iter()
            .map(WireIdentifiers::into_ids)
            .collect()
    };
    let unusable = people.iter().filter(|p| p.person_key().is_none()).count();
    if unusable > 0 {
        tracing::warn!(
            segment_id,
            unusable,
            "members without any identifier skipped"
        );
    }
    let next = body.next.filter(|n| !n.trim().is_empty());
    if next.is_some() && next.as_deref() == start {
        // The same token again would page forever.
        return Err(AppApiError::Refused {
            endpoint: "membership",
            status: 200,
            reason: "paging token did not advance",
        });
    }
    Ok(MembershipPage {
        people: people
            .into_iter()
            .filter(|p| p.person_key().is_some())
            .collect(),
        next,
    })
}

/// One person's attributes (`GET /v1/customers/{id}/attributes`) from the
/// body, for the person looked up as `asked`.
pub fn parse_customer_attributes(asked: &Identifiers, body: &[u8]) -> Result<Person, AppApiError> {
    let body: WirePerson = decode("customer_attributes", body)?;
    Ok(to_person(asked, body.customer))
}

/// The people a bulk attributes answer (`POST /v1/customers/attributes`)
/// matches, in the order of `people`. As the client sends it, the request
/// looks everyone up by one id type: the one chosen for the first person
/// that has any (`id`, else `cio_id`, else email); people for whom another
/// type is chosen were not asked for. Answers for nobody asked are dropped.
pub fn parse_bulk_attributes(
    people: &[Identifiers],
    body: &[u8],
) -> Result<Vec<Person>, AppApiError> {
    let answer: WireBulk = decode("bulk_attributes", body)?;
    let Some(id_type) = people
        .iter()
        .find_map(|ids| IdType::choose(ids).map(|(t, _)| t))
    else {
        return Ok(Vec::new());
    };
    let chunk: Vec<(usize, String)> = people
        .iter()
        .enumerate()
        .filter_map(|(i, ids)| match IdType::choose(ids) {
            Some((t, key)) if t == id_type => Some((i, key)),
            _ => None,
        })
        .collect();
    let mut found = Vec::with_capacity(chunk.len());
    match_bulk(id_type, &chunk, people, answer, &mut found);
    found.sort_by_key(|(i, _)| *i);
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Pairs a bulk answer with the people of `chunk` (index into `people`,
/// lookup key), pushing each match to `out`.
pub(super) fn match_bulk(
    id_type: IdType,
    chunk: &[(usize, String)],
    people: &[Identifiers],
    answer: WireBulk,
    out: &mut Vec<(usize, Person)>,
) {
    let mut wanted: HashMap<String, usize> = chunk
        .iter()
        .map(|(i, k)| (id_type.match_key(k), *i))
        .collect();
    let mut unmatched = 0usize;
    for entry in answer.customers {
        let customer = entry.into_customer();
        let found = customer
            .key(id_type)
            .and_then(|k| wanted.remove(&id_type.match_key(&k)));
        match found.and_then(|i| people.get(i).map(|ids| (i, ids))) {
            Some((i, asked)) => out.push((i, to_person(asked, customer))),
            None => unmatched += 1,
        }
    }
    if unmatched > 0 {
        tracing::debug!(
            unmatched,
            "bulk attributes answered people we did not ask for"
        );
    }
}

// ---------------------------------------------------------------- wire types

/// A string field that may come as a string, a number or null; blank → None.
pub(super) fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(value_to_string(&Value::deserialize(d)?))
}

pub(super) fn value_to_string(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => return None,
        other => other.to_string(),
    };
    (!s.trim().is_empty()).then_some(s)
}

pub(super) fn lenient_strings<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<Option<String>>, D::Error> {
    let values: Option<Vec<Value>> = Option::deserialize(d)?;
    Ok(values
        .unwrap_or_default()
        .iter()
        .map(value_to_string)
        .collect())
}

/// `GET /v1/customers/{id}/attributes`.
#[derive(Deserialize)]
pub(super) struct WirePerson {
    pub(super) customer: WireCustomer,
}

/// `POST /v1/customers/attributes`.
#[derive(Deserialize)]
pub(super) struct WireBulk {
    #[serde(default)]
    pub(super) customers: Vec<BulkEntry>,
}

#[derive(Deserialize)]
pub(super) struct WireMembership {
    #[serde(default, deserialize_with = "lenient_strings")]
    pub(super) ids: Vec<Option<String>>,
    #[serde(default, deserialize_with = "nullable_vec")]
    pub(super) identifiers: Vec<WireIdentifiers>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(super) next: Option<String>,
}

pub(super) fn nullable_vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Clone, Default, Deserialize)]
pub(super) struct WireIdentifiers {
    #[serde(default, deserialize_with = "lenient_string")]
    pub(super) id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(super) email: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub(super) cio_id: Option<String>,
}

impl WireIdentifiers {
    pub(super) fn into_ids(self) -> Identifiers {
        Identifiers {
            id: self.id,
            email: self.email,
            cio_id: self.cio_id,
            phone: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum BulkEntry {
    Wrapped { customer: WireCustomer },
    Bare(WireCustomer),
}

impl BulkEntry {
    pub(super) fn into_customer(self) -> WireCustomer {
        match self {
            BulkEntry::Wrapped { customer } | BulkEntry::Bare(customer) => customer,
        }
    }
}

#[derive(Default, Deserialize)]
pub(super) struct WireCustomer {
    #[serde(default, deserialize_with = "lenient_string")]
    pub(super) id: Option<String>,
    #[serde(default, deserialize_with = "nullable_map")]
    pub(super) attributes: serde_json::Map<String, Value>,
    #[serde(default)]
    pub(super) identifiers: Option<WireIdentifiers>,
}

pub(super) fn nullable_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<serde_json::Map<String, Value>, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_default())
}

impl WireCustomer {
    pub(super) fn attr(&self, name: &str) -> Option<String> {
        self.attributes.get(name).and_then(value_to_string)
    }

    /// What the answer says about the identifier of `id_type`.
    pub(super) fn key(&self, id_type: IdType) -> Option<String> {
        let from_identifiers =
            |f: fn(&WireIdentifiers) -> Option<String>| self.identifiers.as_ref().and_then(f);
        match id_type {
            IdType::Id => self
                .id
                .clone()
                .or_else(|| from_identifiers(|i| i.id.clone()))
                .or_else(|| self.attr("id")),
            IdType::CioId => from_identifiers(|i| i.cio_id.clone()).or_else(|| self.attr("cio_id")),
            IdType::Email => from_identifiers(|i| i.email.clone()).or_else(|| self.attr("email")),
        }
    }
}

/// An attribute value as a string (the API sends strings; anything else is
/// rendered as JSON text). Null means unset.
pub(super) fn attribute_string(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A person from what we asked for plus what came back; every attribute
/// value becomes a JSON string.
pub(super) fn to_person(asked: &Identifiers, customer: WireCustomer) -> Person {
    let mut ids = Identifiers {
        id: asked.id().map(str::to_string),
        email: asked.email().map(str::to_string),
        cio_id: asked.cio_id().map(str::to_string),
        phone: asked.phone().map(str::to_string),
    };
    let answered = Identifiers {
        id: customer.key(IdType::Id),
        email: customer.key(IdType::Email),
        cio_id: customer.key(IdType::CioId),
        phone: customer.attr("phone"),
    };
    ids.merge_missing(&answered);
    let attributes: Attributes = customer
        .attributes
        .iter()
        .filter_map(|(k, v)| attribute_string(v).map(|s| (k.clone(), Value::String(s))))
        .collect();
    Person { ids, attributes }
}
