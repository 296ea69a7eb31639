//! The webhook destination's guard against server-side request forgery.
//!
//! A webhook URL is the one address in the spec that points anywhere: a
//! mistaken or hostile spec could aim it at the Lambda's own metadata
//! endpoint (169.254.169.254), a VPC-internal service or loopback, and we
//! would POST our signed member data there. So unless the destination sets
//! `allow_private_network: true` (local testing against a receiver on this
//! machine), a webhook URL must be `https://`, its host must not be
//! `localhost` or a literal non-public address, every address its name
//! resolves to must be public (checked at every connection, so a name that
//! later re-points at a private address is refused then), and redirects are
//! not followed (a 3xx is the receiver's answer, refused as permanent).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Why `url` may not be called without `allow_private_network`, or `None`.
pub fn refuse_private_url(url: &str) -> Option<String> {
    let parsed = match Url::parse(url) {
        Ok(u) => u,
        Err(e) => return Some(format!("not a URL ({e})")),
    };
    if parsed.scheme() != "https" {
        return Some(format!(
            "must be https:// (it is {}://); set allow_private_network: true for a local test receiver only",
            parsed.scheme()
        ));
    }
    let private = match parsed.host() {
        None => return Some("has no host".to_string()),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            (d == "localhost" || d.ends_with(".localhost"))
                .then(|| format!("`{d}` is this machine"))
        }
        Some(url::Host::Ipv4(ip)) => {
            (!is_public(IpAddr::V4(ip))).then(|| format!("{ip} is not a public address"))
        }
        Some(url::Host::Ipv6(ip)) => {
            (!is_public(IpAddr::V6(ip))).then(|| format!("{ip} is not a public address"))
        }
    };
    private
        .map(|why| format!("{why}; set allow_private_network: true for a local test receiver only"))
}

/// A globally routable unicast address: not loopback, private, link-local
/// (cloud metadata lives there), shared (CGNAT), unspecified, broadcast,
/// documentation, benchmarking, reserved or multicast, nor an IPv6 form of
/// one of those (mapped, unique local, link-local).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let seg0 = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                // 64:ff9b::/96 NAT64 can reach private IPv4 behind it;
                // 2001:db8::/32 is documentation.
                || (seg0 == 0x64 && v6.segments()[1] == 0xff9b)
                || (seg0 == 0x2001 && v6.segments()[1] == 0x0db8)
                || v6 == Ipv6Addr::from_bits(1))
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

/// Resolves through the system resolver, then refuses the name if any of
/// its addresses is not public (a name with one private address among
/// public ones is refused whole: we cannot pick which the connection uses).
#[derive(Debug, Default)]
pub struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            check_resolved(&host, &addrs)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// `Err` naming the host when any of its addresses is not public.
pub fn check_resolved(host: &str, addrs: &[SocketAddr]) -> Result<(), GuardError> {
    if addrs.is_empty() {
        return Err(GuardError(format!("`{host}` resolves to no address")));
    }
    match addrs.iter().find(|a| !is_public(a.ip())) {
        Some(bad) => Err(GuardError(format!(
            "`{host}` resolves to {}, which is not a public address (allow_private_network is off)",
            bad.ip()
        ))),
        None => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GuardError(String);

/// The webhook's HTTP client when the guard is on: public addresses only,
/// no redirects.
pub fn guarded_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .dns_resolver(Arc::new(PublicOnlyResolver))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_private_loopback_and_metadata_addresses_are_refused() {
        for url in [
            "https://127.0.0.1/hook",
            "https://10.1.2.3/hook",
            "https://172.16.0.9/hook",
            "https://192.168.1.1/hook",
            "https://169.254.169.254/latest/meta-data/",
            "https://100.64.0.1/hook",
            "https://0.0.0.0/hook",
            "https://[::1]/hook",
            "https://[fd00::1]/hook",
            "https://[fe80::1]/hook",
            "https://[::ffff:10.0.0.1]/hook",
            "https://[64:ff9b::a00:1]/hook",
            "https://localhost:8443/hook",
            "https://api.localhost/hook",
        ] {
            let why = refuse_private_url(url);
            assert!(
                why.as_deref()
                    .is_some_and(|w| w.contains("allow_private_network")),
                "{url}: {why:?}"
            );
        }
    }

    #[test]
    fn plain_http_is_refused_and_public_https_passes() {
        assert!(refuse_private_url("http://hooks.example.com/x")
            .is_some_and(|w| w.contains("https://")));
        assert_eq!(
            refuse_private_url("https://hooks.example.com/dataout"),
            None
        );
        assert_eq!(refuse_private_url("https://93.184.215.14/x"), None);
        assert_eq!(refuse_private_url("https://[2606:4700::1111]/x"), None);
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_at_connection() {
        // `localhost` comes from /etc/hosts: no network needed.
        let err = PublicOnlyResolver
            .resolve("localhost".parse().expect("name"))
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains("not a public address"), "{err}");
    }

    #[test]
    fn one_private_address_among_public_ones_refuses_the_name() {
        let addrs: Vec<SocketAddr> = ["93.184.215.14:0", "10.0.0.7:0"]
            .iter()
            .map(|a| a.parse().expect("addr"))
            .collect();
        assert!(check_resolved("mixed.example", &addrs).is_err());
        assert!(check_resolved("public.example", &addrs[..1]).is_ok());
    }
}
