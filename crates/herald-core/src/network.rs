//! IP networks, and which addresses count as internal: outbound deliveries to
//! internal addresses are refused unless configured, so a subscription cannot
//! be used to reach the machine's own services or its cloud metadata endpoint.

use std::net::IpAddr;

/// A CIDR block such as `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    base: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `address/prefix` (or a bare address: a single host).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (address, prefix) = text.split_once('/').unwrap_or((text, ""));
        let base: IpAddr = address.trim().parse().map_err(|_| format!("{address:?} is not an IP address"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("prefix must be 0 to {max}"))?
        };
        Ok(Self { base, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Blocks that are not the public internet: loopback, private (RFC 1918,
/// unique local, site-local), link-local (with cloud metadata at
/// 169.254.169.254), carrier-grade NAT, IETF protocol assignments,
/// benchmarking, unspecified, multicast, reserved and broadcast, and the
/// local-use NAT64 prefix.
const INTERNAL: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

/// Whether `ip` is an internal address (see [`INTERNAL`]). IPv6 addresses
/// that carry an IPv4 address (mapped, compatible, NAT64, 6to4) are judged
/// by that IPv4 address too, so an internal one cannot be reached through them.
pub fn is_internal(ip: IpAddr) -> bool {
    let internal = |ip| INTERNAL.iter().any(|n| Network::parse(n).expect("valid built-in network").contains(ip));
    internal(ip) || embedded_ipv4(ip).is_some_and(|v4| internal(IpAddr::V4(v4)))
}

/// `::ffff:a.b.c.d` is `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The IPv4 address inside an IPv6 one, where the prefix says there is one:
/// IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` (RFC 6052) and 6to4
/// `2002:aabb:ccdd::` (RFC 3056).
fn embedded_ipv4(ip: IpAddr) -> Option<std::net::Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let bits = u128::from(v6);
    let low32 = std::net::Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if bits >> 32 == 0 || bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return Some(low32);
    }
    (bits >> 112 == 0x2002).then(|| std::net::Ipv4Addr::from((bits >> 80) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for s in ["127.0.0.1", "10.1.2.3", "172.31.255.255", "192.168.0.1", "169.254.169.254", "::1", "fd12::1"] {
            assert!(is_internal(ip(s)), "{s}");
        }
        assert!(is_internal(ip("::ffff:127.0.0.1")), "mapped loopback");
        for s in ["64:ff9b::a00:1", "::10.0.0.1", "2002:a00:1::1", "2002:7f00:1::", "64:ff9b:1::8.8.8.8", "198.18.0.1"]
        {
            assert!(is_internal(ip(s)), "{s} carries or is an internal address");
        }
        for s in ["64:ff9b::808:808", "2002:808:808::1"] {
            assert!(!is_internal(ip(s)), "{s} carries a public address");
        }
        for s in ["8.8.8.8", "172.32.0.1", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_internal(ip(s)), "{s}");
        }
    }

    #[test]
    fn networks_parse_and_contain() {
        let net = Network::parse("10.20.0.0/16").unwrap();
        assert!(net.contains(ip("10.20.99.1")));
        assert!(!net.contains(ip("10.21.0.1")));
        assert!(Network::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(!Network::parse("127.0.0.1").unwrap().contains(ip("127.0.0.2")));
        assert!(Network::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("nonsense/8").is_err());
    }
}
