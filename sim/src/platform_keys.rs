//! How each platform keys a Customer.io person's email, by the platforms'
//! own normalisation rules, written apart from the `dataout` crate (this
//! crate does not depend on it). Tests compute what a destination should
//! hold from the source's people with these and compare it with what a
//! simulator holds, so an expected set never comes from the pipeline under
//! test.
//!
//! Sources (our reading, with links, in `docs/meta-identifiers.md` and
//! `docs/google-identifiers.md`):
//! * Meta: trim, lowercase, SHA-256 hex (the Business SDKs' `normalize`).
//! * Google Data Manager: lowercase, remove all whitespace; for `gmail.com`
//!   and `googlemail.com` drop the `+suffix` and every dot of the local part
//!   (Google's "Format user data" page and its Java `UserDataFormatter`).
//! * CleverTap: an email identity travels as written, trimmed and lowercased
//!   (it is a key, not a digest).

use sha2::{Digest, Sha256};

/// Lowercase SHA-256 hex of `text`.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The `EMAIL` cell Meta expects for `email`.
pub fn meta_email_sha256(email: &str) -> String {
    sha256_hex(&email.trim().to_lowercase())
}

/// The `emailAddress` identifier the Data Manager API expects for `email`,
/// with both Gmail rules on (the example spec's `gmail_remove_dots` and
/// `gmail_strip_plus_suffix`).
pub fn google_email_sha256(email: &str) -> String {
    let text: String = email
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let normalised = match text.rsplit_once('@') {
        Some((local, domain @ ("gmail.com" | "googlemail.com"))) => {
            let local = local.split('+').next().unwrap_or_default().replace('.', "");
            format!("{local}@{domain}")
        }
        _ => text,
    };
    sha256_hex(&normalised)
}

/// A CleverTap identity made from an email.
pub fn clevertap_email_identity(email: &str) -> String {
    email.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every digest below is `printf %s '<text>' | sha256sum` of the text
    // in the comment above it.

    #[test]
    fn meta_trims_and_lowercases_and_keeps_gmail_dots() {
        // ada.lovelace@gmail.com
        assert_eq!(
            meta_email_sha256(" Ada.Lovelace@Gmail.com "),
            "894ac26ea616dec861df81a6efb2ddfc30c3f1cb72b219a17242d8244e66c125"
        );
    }

    #[test]
    fn google_drops_gmail_dots_and_plus_suffix_on_both_gmail_domains_only() {
        // adalovelace@gmail.com
        assert_eq!(
            google_email_sha256(" Ada.Love lace+shop@Gmail.com"),
            "cd98a25152ad884b29e524ea5d3d8d35615ed0afbbc5ea3a6d4215572b0b2bde"
        );
        // adalovelace@googlemail.com: the domain is kept as written
        assert_eq!(
            google_email_sha256("ada.lovelace@googlemail.com"),
            "6be28aa72bbe6cfa132b0ba7d703d754030e24fb45433356be4fd017512c9488"
        );
        // ada.lovelace+shop@example.com: other domains keep dots and tags
        assert_eq!(
            google_email_sha256("Ada.Lovelace+shop@example.com"),
            "853f1782f3ea2d989979386883d08910614006a64f4c44d272f203f9e45a7376"
        );
    }

    #[test]
    fn clevertap_identity_is_the_trimmed_lowercased_email() {
        assert_eq!(
            clevertap_email_identity(" Ada.Lovelace@Example.com "),
            "ada.lovelace@example.com"
        );
    }
}
