//! IPv4 and IPv6 subnets with just what the kill switch needs: parse,
//! canonical form, containment and overlap. Plain `std::net`, no crate.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The only ranges a subnet kept outside the tunnel may lie in (the same
/// list as the CRD's CEL rule on `allowedSubnets` / `clusterSubnets`):
/// RFC 1918, CGNAT (RFC 6598), link-local and ULA (RFC 4193). Lying inside
/// one of them also bounds the prefix: IPv4 at least /8, IPv6 at least /7.
pub const PRIVATE_RANGES: [&str; 7] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
];

/// A subnet in canonical form: the host bits of `addr` are zero, so two
/// spellings of one subnet compare equal. Orders IPv4 before IPv6, then by
/// address, then by prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x::y/n`; the address may have host bits set
    /// (they are cleared). `None` for anything else, including a bare address.
    pub fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = s.trim().split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        Self::new(addr, prefix)
    }

    /// Parses a subnet, or a bare address as a single-host subnet (how a
    /// WireGuard interface address may be written).
    pub fn parse_host_or_subnet(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.contains('/') {
            return Self::parse(s);
        }
        let addr: IpAddr = s.parse().ok()?;
        Self::new(addr, max_prefix(addr))
    }

    fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        if prefix > max_prefix(addr) {
            return None;
        }
        Some(Self {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Not inside one of [`PRIVATE_RANGES`]: a public range (or one wider
    /// than a private range) that must never bypass the tunnel.
    pub fn is_public(&self) -> bool {
        !PRIVATE_RANGES
            .iter()
            .filter_map(|r| Cidr::parse(r))
            .any(|r| r.contains(self))
    }

    /// Whether `addr` lies in this subnet.
    pub fn contains_addr(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.addr.is_ipv4() && mask(addr, self.prefix) == self.addr
    }

    /// Whether every address of `other` lies in this subnet.
    pub fn contains(&self, other: &Cidr) -> bool {
        self.prefix <= other.prefix && self.contains_addr(other.addr)
    }

    /// Whether the two subnets share at least one address. Two subnets either
    /// nest or are disjoint, so this is containment one way or the other.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

/// Sorted, without duplicates, and without subnets that lie inside another
/// one of the list (for `except` lists, where nesting is redundant).
pub fn minimal_cover(mut cidrs: Vec<Cidr>) -> Vec<Cidr> {
    cidrs.sort();
    cidrs.dedup();
    let all = cidrs.clone();
    cidrs.retain(|c| !all.iter().any(|o| o != c && o.contains(c)));
    cidrs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s).expect("valid cidr")
    }

    #[test]
    fn parses_and_canonicalises() {
        assert_eq!(c("10.244.1.5/16").to_string(), "10.244.0.0/16");
        assert_eq!(c(" 192.168.1.0/24 ").to_string(), "192.168.1.0/24");
        assert_eq!(c("fd00:1:2::7/48").to_string(), "fd00:1:2::/48");
        assert_eq!(c("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(c("::/0").to_string(), "::/0");
        assert_eq!(c("10.0.0.1/32").to_string(), "10.0.0.1/32");
    }

    #[test]
    fn rejects_what_is_not_a_subnet() {
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
        assert_eq!(
            Cidr::parse_host_or_subnet("10.64.0.2"),
            Some(c("10.64.0.2/32"))
        );
        assert_eq!(
            Cidr::parse_host_or_subnet("fc00:bbbb::2"),
            Some(c("fc00:bbbb::2/128"))
        );
    }

    #[test]
    fn overlap_is_containment_either_way_within_one_family() {
        assert!(c("10.64.0.0/10").overlaps(&c("10.64.0.2/32")));
        assert!(c("10.64.0.2/32").overlaps(&c("10.64.0.0/10")));
        assert!(c("10.96.0.0/12").overlaps(&c("10.100.0.0/16")));
        assert!(!c("10.96.0.0/12").overlaps(&c("10.64.0.0/12")));
        assert!(!c("192.168.1.0/24").overlaps(&c("192.168.2.0/24")));
        assert!(c("fc00::/7").overlaps(&c("fd00:bbbb::2/128")));
        assert!(!c("fd00::/8").overlaps(&c("fc00::1/128")));
        // Different families never overlap, even ::/0 and 0.0.0.0/0.
        assert!(!c("::/0").overlaps(&c("10.0.0.0/8")));
        assert!(!c("::ffff:0:0/96").overlaps(&c("10.0.0.0/8")));
    }

    #[test]
    fn only_private_ranges_are_not_public() {
        for public in [
            "0.0.0.0/0",
            "0.0.0.0/1",
            "1.0.0.0/8",
            "8.8.8.0/24",
            "10.0.0.0/7",
            "172.32.0.0/16",
            "100.128.0.0/16",
            "2000::/8",
            "2000::/3",
            "::/0",
            "fc00::/6",
            "::ffff:10.0.0.0/104",
        ] {
            assert!(c(public).is_public(), "{public}");
        }
        for private in [
            "10.0.0.0/8",
            "10.42.0.0/16",
            "172.16.0.0/12",
            "172.31.255.0/24",
            "192.168.1.0/24",
            "100.64.0.0/10",
            "169.254.0.0/16",
            "fc00::/7",
            "fd00:10:96::/112",
            "fe80::/10",
        ] {
            assert!(!c(private).is_public(), "{private}");
        }
    }

    #[test]
    fn minimal_cover_drops_nested_and_duplicate_subnets() {
        let got = minimal_cover(vec![
            c("10.244.0.0/16"),
            c("192.168.0.0/16"),
            c("10.0.0.0/8"),
            c("10.0.0.0/8"),
            c("fd00::/8"),
            c("fd00:1::/64"),
        ]);
        let got: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(got, ["10.0.0.0/8", "192.168.0.0/16", "fd00::/8"]);
    }
}
