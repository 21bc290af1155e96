//! Link layers: finds the IP packet inside a frame of a given pcap LINKTYPE_ (Ethernet with
//! 802.1Q/802.1ad tags, Linux cooked v1/v2, raw IP, BSD loopback/NULL and LOOP, IPv4/IPv6).
//! Never panics; never looks past [`MAX_VLAN_TAGS`] tags.

/// Most stacked VLAN tags followed (QinQ is 2).
pub const MAX_VLAN_TAGS: usize = 4;

// LINKTYPE_ values (https://www.tcpdump.org/linktypes.html).
pub(crate) const LINKTYPE_NULL: u32 = 0;
pub(crate) const LINKTYPE_ETHERNET: u32 = 1;
/// DLT_RAW on most BSDs; pcap files written there carry 12 or 14 for raw IP.
pub(crate) const LINKTYPE_RAW_12: u32 = 12;
pub(crate) const LINKTYPE_RAW_14: u32 = 14;
pub(crate) const LINKTYPE_RAW: u32 = 101;
pub(crate) const LINKTYPE_LOOP: u32 = 108;
pub(crate) const LINKTYPE_LINUX_SLL: u32 = 113;
pub(crate) const LINKTYPE_IPV4: u32 = 228;
pub(crate) const LINKTYPE_IPV6: u32 = 229;
pub(crate) const LINKTYPE_LINUX_SLL2: u32 = 276;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88A8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;

/// What a frame's link layer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link<'a> {
    Ipv4(&'a [u8]),
    Ipv6(&'a [u8]),
    NonIp,
    Unknown,
    /// Shorter than its link header.
    Malformed,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// Strips the link header of a frame.
#[inline]
pub(crate) fn decap(linktype: u32, frame: &[u8]) -> Link<'_> {
    match linktype {
        LINKTYPE_ETHERNET => match (be16(frame, 12), frame.get(14..)) {
            (Some(ethertype), Some(rest)) => by_ethertype(ethertype, rest),
            _ => Link::Malformed,
        },
        // Linux cooked v1: packet type, ARPHRD, addr len, 8 address bytes, protocol.
        LINKTYPE_LINUX_SLL => match (be16(frame, 14), frame.get(16..)) {
            (Some(proto), Some(rest)) => by_ethertype(proto, rest),
            _ => Link::Malformed,
        },
        // Linux cooked v2: protocol, reserved, ifindex, ARPHRD, packet type, addr len, address.
        LINKTYPE_LINUX_SLL2 => match (be16(frame, 0), frame.get(20..)) {
            (Some(proto), Some(rest)) => by_ethertype(proto, rest),
            _ => Link::Malformed,
        },
        LINKTYPE_RAW | LINKTYPE_RAW_12 | LINKTYPE_RAW_14 => by_version(frame),
        LINKTYPE_IPV4 => Link::Ipv4(frame),
        LINKTYPE_IPV6 => Link::Ipv6(frame),
        // The address family in the capturing host's byte order (NULL) or network order (LOOP).
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            let (Some(af), Some(rest)) = (frame.get(..4), frame.get(4..)) else {
                return Link::Malformed;
            };
            let af: [u8; 4] = af.try_into().unwrap_or_default();
            let families = if linktype == LINKTYPE_LOOP {
                [u32::from_be_bytes(af), u32::from_be_bytes(af)]
            } else {
                [u32::from_le_bytes(af), u32::from_be_bytes(af)]
            };
            if families.contains(&2) {
                Link::Ipv4(rest)
            } else if families.iter().any(|f| matches!(f, 10 | 24 | 28 | 30)) {
                // AF_INET6: Linux 10, NetBSD/OpenBSD 24, FreeBSD 28, Darwin 30.
                Link::Ipv6(rest)
            } else {
                Link::NonIp
            }
        }
        _ => Link::Unknown,
    }
}

fn by_version(packet: &[u8]) -> Link<'_> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => Link::Ipv4(packet),
        Some(6) => Link::Ipv6(packet),
        Some(_) => Link::NonIp,
        None => Link::Malformed,
    }
}

fn by_ethertype(mut ethertype: u16, mut rest: &[u8]) -> Link<'_> {
    for _ in 0..=MAX_VLAN_TAGS {
        match ethertype {
            ETHERTYPE_IPV4 => return Link::Ipv4(rest),
            ETHERTYPE_IPV6 => return Link::Ipv6(rest),
            // A tag: TCI, then the inner ethertype.
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                match (be16(rest, 2), rest.get(4..)) {
                    (Some(inner), Some(r)) => {
                        ethertype = inner;
                        rest = r;
                    }
                    _ => return Link::Malformed,
                }
            }
            _ => return Link::NonIp,
        }
    }
    Link::NonIp
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP4: [u8; 4] = [0x45, 0, 0, 20];
    const IP6: [u8; 4] = [0x60, 0, 0, 0];

    fn frame(prefix: &[u8], ip: &[u8]) -> Vec<u8> {
        [prefix, ip].concat()
    }

    #[test]
    fn table() {
        let mac = [0u8; 12];
        let eth4 = frame(&[&mac[..], &[0x08, 0x00]].concat(), &IP4);
        let eth6 = frame(&[&mac[..], &[0x86, 0xDD]].concat(), &IP6);
        let vlan = frame(
            &[&mac[..], &[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]].concat(),
            &IP4,
        );
        let qinq = frame(
            &[&mac[..], &[0x88, 0xA8, 0, 1, 0x81, 0x00, 0, 2, 0x86, 0xDD]].concat(),
            &IP6,
        );
        let too_many_tags = frame(
            &[
                &mac[..],
                &[0x81, 0, 0, 1].repeat(MAX_VLAN_TAGS + 1)[..],
                &[0, 0, 0x08, 0x00],
            ]
            .concat(),
            &IP4,
        );
        let arp = frame(&[&mac[..], &[0x08, 0x06]].concat(), &[0; 28]);
        let sll = frame(
            &[0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00],
            &IP4,
        );
        let sll2 = frame(
            &[
                0x86, 0xDD, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
            ],
            &IP6,
        );
        let null_le = frame(&[2, 0, 0, 0], &IP4);
        let null_be6 = frame(&[0, 0, 0, 30], &IP6);
        let null_linux6 = frame(&[10, 0, 0, 0], &IP6);
        let loop4 = frame(&[0, 0, 0, 2], &IP4);
        let loop_other = frame(&[0, 0, 0, 7], &IP4);
        let cases: Vec<(&str, u32, &[u8], Link<'_>)> = vec![
            ("ethernet ipv4", LINKTYPE_ETHERNET, &eth4, Link::Ipv4(&IP4)),
            ("ethernet ipv6", LINKTYPE_ETHERNET, &eth6, Link::Ipv6(&IP6)),
            ("802.1q", LINKTYPE_ETHERNET, &vlan, Link::Ipv4(&IP4)),
            ("qinq", LINKTYPE_ETHERNET, &qinq, Link::Ipv6(&IP6)),
            (
                "too many tags",
                LINKTYPE_ETHERNET,
                &too_many_tags,
                Link::NonIp,
            ),
            ("arp", LINKTYPE_ETHERNET, &arp, Link::NonIp),
            ("short ethernet", LINKTYPE_ETHERNET, &mac, Link::Malformed),
            ("vlan cut", LINKTYPE_ETHERNET, &vlan[..17], Link::Malformed),
            ("sll", LINKTYPE_LINUX_SLL, &sll, Link::Ipv4(&IP4)),
            ("short sll", LINKTYPE_LINUX_SLL, &sll[..15], Link::Malformed),
            ("sll2", LINKTYPE_LINUX_SLL2, &sll2, Link::Ipv6(&IP6)),
            (
                "short sll2",
                LINKTYPE_LINUX_SLL2,
                &sll2[..19],
                Link::Malformed,
            ),
            ("raw4", LINKTYPE_RAW, &IP4, Link::Ipv4(&IP4)),
            ("raw6", LINKTYPE_RAW, &IP6, Link::Ipv6(&IP6)),
            ("raw 12", LINKTYPE_RAW_12, &IP4, Link::Ipv4(&IP4)),
            ("raw 14", LINKTYPE_RAW_14, &IP6, Link::Ipv6(&IP6)),
            ("raw junk", LINKTYPE_RAW, &[0x10], Link::NonIp),
            ("raw empty", LINKTYPE_RAW, &[], Link::Malformed),
            ("ipv4", LINKTYPE_IPV4, &IP4, Link::Ipv4(&IP4)),
            ("ipv6", LINKTYPE_IPV6, &IP6, Link::Ipv6(&IP6)),
            ("null le v4", LINKTYPE_NULL, &null_le, Link::Ipv4(&IP4)),
            (
                "null be v6 darwin",
                LINKTYPE_NULL,
                &null_be6,
                Link::Ipv6(&IP6),
            ),
            (
                "null linux v6",
                LINKTYPE_NULL,
                &null_linux6,
                Link::Ipv6(&IP6),
            ),
            ("loop v4", LINKTYPE_LOOP, &loop4, Link::Ipv4(&IP4)),
            ("loop other", LINKTYPE_LOOP, &loop_other, Link::NonIp),
            ("null short", LINKTYPE_NULL, &[2, 0], Link::Malformed),
            ("unknown", 147, &eth4, Link::Unknown),
        ];
        for (name, lt, bytes, want) in cases {
            assert_eq!(decap(lt, bytes), want, "{name}");
        }
    }
}
