//! Where webhooks may go: the optional refusal of private, loopback and link-local targets
//! (`"rules": {"deny_private_targets": true}`), against server-side request forgery: a rule
//! author who may not reach the internal network should not make driftdb reach it for them.
//!
//! It is off by default (webhook receivers inside the network — a retraining pipeline, a
//! serving layer — are the common case, and the tests use receivers on loopback). When on:
//! rules naming such a host literally (an IP address, `localhost`) are refused at creation,
//! and at delivery the resolver drops private addresses, so a name that resolves (or later
//! re-resolves) to one fails instead of being called. Redirects are never followed anyway.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use driftdb_engine::rules::validate_webhook_url;

/// Whether `ip` is not a public unicast address: loopback, private (RFC 1918, unique local),
/// link-local (cloud metadata endpoints live there), carrier-grade NAT, unspecified,
/// multicast, broadcast, documentation ranges, or an IPv4-mapped/compatible form of those.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_v4(v4);
            }
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
                || (seg[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible ::a.b.c.d
        }
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // carrier-grade NAT 100.64/10
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240
}

/// The host of a literal target when it is private: an IP address (IPv6 in brackets) or a
/// `localhost` name. `None` for names that need resolving (checked at delivery).
pub fn private_literal(url: &str) -> Option<String> {
    let host = validate_webhook_url(url).ok()?.host;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare == "localhost" || bare.ends_with(".localhost") {
        return Some(host);
    }
    let ip: IpAddr = bare.parse().ok()?;
    is_private(ip).then_some(host)
}

/// A resolver for the webhook client that keeps only public addresses; a name with none left
/// fails to resolve, so the delivery fails (and is retried or dead-lettered) without a request
/// reaching the private address.
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                found.into_iter().filter(|a| !is_private(a.ip())).collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves only to private addresses, which this server does not call (rules.deny_private_targets)"
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_public_addresses() {
        for p in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(p.parse().unwrap()), "{p}");
        }
        for p in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_private(p.parse().unwrap()), "{p}");
        }
    }

    #[test]
    fn literal_targets() {
        assert_eq!(
            private_literal("http://127.0.0.1:9000/hook"),
            Some("127.0.0.1".into())
        );
        assert_eq!(
            private_literal("http://[::1]:9000/hook"),
            Some("[::1]".into())
        );
        assert_eq!(
            private_literal("https://LOCALHOST/x"),
            Some("localhost".into())
        );
        assert_eq!(
            private_literal("http://169.254.169.254/latest/meta-data"),
            Some("169.254.169.254".into())
        );
        assert_eq!(private_literal("https://hooks.slack.com/services/x"), None);
        assert_eq!(private_literal("https://8.8.8.8/x"), None);
    }
}
