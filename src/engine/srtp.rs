//! SRTP on GW2's outside legs (RFC 3711), keyed by SDES (RFC 4568): the paper's
//! confidentiality level 1.
//!
//! A call whose INVITE reached GW2 over TLS may offer `RTP/SAVP` with `a=crypto` lines. GW2
//! picks the first line it supports (`AES_CM_128_HMAC_SHA1_80`, then whatever comes first of
//! `_32`), makes its own master key for the direction it sends, and answers `RTP/SAVP` with it.
//! The other half and the inside see plain RTP: keys never go into Meta. A key in SIP that did
//! not come over TLS would be readable by anyone on the path, so such an offer is refused (488)
//! instead (see `sip_leg`).
//!
//! Every packet from the peer is authenticated and checked against a replay window before any
//! other check (so a forged packet cannot latch a stream); failures are dropped and counted
//! (`dropped_srtp_auth`, `dropped_srtp_replay`). Session parameters (RFC 4568 section 6.3:
//! `KDR`, `UNENCRYPTED_SRTP`, ...) and MKIs are not implemented: a line using one is skipped.

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use rtc_srtp::context::Context;
use rtc_srtp::protection_profile::ProtectionProfile;

/// Bytes of an AES-128 master key and salt, as `inline:` carries them.
pub const KEY_SALT_LEN: usize = 30;
/// Packets of the replay window (libsrtp's default is 128).
const REPLAY_WINDOW: usize = 128;
/// SSRCs one stream's inbound context keeps state for. The context makes a state for a
/// packet's SSRC before it authenticates it, so without a bound anyone who finds the port could
/// grow it with forged SSRCs; a peer uses one or two.
const MAX_SSRCS: usize = 8;

/// The crypto suites served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
}

impl Suite {
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    fn from_name(name: &str) -> Option<Suite> {
        [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32]
            .into_iter()
            .find(|s| s.name() == name)
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            Suite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        }
    }
}

/// One `a=crypto` line the gateway can serve.
#[derive(Clone, PartialEq, Eq)]
pub struct Sdes {
    pub tag: u32,
    pub suite: Suite,
    pub key_salt: [u8; KEY_SALT_LEN],
}

impl std::fmt::Debug for Sdes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a key in a log line.
        f.debug_struct("Sdes")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl Sdes {
    /// The `a=crypto` value that announces this key.
    pub fn attribute(&self) -> String {
        format!(
            "{} {} inline:{}",
            self.tag,
            self.suite.name(),
            base64::engine::general_purpose::STANDARD.encode(self.key_salt)
        )
    }
}

/// Parses one `a=crypto` value (RFC 4568 section 9.1): `tag suite inline:KEY[|lifetime]`.
pub fn parse_crypto(value: &str) -> Result<Sdes, &'static str> {
    let mut parts = value.split_ascii_whitespace();
    let tag = parts
        .next()
        .filter(|t| (1..=9).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
        .ok_or("bad tag")?;
    let suite = parts
        .next()
        .and_then(Suite::from_name)
        .ok_or("unsupported crypto suite")?;
    let key_params = parts.next().ok_or("no key parameters")?;
    if parts.next().is_some() {
        return Err("session parameters are not supported");
    }
    if key_params.contains(';') {
        return Err("several keys are not supported");
    }
    let (method, info) = key_params.split_once(':').ok_or("bad key parameters")?;
    if !method.eq_ignore_ascii_case("inline") {
        return Err("key method is not inline");
    }
    let mut fields = info.split('|');
    let key = fields.next().ok_or("no key")?;
    for f in fields {
        // A lifetime ("2^31" or a number) is accepted: rekeying at it is not done, and the
        // call ends long before 2^31 packets. An MKI ("1:4") is not supported.
        if f.contains(':') {
            return Err("MKI is not supported");
        }
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| "key is not base64")?;
    let key_salt: [u8; KEY_SALT_LEN] = bytes
        .try_into()
        .map_err(|_| "key and salt are not 30 bytes")?;
    Ok(Sdes {
        tag,
        suite,
        key_salt,
    })
}

/// The offered line the gateway answers: the first with a suite it serves, 80-bit tags first.
pub fn choose(values: &[String]) -> Option<Sdes> {
    let parsed: Vec<Sdes> = values.iter().filter_map(|v| parse_crypto(v).ok()).collect();
    parsed
        .iter()
        .find(|s| s.suite == Suite::AesCm128HmacSha1_80)
        .or_else(|| parsed.first())
        .cloned()
}

/// Why an SRTP/SRTCP packet from the peer was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpDrop {
    /// Its authentication tag did not verify (or it was too short to carry one).
    Auth,
    /// Its index was seen before, or is behind the replay window.
    Replay,
}

/// The two SRTP contexts of one stream: the peer's key decrypts what it sends, ours encrypts
/// what the gateway sends it.
pub struct SrtpSession {
    inbound: Context,
    outbound: Context,
    /// The SSRCs `inbound` holds state for (at most [`MAX_SSRCS`]).
    ssrcs: Vec<u32>,
    pub remote: Sdes,
    pub local: Sdes,
}

impl std::fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpSession")
            .field("suite", &self.local.suite)
            .finish_non_exhaustive()
    }
}

impl SrtpSession {
    /// Contexts for `remote` (the peer's offer) and `local` (the gateway's answer; same suite).
    pub fn new(remote: Sdes, local: Sdes) -> Option<SrtpSession> {
        let crypto = rtc_srtp::crypto::providers::RingCrypto;
        let context = |s: &Sdes, replay: bool| {
            let (key, salt) = s.key_salt.split_at(16);
            Context::new(
                key,
                salt,
                s.suite.profile(),
                replay.then(|| rtc_srtp::option::srtp_replay_protection(REPLAY_WINDOW)),
                replay.then(|| rtc_srtp::option::srtcp_replay_protection(REPLAY_WINDOW)),
                &crypto,
            )
            .ok()
        };
        Some(SrtpSession {
            inbound: context(&remote, true)?,
            outbound: context(&local, false)?,
            ssrcs: Vec::new(),
            remote,
            local,
        })
    }

    /// Authenticates and decrypts a packet from the peer.
    pub fn unprotect(&mut self, rtcp: bool, data: &[u8]) -> Result<Bytes, SrtpDrop> {
        // The SSRC sits at bytes 8-11 of RTP, 4-7 of RTCP; a new one past the bound is
        // refused before the context sees it.
        let at = if rtcp { 4 } else { 8 };
        let ssrc = data
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or(SrtpDrop::Auth)?;
        if !self.ssrcs.contains(&ssrc) {
            if self.ssrcs.len() >= MAX_SSRCS {
                return Err(SrtpDrop::Auth);
            }
            self.ssrcs.push(ssrc);
        }
        let result = if rtcp {
            self.inbound.decrypt_rtcp(data)
        } else {
            self.inbound.decrypt_rtp(data)
        };
        result.map(BytesMut::freeze).map_err(|e| match e {
            rtc_shared::error::Error::SrtpSsrcDuplicated(..)
            | rtc_shared::error::Error::SrtcpSsrcDuplicated(..) => SrtpDrop::Replay,
            _ => SrtpDrop::Auth,
        })
    }

    /// Encrypts a packet for the peer; `None` when the packet cannot be (not RTP/RTCP).
    pub fn protect(&mut self, rtcp: bool, data: &[u8]) -> Option<Bytes> {
        let result = if rtcp {
            self.outbound.encrypt_rtcp(data)
        } else {
            self.outbound.encrypt_rtp(data)
        };
        result.ok().map(BytesMut::freeze)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The libsrtp test packet (srtp_driver, RFC 3711 keys): AES_CM_128_HMAC_SHA1_80.
    const KEY: &str = "e1f97a0d3e018be0d64fa32c06de41390ec675ad498afeebb6960b3aabe6";
    const PLAIN: &str = "800f1234decafbadcafebabeabababababababababababababababab";
    const CIPHER: &str =
        "800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb";

    fn sdes(key: &str) -> Sdes {
        Sdes {
            tag: 1,
            suite: Suite::AesCm128HmacSha1_80,
            key_salt: hex(key).try_into().unwrap(),
        }
    }

    #[test]
    fn the_published_test_packet_encrypts_and_decrypts() {
        let mut s = SrtpSession::new(sdes(KEY), sdes(KEY)).unwrap();
        assert_eq!(s.protect(false, &hex(PLAIN)).unwrap().to_vec(), hex(CIPHER));
        assert_eq!(
            s.unprotect(false, &hex(CIPHER)).unwrap().to_vec(),
            hex(PLAIN)
        );
        // The same packet again is a replay; a flipped bit fails authentication.
        assert_eq!(s.unprotect(false, &hex(CIPHER)), Err(SrtpDrop::Replay));
        let mut bad = hex(CIPHER);
        bad[20] ^= 1;
        bad[3] = 0x35;
        assert_eq!(s.unprotect(false, &bad), Err(SrtpDrop::Auth));
        assert_eq!(s.unprotect(false, &bad[..8]), Err(SrtpDrop::Auth));
        // Forged SSRCs: the context keeps state for a bounded number only.
        for ssrc in 0..100u32 {
            let mut forged = hex(CIPHER);
            forged[8..12].copy_from_slice(&ssrc.to_be_bytes());
            assert_eq!(s.unprotect(false, &forged), Err(SrtpDrop::Auth));
        }
        assert!(s.ssrcs.len() <= MAX_SSRCS);
    }

    #[test]
    fn crypto_lines() {
        let k = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        let ok = parse_crypto(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^20")).unwrap();
        assert_eq!((ok.tag, ok.suite), (1, Suite::AesCm128HmacSha1_80));
        assert_eq!(
            ok.attribute(),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}")
        );
        for bad in [
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k}|2^20|1:4"),
            format!("1 AES_256_CM_HMAC_SHA1_80 inline:{k}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k} KDR=1"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{k};inline:{k}"),
            "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=".to_owned(),
            format!("x AES_CM_128_HMAC_SHA1_80 inline:{k}"),
            "1 AES_CM_128_HMAC_SHA1_80".to_owned(),
        ] {
            assert!(parse_crypto(&bad).is_err(), "{bad}");
        }
        let chosen = choose(&[
            format!("1 AES_256_CM_HMAC_SHA1_80 inline:{k}"),
            format!("2 AES_CM_128_HMAC_SHA1_32 inline:{k}"),
            format!("3 AES_CM_128_HMAC_SHA1_80 inline:{k}"),
        ])
        .unwrap();
        assert_eq!(chosen.tag, 3);
        assert!(!format!("{chosen:?}").contains(k));
    }
}
