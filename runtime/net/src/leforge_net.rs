//! Server-side request forgery guard. A URL that a caller (a `callback_url`) or a third-party
//! ForgeHook (`http-fetch`) chooses must not reach the server's own loopback services, the
//! private network it sits in, or the cloud metadata address. Checking the host name is not
//! enough: a granted name can resolve to 127.0.0.1, and a name can resolve differently at
//! check time and at connect time (DNS rebinding). So the check runs on addresses, inside
//! the HTTP client's resolver: the addresses that pass are the ones connected to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why an address may not be reached, or `None` when it is a public unicast address.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            // `::ffff:127.0.0.1` reaches 127.0.0.1.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            forbidden_v6(v6)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        // 169.254.169.254 is the cloud metadata service.
        Some("link-local")
    } else if ip.is_unspecified() || a == 0 {
        // 0.0.0.0/8 reaches the local host on Linux.
        Some("unspecified")
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some("multicast or broadcast")
    } else if a == 100 && (64..128).contains(&b) {
        // Carrier-grade NAT space: private in practice.
        Some("private")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first & 0xfe00 == 0xfc00 {
        Some("private")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if let Some(v4) = ip.to_ipv4() {
        // The deprecated IPv4-compatible form `::a.b.c.d`.
        forbidden_v4(v4).filter(|_| first == 0)
    } else {
        None
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Refused {
    #[error("host '{host}' resolves to a {class} address ({ip}), which is not allowed")]
    Forbidden {
        host: String,
        ip: IpAddr,
        class: &'static str,
    },
    #[error("host '{host}' could not be resolved: {reason}")]
    Unresolvable { host: String, reason: String },
}

/// Host names an operator allowed to resolve to any address (compared without case).
#[derive(Debug, Clone, Default)]
pub struct PrivateAllowed(Arc<Vec<String>>);

impl PrivateAllowed {
    pub fn new(hosts: impl IntoIterator<Item = String>) -> Self {
        PrivateAllowed(Arc::new(
            hosts
                .into_iter()
                .map(|h| bare(&h).to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        ))
    }

    pub fn allows(&self, host: &str) -> bool {
        let host = bare(host);
        self.0.iter().any(|h| h.eq_ignore_ascii_case(host))
    }
}

/// IPv6 literals come bracketed from URL parsers; lists are written either way.
fn bare(host: &str) -> &str {
    host.trim().trim_start_matches('[').trim_end_matches(']')
}

/// Checks a host that is a literal address (bracketed or not); a name passes, for the
/// resolver to check. The guarded resolver never sees literals, so a client that uses it
/// calls this on every URL's host before sending.
pub fn check_literal(host: &str, allowed: &PrivateAllowed) -> Result<(), Refused> {
    let name = bare(host);
    let Ok(ip) = name.parse::<IpAddr>() else {
        return Ok(());
    };
    if allowed.allows(name) {
        return Ok(());
    }
    match forbidden(ip) {
        Some(class) => Err(Refused::Forbidden {
            host: name.to_string(),
            ip,
            class,
        }),
        None => Ok(()),
    }
}

/// Checks the addresses a host resolves to (or the literal address it is), as a request
/// would see them. An allow-listed host passes whatever it resolves to.
pub async fn check_host(
    host: &str,
    port: u16,
    allowed: &PrivateAllowed,
) -> Result<Vec<SocketAddr>, Refused> {
    let name = bare(host);
    if let Ok(ip) = name.parse::<IpAddr>() {
        check_literal(name, allowed)?;
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
        .await
        .map_err(|e| Refused::Unresolvable {
            host: name.to_string(),
            reason: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(Refused::Unresolvable {
            host: name.to_string(),
            reason: "no addresses".into(),
        });
    }
    if !allowed.allows(name) {
        // Every address must pass: a client may try any of them.
        for a in &addrs {
            if let Some(class) = forbidden(a.ip()) {
                return Err(Refused::Forbidden {
                    host: name.to_string(),
                    ip: a.ip(),
                    class,
                });
            }
        }
    }
    Ok(addrs)
}

/// Checks a URL's host: its literal address, or what its name resolves to now.
pub async fn check_url(url: &reqwest::Url, allowed: &PrivateAllowed) -> Result<(), Refused> {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    check_host(host, port, allowed).await.map(|_| ())
}

/// A resolver for reqwest that refuses forbidden addresses at connect time. Literal
/// addresses in URLs never reach a resolver, so callers check those with [`check_url`]
/// before sending.
#[derive(Debug, Clone, Default)]
pub struct GuardedResolver {
    allowed: PrivateAllowed,
}

impl GuardedResolver {
    pub fn new(allowed: PrivateAllowed) -> Arc<Self> {
        Arc::new(GuardedResolver { allowed })
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            // Port 0: reqwest sets the real port on the addresses it is given.
            let addrs = check_host(&host, 0, &allowed).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The message of an HTTP client error with its causes, so that a refusal by the resolver
/// reads as the reason rather than as "error sending request".
pub use leforge_core::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_classes() {
        let no = |s: &str| forbidden(s.parse().unwrap());
        assert_eq!(no("127.0.0.1"), Some("loopback"));
        assert_eq!(no("127.9.9.9"), Some("loopback"));
        assert_eq!(no("10.1.2.3"), Some("private"));
        assert_eq!(no("172.16.0.1"), Some("private"));
        assert_eq!(no("192.168.1.1"), Some("private"));
        assert_eq!(no("169.254.169.254"), Some("link-local"));
        assert_eq!(no("0.0.0.0"), Some("unspecified"));
        assert_eq!(no("224.0.0.1"), Some("multicast or broadcast"));
        assert_eq!(no("::1"), Some("loopback"));
        assert_eq!(no("::"), Some("unspecified"));
        assert_eq!(no("fd00::1"), Some("private"));
        assert_eq!(no("fe80::1"), Some("link-local"));
        assert_eq!(no("ff02::1"), Some("multicast"));
        assert_eq!(no("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(no("::ffff:169.254.169.254"), Some("link-local"));
        assert_eq!(no("8.8.8.8"), None);
        assert_eq!(no("172.32.0.1"), None);
        assert_eq!(no("2606:4700::1111"), None);
    }

    #[tokio::test]
    async fn urls_in_numeric_forms_are_checked_as_addresses() {
        let none = PrivateAllowed::default();
        for url in [
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://[::1]:8080/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost:9/",
        ] {
            let parsed = reqwest::Url::parse(url).unwrap();
            let err = check_url(&parsed, &none).await.unwrap_err();
            assert!(matches!(err, Refused::Forbidden { .. }), "{url}: {err:?}");
        }
        let listed = PrivateAllowed::new(["localhost".to_string(), "[::1]".to_string()]);
        assert!(check_url(
            &reqwest::Url::parse("http://localhost:9/").unwrap(),
            &listed
        )
        .await
        .is_ok());
        assert!(
            check_url(&reqwest::Url::parse("http://[::1]:9/").unwrap(), &listed)
                .await
                .is_ok()
        );
        assert!(
            check_url(&reqwest::Url::parse("http://8.8.8.8/").unwrap(), &none)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_before_connecting() {
        let client = reqwest::Client::builder()
            .dns_resolver(GuardedResolver::new(PrivateAllowed::default()))
            .build()
            .unwrap();
        let err = client.get("http://localhost:9/").send().await.unwrap_err();
        let message = error_chain(&err);
        assert!(message.contains("loopback"), "{message}");
    }
}
