#![no_main]
//! The activation spec loader (`parse_spec`, what `dataout validate` runs
//! on a file's text): any text is answered without a panic, either with a
//! spec or with a non-empty list of issues pointing into the text.
//!
//! Input: the spec file's bytes, read as UTF-8 with invalid sequences
//! replaced (the loader itself refuses a file that is not UTF-8, before
//! parsing). What parses is checked against the validator's promises
//! (version, hash, names, limits, references between sections), parsed
//! again to the same spec, and survives a serde round trip.

use std::collections::BTreeSet;

use dataout::domain::config::{
    max_batch_size, max_concurrency_cap, parse_spec, ConfigErrors, SPEC_VERSION,
};
use dataout::domain::spec::{ActivationSpec, TierRule, Transform};
use libfuzzer_sys::fuzz_target;

const ORIGIN: &str = "fuzz.yaml";

fn check_spec(text: &str, spec: &ActivationSpec) {
    assert_eq!(spec.version, SPEC_VERSION, "another version accepted");
    assert!(
        spec.config_hash.len() == 64
            && spec
                .config_hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "config hash is not SHA-256 hex: {}",
        spec.config_hash
    );

    for (name, d) in &spec.destinations {
        assert_eq!(&d.name, name, "destination stored under another name");
        assert!(
            (1..=max_batch_size(d.kind)).contains(&d.batch_size),
            "destination `{name}`: batch_size {} out of range",
            d.batch_size
        );
        assert!(
            d.max_concurrency >= 1,
            "destination `{name}`: max_concurrency 0"
        );
        if let Some(cap) = max_concurrency_cap(d.kind) {
            assert!(
                d.max_concurrency <= cap,
                "destination `{name}`: over the cap"
            );
        }
        if let Some(rps) = d.max_requests_per_second {
            assert!(
                rps.is_finite() && rps > 0.0 && rps <= 100_000.0,
                "destination `{name}`: max_requests_per_second {rps}"
            );
        }
        assert!(
            (1..=100).contains(&d.max_attempts),
            "destination `{name}`: max_attempts {}",
            d.max_attempts
        );
    }

    for (name, e) in &spec.exports {
        assert_eq!(&e.name, name, "export stored under another name");
        for other in &e.suppress {
            assert_ne!(other, name, "export `{name}` suppresses itself");
            assert!(
                spec.exports.contains_key(other),
                "export `{name}` suppresses the undeclared `{other}`"
            );
        }
        let tiers: BTreeSet<&str> = e.tiers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            tiers.len(),
            e.tiers.len(),
            "export `{name}`: duplicate tier names"
        );
        for t in &e.tiers {
            match &t.rule {
                TierRule::Age {
                    min_age_ms,
                    max_age_ms,
                } => assert!(
                    min_age_ms < max_age_ms,
                    "export `{name}`: tier `{}` has min_age >= max_age",
                    t.name
                ),
                TierRule::Value { min, .. } => {
                    assert!(min.is_finite(), "export `{name}`: tier min {min}")
                }
            }
        }
        for a in &e.attributes {
            if let Transform::Bucket { edges } = &a.transform {
                assert!(!edges.is_empty(), "export `{name}`: empty bucket edges");
                assert!(
                    edges.iter().all(|x| x.is_finite()) && edges.windows(2).all(|w| w[0] < w[1]),
                    "export `{name}`: bucket edges not finite and ascending: {edges:?}"
                );
            }
        }
        for b in &e.destinations {
            assert!(
                spec.destinations.contains_key(&b.destination),
                "export `{name}` binds the undeclared destination `{}`",
                b.destination
            );
            for tier in b.tier_audiences.keys() {
                assert!(
                    tiers.contains(tier.as_str()),
                    "export `{name}`: audience for the undeclared tier `{tier}`"
                );
            }
        }
    }

    let again = parse_spec(text, ORIGIN).expect("a spec that parsed once parses again");
    assert_eq!(&again, spec, "parsing the same text twice differs");
    let json = serde_json::to_string(spec).expect("a spec serialises");
    let back: ActivationSpec = serde_json::from_str(&json).expect("a serialised spec deserialises");
    assert_eq!(&back, spec, "serde round trip changed the spec");
}

fn check_errors(text: &str, errors: &ConfigErrors) {
    assert!(!errors.issues.is_empty(), "an error without issues");
    assert_eq!(errors.origin, ORIGIN);
    // A position is on a line of the text (or just past its end), or 0.
    // Lines as YAML counts them: `\r\n`, a lone `\r` and `\n` each end
    // one (`str::lines` ignores a lone `\r`).
    let lines = text.replace("\r\n", "\n").matches(['\r', '\n']).count() + 2;
    for issue in &errors.issues {
        assert!(
            !issue.message.trim().is_empty(),
            "an issue without a message"
        );
        assert!(
            issue.line <= lines,
            "issue on line {} of a {lines}-line text: {}",
            issue.line,
            issue.message
        );
        assert!(
            (issue.line == 0) == (issue.column == 0),
            "half a position: {}:{}",
            issue.line,
            issue.column
        );
    }
    assert!(
        errors
            .issues
            .windows(2)
            .all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)),
        "issues out of order"
    );
    let rendered = errors.to_string();
    assert!(
        rendered.lines().count() >= errors.issues.len(),
        "an issue missing from the message"
    );
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_spec(&text, ORIGIN) {
        Ok(spec) => check_spec(&text, &spec),
        Err(errors) => check_errors(&text, &errors),
    }
});
