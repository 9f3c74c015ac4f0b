//! A small bounds-checked DER walk for the few fields the collector reads
//! itself (a client certificate's CN, a CRL's next update), instead of an
//! X.509 parser: rustls has already verified or parsed what is walked.

/// One DER element: (tag, contents, what follows). `None` when malformed.
pub(super) fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A CRL's `nextUpdate`, seconds since the epoch; `None` when it has none
/// or the DER is not a CRL.
pub(super) fn crl_next_update(crl: &[u8]) -> Option<i64> {
    const INTEGER: u8 = 0x02;
    let (_, list, _) = der(crl)?;
    let (_, mut tbs, _) = der(list)?;
    if der(tbs)?.0 == INTEGER {
        tbs = der(tbs)?.2; // version
    }
    // signature, issuer, thisUpdate; then nextUpdate, if present.
    for _ in 0..3 {
        tbs = der(tbs)?.2;
    }
    let (tag, time, _) = der(tbs)?;
    asn1_time(tag, std::str::from_utf8(time).ok()?)
}

/// UTCTime (`YYMMDDHHMMSSZ`, 19YY from 50 on, RFC 5280) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`) as seconds since the epoch.
fn asn1_time(tag: u8, text: &str) -> Option<i64> {
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;
    let digits = text.strip_suffix('Z')?;
    let full = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let century = if digits[..2].parse::<u8>().ok()? >= 50 {
                "19"
            } else {
                "20"
            };
            format!("{century}{digits}")
        }
        (GENERALIZED_TIME, 14) => digits.to_owned(),
        _ => return None,
    };
    let t = chrono::NaiveDateTime::parse_from_str(&full, "%Y%m%d%H%M%S").ok()?;
    Some(t.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crls_next_update_is_read_and_malformed_input_is_none() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        let day = rcgen::date_time_ymd;
        for (this_update, next_update) in [
            (day(2025, 11, 24), day(2100, 1, 1)),
            (day(2001, 9, 9), day(2025, 11, 24)),
        ] {
            let crl = rcgen::CertificateRevocationListParams {
                this_update,
                next_update,
                crl_number: rcgen::SerialNumber::from(1u64),
                issuing_distribution_point: None,
                revoked_certs: Vec::new(),
                key_identifier_method: rcgen::KeyIdMethod::Sha256,
            }
            .signed_by(&issuer)
            .unwrap();
            assert_eq!(
                crl_next_update(crl.der()),
                Some(next_update.unix_timestamp())
            );
        }
        assert_eq!(crl_next_update(b""), None);
        assert_eq!(crl_next_update(b"\x30\x03\x30\x01\x02"), None);
        assert_eq!(asn1_time(0x17, "991231235959Z"), Some(946_684_799));
    }
}
