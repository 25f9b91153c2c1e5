//! Which names a certificate may carry.
//!
//! A [`SanPolicy`] is what an operator allows a named certificate to name: DNS suffixes and
//! IP ranges. [`never_for_a_node`] names what is never put in a certificate a node asks
//! for, whatever the policy: names that mean "this machine" to whoever resolves them
//! (`localhost`, loopback addresses) and wildcards, which stand for every name at once.
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::certificate::SubjectAltName;

/// An IP range: an address and a prefix length (`10.0.0.0/8`, `fd00::/8`); a plain address
/// is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_equal(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_equal(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` bits of `a` and `b` are equal.
fn prefix_equal(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (whole, rest) = (usize::from(prefix / 8), prefix % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[whole] & mask == b[whole] & mask
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP range such as 10.0.0.0/8 or fd00::/8"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The names a named certificate may carry. An empty list leaves that kind of name
/// unrestricted: a policy with DNS suffixes only restricts DNS names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SanPolicy {
    /// A DNS name must equal one of these or end with `.` and one of these.
    pub dns_suffixes: Vec<String>,
    /// An IP address must lie in one of these.
    pub cidrs: Vec<Cidr>,
}

impl SanPolicy {
    /// A policy from its stored or typed form; suffixes are lowercased and lose a leading `.`.
    pub fn new(dns_suffixes: &[String], cidrs: &[String]) -> Result<Self, String> {
        let dns_suffixes = dns_suffixes
            .iter()
            .map(|s| {
                let suffix = s.trim().trim_start_matches('.').to_ascii_lowercase();
                match suffix.parse::<SubjectAltName>() {
                    Ok(SubjectAltName::Dns(d)) if !d.starts_with('*') => Ok(d),
                    _ => Err(format!(
                        "allowed DNS suffix {s:?} is not a DNS name such as nodes.example.com"
                    )),
                }
            })
            .collect::<Result<_, _>>()?;
        let cidrs = cidrs.iter().map(|c| c.parse()).collect::<Result<_, _>>()?;
        Ok(SanPolicy {
            dns_suffixes,
            cidrs,
        })
    }

    /// Whether `san` is allowed; the error says what is allowed instead.
    pub fn check(&self, san: &SubjectAltName) -> Result<(), String> {
        match san {
            SubjectAltName::Dns(name) if !self.dns_suffixes.is_empty() => {
                let name = name.to_ascii_lowercase();
                let allowed = self.dns_suffixes.iter().any(|suffix| {
                    name == *suffix
                        || name
                            .strip_suffix(suffix.as_str())
                            .is_some_and(|head| head.ends_with('.'))
                });
                if allowed {
                    Ok(())
                } else {
                    Err(format!(
                        "{san} is outside the allowed DNS suffixes ({})",
                        self.dns_suffixes.join(", ")
                    ))
                }
            }
            SubjectAltName::Ip(ip) if !self.cidrs.is_empty() => {
                if self.cidrs.iter().any(|c| c.contains(*ip)) {
                    Ok(())
                } else {
                    let ranges: Vec<String> = self.cidrs.iter().map(ToString::to_string).collect();
                    Err(format!(
                        "{san} is outside the allowed IP ranges ({})",
                        ranges.join(", ")
                    ))
                }
            }
            _ => Ok(()),
        }
    }
}

/// Why `san` is never put in a certificate a node asks for, or `None` when it may be:
/// wildcards, `localhost` and its subdomains, and loopback, unspecified, link-local and
/// multicast addresses.
pub fn never_for_a_node(san: &SubjectAltName) -> Option<&'static str> {
    match san {
        SubjectAltName::Dns(name) => {
            let name = name.to_ascii_lowercase();
            if name.contains('*') {
                Some("a wildcard stands for every name in its domain")
            } else if name == "localhost" || name.ends_with(".localhost") {
                Some("localhost names whatever machine resolves it")
            } else {
                None
            }
        }
        SubjectAltName::Ip(ip) => {
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*ip, IpAddr::V4),
                v4 => *v4,
            };
            let link_local = match ip {
                IpAddr::V4(v4) => v4.is_link_local(),
                IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
            };
            if ip.is_loopback() {
                Some("a loopback address names whatever machine connects to it")
            } else if ip.is_unspecified() || ip.is_multicast() || link_local {
                Some("an unspecified, multicast or link-local address names no one host")
            } else {
                None
            }
        }
        SubjectAltName::Email(_) | SubjectAltName::Uri(_) => None,
    }
}
