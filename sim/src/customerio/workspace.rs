//! The simulated workspace: people, their attributes and segments.

use std::collections::{BTreeMap, BTreeSet};

use super::DAY;
use super::{
    SEGMENT_BROWSE_INTENT, SEGMENT_CART_ABANDONERS, SEGMENT_CHECKOUT_STARTERS, SEGMENT_LAPSED_VIPS,
    SEGMENT_RECENT_PURCHASERS, SEGMENT_REPLENISHMENT, SEGMENT_VIP_TOP_LTV,
};

/// A person in the simulated workspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimPerson {
    /// `None` for people known only by `cio_id` and email.
    pub id: Option<String>,
    pub email: Option<String>,
    /// Set by Customer.io, immutable, always present.
    pub cio_id: String,
    /// Profile attributes, all strings (as the App API returns them).
    pub attributes: BTreeMap<String, String>,
    /// Unix seconds the profile was created (used for `timestamps`).
    pub created_at: i64,
    pub unsubscribed: bool,
}

/// A segment and its members (indexes into [`CioWorkspace::people`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimSegment {
    pub name: String,
    pub description: String,
    /// Ordered by person index: the membership paging order.
    pub members: BTreeSet<usize>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CioWorkspace {
    pub people: Vec<SimPerson>,
    pub segments: BTreeMap<u64, SimSegment>,
}

impl CioWorkspace {
    /// Members of a segment (person indexes), empty for an unknown segment.
    pub fn members(&self, segment: u64) -> Vec<usize> {
        self.segments
            .get(&segment)
            .map(|s| s.members.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Index of the person with this `id`.
    pub fn index_of_id(&self, id: &str) -> Option<usize> {
        self.people.iter().position(|p| p.id.as_deref() == Some(id))
    }

    /// Index of the person with this `cio_id`.
    pub fn index_of_cio_id(&self, cio_id: &str) -> Option<usize> {
        self.people.iter().position(|p| p.cio_id == cio_id)
    }

    /// Index of the person with this email (case and surrounding spaces ignored).
    pub fn index_of_email(&self, email: &str) -> Option<usize> {
        let wanted = email.trim().to_lowercase();
        self.people.iter().position(|p| {
            p.email
                .as_deref()
                .is_some_and(|e| e.trim().to_lowercase() == wanted)
        })
    }

    /// Re-evaluate the demo segments (101 to 107) from the people's
    /// attributes at `now_secs`, e.g. after a test changed attributes.
    pub fn recompute_demo_segments(&mut self, now_secs: i64) {
        let mut carts = BTreeSet::new();
        let mut recent = BTreeSet::new();
        let mut lapsed = BTreeSet::new();
        let mut replenish = BTreeSet::new();
        let mut checkout = BTreeSet::new();
        let mut browse = BTreeSet::new();
        let mut ltv: Vec<(f64, usize)> = Vec::new();
        for (i, p) in self.people.iter().enumerate() {
            let num = |k: &str| p.attributes.get(k).and_then(|v| v.parse::<i64>().ok());
            let last_order = num("last_order_at");
            let cart = num("cart_started_at");
            let recent_order = last_order.is_some_and(|t| t > now_secs - 30 * DAY && t <= now_secs);
            if recent_order {
                recent.insert(i);
            }
            let recent_cart = cart.is_some_and(|c| c > now_secs - DAY && c <= now_secs);
            let ordered_since = matches!((last_order, cart), (Some(o), Some(c)) if o >= c);
            if recent_cart && !ordered_since && !recent_order {
                carts.insert(i);
            }
            let vip = matches!(
                p.attributes.get("vip_tier").map(String::as_str),
                Some("gold" | "silver")
            );
            if vip && last_order.is_some_and(|t| t < now_secs - 90 * DAY) {
                lapsed.insert(i);
            }
            if last_order.is_some_and(|t| t >= now_secs - 40 * DAY && t <= now_secs - 25 * DAY) {
                replenish.insert(i);
            }
            let checkout_at = num("checkout_started_at");
            let ordered_after_checkout =
                matches!((last_order, checkout_at), (Some(o), Some(c)) if o >= c);
            if checkout_at.is_some_and(|c| c > now_secs - DAY && c <= now_secs)
                && !ordered_after_checkout
                && !recent_order
            {
                checkout.insert(i);
            }
            if num("product_views_7d").is_some_and(|v| v >= 2) && !recent_order {
                browse.insert(i);
            }
            let value = p
                .attributes
                .get("lifetime_value")
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            if value > 0.0 {
                ltv.push((value, i));
            }
        }
        // The top 10 % of customers by lifetime value (a lookalike seed).
        ltv.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let top: BTreeSet<usize> = ltv
            .iter()
            .take(ltv.len().div_ceil(10))
            .map(|(_, i)| *i)
            .collect();
        for (id, name, description, members) in [
            (
                SEGMENT_CART_ABANDONERS,
                "Cart abandoners (24h)",
                "Started a cart in the last 24 hours and did not order",
                carts,
            ),
            (
                SEGMENT_RECENT_PURCHASERS,
                "Recent purchasers (30d)",
                "Ordered in the last 30 days",
                recent,
            ),
            (
                SEGMENT_LAPSED_VIPS,
                "Lapsed VIPs",
                "Gold or silver tier, no order for more than 90 days",
                lapsed,
            ),
            (
                SEGMENT_REPLENISHMENT,
                "Replenishment window",
                "Last order 25 to 40 days ago",
                replenish,
            ),
            (
                SEGMENT_VIP_TOP_LTV,
                "Top 10 % by lifetime value",
                "The customers with the highest lifetime value, 10 % of those who ordered",
                top,
            ),
            (
                SEGMENT_CHECKOUT_STARTERS,
                "Checkout starters (24h)",
                "Started checkout in the last 24 hours and did not order",
                checkout,
            ),
            (
                SEGMENT_BROWSE_INTENT,
                "Browse intent",
                "Viewed products 2+ times in 7 days, no order in 30 days",
                browse,
            ),
        ] {
            self.segments.insert(
                id,
                SimSegment {
                    name: name.to_string(),
                    description: description.to_string(),
                    members,
                },
            );
        }
    }
}
