//! Token check of the ingest endpoints: `Authorization: Bearer <token>` or `Splunk <token>`,
//! compared in constant time.
//!
//! Pure: takes the header value and the configured token, returns a verdict. It must never log,
//! echo or otherwise reveal either token, and never short-cut the comparison on a prefix.

use crate::config::Secret;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// No Authorization header, or one without a Bearer/Splunk scheme.
    Missing,
    /// A token was given and it is not the configured one.
    Invalid,
    /// The token given is valid, but for the other side: the read token on a write endpoint
    /// (403, where a wrong token is 401).
    Forbidden,
}

/// [`check`] for a write endpoint: `Forbidden` when the token given is the read token.
pub fn check_write(header: Option<&[u8]>, token: &Secret, read_token: Option<&Secret>) -> Verdict {
    match check(header, token) {
        Verdict::Invalid if read_token.is_some_and(|r| check(header, r) == Verdict::Ok) => {
            Verdict::Forbidden
        }
        v => v,
    }
}

/// Check an `Authorization` header value against `token`.
pub fn check(header: Option<&[u8]>, token: &Secret) -> Verdict {
    let Some(value) = header else {
        return Verdict::Missing;
    };
    let Some((scheme, given)) = split_scheme(value) else {
        return Verdict::Missing;
    };
    if !(scheme.eq_ignore_ascii_case(b"bearer") || scheme.eq_ignore_ascii_case(b"splunk")) {
        return Verdict::Missing;
    }
    // ct_eq on slices of different lengths is false (the length is not secret).
    if bool::from(given.ct_eq(token.expose().as_bytes())) && !token.is_empty() {
        Verdict::Ok
    } else {
        Verdict::Invalid
    }
}

fn split_scheme(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some((scheme, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let t = Secret::new("s3cret");
        assert_eq!(check(None, &t), Verdict::Missing);
        assert_eq!(check(Some(b"s3cret"), &t), Verdict::Missing);
        assert_eq!(check(Some(b"Basic s3cret"), &t), Verdict::Missing);
        assert_eq!(check(Some(b"Bearer "), &t), Verdict::Missing);
        assert_eq!(check(Some(b"Bearer s3cret"), &t), Verdict::Ok);
        assert_eq!(check(Some(b"Splunk s3cret"), &t), Verdict::Ok);
        assert_eq!(check(Some(b"splunk  s3cret "), &t), Verdict::Ok);
        assert_eq!(check(Some(b"Bearer s3cre"), &t), Verdict::Invalid);
        assert_eq!(check(Some(b"Bearer s3cret2"), &t), Verdict::Invalid);
        let r = Secret::new("read-s3cret");
        assert_eq!(
            check_write(Some(b"Bearer read-s3cret"), &t, Some(&r)),
            Verdict::Forbidden
        );
        assert_eq!(
            check_write(Some(b"Bearer x"), &t, Some(&r)),
            Verdict::Invalid
        );
        assert_eq!(
            check_write(Some(b"Bearer s3cret"), &t, Some(&r)),
            Verdict::Ok
        );
        assert_eq!(check(Some(b"Bearer x"), &Secret::new("")), Verdict::Invalid);
    }
}
