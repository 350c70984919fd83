//! Unit tests of the verifiers with signatures computed here; the integration suite signs
//! with the svix, standardwebhooks and stripe Python libraries instead.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use hmac::Mac;
use hooklake_schemas::config::{AuthConfig, HmacAlgorithm, HumanDuration, Secret, SignatureEncoding};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::{AuthError, Verifier, secret::HmacSha256};

const NOW: u64 = 1_795_500_000;
const BODY: &[u8] = br#"{"type":"invoice.paid","id":"evt_1"}"#;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs.iter().map(|(k, v)| (HeaderName::try_from(*k).unwrap(), HeaderValue::from_str(v).unwrap())).collect()
}

fn hmac_b64(key: &[u8], msg: &[u8]) -> String {
    let mut m = HmacSha256::new_from_slice(key).unwrap();
    m.update(msg);
    STANDARD.encode(m.finalize().into_bytes())
}

fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    let mut m = HmacSha256::new_from_slice(key).unwrap();
    m.update(msg);
    hex::encode(m.finalize().into_bytes())
}

fn verify(v: &Verifier, h: &HeaderMap, body: &[u8]) -> Result<&'static str, AuthError> {
    v.check_headers(h, now())?;
    v.verify(h, Bytes::copy_from_slice(body), now()).map(|ok| ok.scheme())
}

fn secrets(list: &[&str]) -> Vec<Secret> {
    list.iter().map(|s| Secret::new(*s)).collect()
}

const KEY_A: &[u8] = b"secret-key-a-0123456789";
const KEY_B: &[u8] = b"secret-key-b-9876543210";

fn whsec(key: &[u8]) -> String {
    format!("whsec_{}", STANDARD.encode(key))
}

fn standard(secret_list: Vec<Secret>) -> Verifier {
    let auth = AuthConfig::StandardWebhooks { secrets: secret_list, tolerance: HumanDuration::from_secs(300) };
    Verifier::from_config("sources.t.auth", &auth).unwrap()
}

fn sw_headers(prefix: &str, id: &str, ts: u64, sig: &str) -> HeaderMap {
    headers(&[
        (&format!("{prefix}-id"), id),
        (&format!("{prefix}-timestamp"), &ts.to_string()),
        (&format!("{prefix}-signature"), sig),
    ])
}

fn sw_sig(key: &[u8], id: &str, ts: u64, body: &[u8]) -> String {
    format!("v1,{}", hmac_b64(key, &[format!("{id}.{ts}.").as_bytes(), body].concat()))
}

#[test]
fn standard_webhooks_accepts_valid_signatures_under_both_header_sets() {
    let v = standard(secrets(&[&whsec(KEY_A)]));
    for prefix in ["webhook", "svix"] {
        let h = sw_headers(prefix, "msg_1", NOW, &sw_sig(KEY_A, "msg_1", NOW, BODY));
        assert_eq!(verify(&v, &h, BODY), Ok("standard_webhooks"), "{prefix}");
    }
}

#[test]
fn standard_webhooks_rejects_what_it_must() {
    let v = standard(secrets(&[&whsec(KEY_A)]));
    let good = sw_sig(KEY_A, "msg_1", NOW, BODY);
    let invalid = |h: &HeaderMap, body: &[u8]| matches!(verify(&v, h, body), Err(AuthError::Invalid(_)));
    assert!(invalid(&sw_headers("webhook", "msg_1", NOW, &sw_sig(KEY_B, "msg_1", NOW, BODY)), BODY), "wrong secret");
    assert!(invalid(&sw_headers("webhook", "msg_1", NOW, "v1,"), BODY), "empty signature");
    assert!(invalid(&sw_headers("webhook", "msg_1", NOW, &good[..good.len() - 8]), BODY), "truncated");
    let mut changed = BODY.to_vec();
    changed[3] ^= 1;
    assert!(invalid(&sw_headers("webhook", "msg_1", NOW, &good), &changed), "body changed");
    assert!(invalid(&sw_headers("webhook", "msg_2", NOW, &good), BODY), "other id");
    for ts in [NOW - 301, NOW + 301] {
        let h = sw_headers("webhook", "msg_1", ts, &sw_sig(KEY_A, "msg_1", ts, BODY));
        assert_eq!(verify(&v, &h, BODY), Err(AuthError::Invalid("signature timestamp is outside the tolerance")));
    }
    for ts in [NOW - 300, NOW + 300] {
        let h = sw_headers("webhook", "msg_1", ts, &sw_sig(KEY_A, "msg_1", ts, BODY));
        assert!(verify(&v, &h, BODY).is_ok(), "at the tolerance edge");
    }
    for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let mut h = sw_headers("webhook", "msg_1", NOW, &good);
        h.remove(missing);
        assert!(matches!(verify(&v, &h, BODY), Err(AuthError::Missing(_))), "{missing}");
    }
}

#[test]
fn standard_webhooks_takes_any_entry_of_a_signature_list_and_rotated_secrets() {
    let v = standard(secrets(&[&whsec(KEY_A), &STANDARD.encode(KEY_B)]));
    let list = format!("v1,bm9wZQ== {} v2,zzz", sw_sig(KEY_B, "msg_1", NOW, BODY));
    assert!(verify(&v, &sw_headers("webhook", "msg_1", NOW, &list), BODY).is_ok());
    assert!(verify(&v, &sw_headers("webhook", "msg_1", NOW, &sw_sig(KEY_A, "msg_1", NOW, BODY)), BODY).is_ok());
    let only_a = standard(secrets(&[&whsec(KEY_A)]));
    assert!(verify(&only_a, &sw_headers("webhook", "msg_1", NOW, &list), BODY).is_err(), "B no longer configured");
}

#[test]
fn standard_webhooks_verifies_v1a_ed25519() {
    let signing = SigningKey::from_bytes(&[7u8; 32]);
    let public = format!("whpk_{}", STANDARD.encode(signing.verifying_key().to_bytes()));
    let v = standard(secrets(&[&public]));
    let msg = [b"msg_9.".as_slice(), NOW.to_string().as_bytes(), b".", BODY].concat();
    let sig = format!("v1a,{}", STANDARD.encode(signing.sign(&msg).to_bytes()));
    assert!(verify(&v, &sw_headers("webhook", "msg_9", NOW, &sig), BODY).is_ok());
    assert!(verify(&v, &sw_headers("webhook", "msg_9", NOW, &sig), b"{}").is_err());
    let other = SigningKey::from_bytes(&[8u8; 32]);
    let forged = format!("v1a,{}", STANDARD.encode(other.sign(&msg).to_bytes()));
    assert!(verify(&v, &sw_headers("webhook", "msg_9", NOW, &forged), BODY).is_err());
}

#[test]
fn bad_secrets_are_config_errors_naming_the_key_not_the_value() {
    let auth = AuthConfig::StandardWebhooks {
        secrets: secrets(&[&whsec(KEY_A), "whsec_not*base64!"]),
        tolerance: HumanDuration::from_secs(300),
    };
    let err = Verifier::from_config("sources.n.auth", &auth).unwrap_err().to_string();
    assert!(err.starts_with("sources.n.auth.secrets[1]: "), "{err}");
    assert!(!err.contains("not*base64"), "{err}");
    let auth =
        AuthConfig::StandardWebhooks { secrets: secrets(&["whsk_AAAA"]), tolerance: HumanDuration::from_secs(1) };
    assert!(Verifier::from_config("k", &auth).unwrap_err().to_string().contains("public key"));
    let auth =
        AuthConfig::StandardWebhooks { secrets: secrets(&["whpk_AAAA"]), tolerance: HumanDuration::from_secs(1) };
    assert!(Verifier::from_config("k", &auth).is_err());
}

#[test]
fn api_keys_rotate_and_compare_whole_values() {
    let auth = AuthConfig::ApiKey { header: "X-API-Key".into(), keys: secrets(&["key-one", "key-two"]) };
    let v = Verifier::from_config("k", &auth).unwrap();
    assert_eq!(verify(&v, &headers(&[("x-api-key", "key-two")]), BODY), Ok("api_key"));
    assert_eq!(verify(&v, &headers(&[("x-api-key", "key-one")]), BODY), Ok("api_key"));
    for wrong in ["key-on", "key-one ", "KEY-ONE", ""] {
        assert_eq!(verify(&v, &headers(&[("x-api-key", wrong)]), BODY), Err(AuthError::Invalid("wrong API key")));
    }
    assert!(matches!(verify(&v, &headers(&[("authorization", "key-one")]), BODY), Err(AuthError::Missing(_))));
}

#[test]
fn github_signatures() {
    let v = Verifier::from_config("k", &AuthConfig::Github { secrets: secrets(&["gh-old", "gh-new"]) }).unwrap();
    let sig = format!("sha256={}", hmac_hex(b"gh-new", BODY));
    assert_eq!(verify(&v, &headers(&[("x-hub-signature-256", &sig)]), BODY), Ok("github"));
    assert!(verify(&v, &headers(&[("x-hub-signature-256", &sig)]), b"{}").is_err());
    assert!(verify(&v, &headers(&[("x-hub-signature-256", &sig[..20])]), BODY).is_err());
    assert!(verify(&v, &headers(&[("x-hub-signature-256", "sha256=")]), BODY).is_err());
    let sha1 = format!("sha1={}", hmac_hex(b"gh-new", BODY));
    assert!(matches!(verify(&v, &headers(&[("x-hub-signature", &sha1)]), BODY), Err(AuthError::Missing(_))));
}

#[test]
fn stripe_signatures() {
    let secret = "whsec_stripe_test_secret";
    let auth = AuthConfig::Stripe { secrets: secrets(&[secret]), tolerance: HumanDuration::from_secs(300) };
    let v = Verifier::from_config("k", &auth).unwrap();
    let sign = |ts: u64, body: &[u8]| hmac_hex(secret.as_bytes(), &[format!("{ts}.").as_bytes(), body].concat());
    let h = format!("t={NOW},v1={},v0=ignored", sign(NOW, BODY));
    assert_eq!(verify(&v, &headers(&[("stripe-signature", &h)]), BODY), Ok("stripe"));
    let two = format!("t={NOW},v1=00ff,v1={}", sign(NOW, BODY));
    assert!(verify(&v, &headers(&[("stripe-signature", &two)]), BODY).is_ok(), "any v1 entry");
    let old = format!("t={},v1={}", NOW - 301, sign(NOW - 301, BODY));
    assert!(verify(&v, &headers(&[("stripe-signature", &old)]), BODY).is_err());
    assert!(verify(&v, &headers(&[("stripe-signature", &format!("t={NOW}"))]), BODY).is_err());
    assert!(verify(&v, &headers(&[("stripe-signature", &h)]), b"{ }").is_err());
}

#[test]
fn generic_hmac_with_prefix_and_encodings() {
    let auth = AuthConfig::Hmac {
        header: "X-Signature".into(),
        algorithm: HmacAlgorithm::Sha256,
        encoding: SignatureEncoding::Base64,
        prefix: Some("sha256=".into()),
        secrets: secrets(&["generic-secret"]),
    };
    let v = Verifier::from_config("k", &auth).unwrap();
    let sig = format!("sha256={}", hmac_b64(b"generic-secret", BODY));
    assert_eq!(verify(&v, &headers(&[("x-signature", &sig)]), BODY), Ok("hmac"));
    assert!(verify(&v, &headers(&[("x-signature", &sig[7..])]), BODY).is_err(), "prefix required");
    assert!(matches!(verify(&v, &headers(&[]), BODY), Err(AuthError::Missing(_))));
}

#[test]
fn none_accepts_everything() {
    let v = Verifier::from_config("k", &AuthConfig::None {}).unwrap();
    assert_eq!(verify(&v, &HeaderMap::new(), BODY), Ok("none"));
}

#[test]
fn what_the_signer_signs_every_verifier_accepts_and_nothing_else() {
    let body = br#"{"type":"order.created","id":7}"#;
    let sha = HumanDuration::from_secs(300);
    let schemes = [
        AuthConfig::ApiKey { header: "X-Api-Key".into(), keys: secrets(&["k-new", "k-old"]) },
        AuthConfig::StandardWebhooks {
            secrets: secrets(&[&whsec(b"0123456789abcdef0123456789abcdef")]),
            tolerance: sha,
        },
        AuthConfig::Github { secrets: secrets(&["gh-secret"]) },
        AuthConfig::Stripe { secrets: secrets(&["whsec_stripe"]), tolerance: sha },
        AuthConfig::Hmac {
            header: "X-Signature".into(),
            algorithm: HmacAlgorithm::Sha512,
            encoding: SignatureEncoding::Base64,
            prefix: Some("sha512=".into()),
            secrets: secrets(&["generic"]),
        },
        AuthConfig::None {},
    ];
    for auth in &schemes {
        let signer = super::Signer::from_config("sources.s.auth", auth).unwrap();
        let verifier = Verifier::from_config("sources.s.auth", auth).unwrap();
        let signed = signer.sign("msg_1", body, now()).unwrap();
        assert_eq!(verify(&verifier, &signed, body), Ok(auth.scheme()), "{}", auth.scheme());
        // Schemes that sign the body must refuse a changed one.
        let changed = br#"{"type":"order.created","id":8}"#;
        let signs_body = !matches!(auth, AuthConfig::ApiKey { .. } | AuthConfig::None {});
        assert_eq!(verify(&verifier, &signed, changed).is_err(), signs_body, "{}", auth.scheme());
    }
}

#[test]
fn a_standard_webhooks_source_with_only_public_keys_cannot_sign() {
    let pk = format!("whpk_{}", STANDARD.encode(SigningKey::from_bytes(&[7; 32]).verifying_key().as_bytes()));
    let auth = AuthConfig::StandardWebhooks { secrets: secrets(&[&pk]), tolerance: HumanDuration::from_secs(60) };
    let err = super::Signer::from_config("k", &auth).unwrap().sign("id", b"{}", now()).unwrap_err();
    assert!(err.contains("whsec_"), "{err}");
}

/// `n` copies of `entry` joined by `sep`.
fn repeated(entry: &str, n: usize, sep: &str) -> String {
    vec![entry; n].join(sep)
}

fn check(v: &Verifier, h: &HeaderMap) -> Result<(), AuthError> {
    v.check_headers(h, now())
}

const TOO_MANY: AuthError = AuthError::Invalid(super::TOO_MANY_ENTRIES);

#[test]
fn the_bound_is_the_one_its_error_names() {
    assert!(super::TOO_MANY_ENTRIES.contains(&format!(" {} ", super::MAX_SIGNATURE_ENTRIES)));
}

#[test]
fn standard_webhooks_refuses_signature_lists_over_the_bound_before_the_body() {
    let v = standard(secrets(&[&whsec(KEY_A)]));
    let good = sw_sig(KEY_A, "msg_1", NOW, BODY);
    // Well-formed entries of the right length, which an unbounded verifier would hash.
    let wrong = sw_sig(KEY_B, "msg_1", NOW, BODY);
    let v1a = format!("v1a,{}", STANDARD.encode([9u8; 64]));
    let max = super::MAX_SIGNATURE_ENTRIES;
    for junk in [wrong.as_str(), v1a.as_str(), "v1,AA", "v1,"] {
        let at_bound = format!("{} {good}", repeated(junk, max - 1, " "));
        assert_eq!(verify(&v, &sw_headers("webhook", "msg_1", NOW, &at_bound), BODY), Ok("standard_webhooks"));
        for n in [max, 50_000] {
            let over = format!("{} {good}", repeated(junk, n, " "));
            let h = sw_headers("webhook", "msg_1", NOW, &over);
            assert_eq!(check(&v, &h), Err(TOO_MANY), "{junk} x {n}: refused from the headers alone");
            assert_eq!(verify(&v, &h, BODY), Err(TOO_MANY));
        }
    }
    // Separators do not count as entries.
    let spaced = format!("  {}  {good}  ", repeated(&wrong, max - 1, "   "));
    assert!(verify(&v, &sw_headers("webhook", "msg_1", NOW, &spaced), BODY).is_ok());
}

#[test]
fn standard_webhooks_drops_empty_and_undecodable_entries_without_hashing() {
    let v = standard(secrets(&[&whsec(KEY_A)]));
    let short = format!("v1,{}", STANDARD.encode([1u8; 31]));
    let long = format!("v1,{}", STANDARD.encode([1u8; 33]));
    let v1a_short = format!("v1a,{}", STANDARD.encode([1u8; 63]));
    let huge = format!("v1,{}", "A".repeat(4000));
    let built = [short.as_str(), long.as_str(), v1a_short.as_str(), huge.as_str()];
    for junk in ["v1,", "v1a,", "v1,!!!!", "v1,AA", "v1", ",", "v2,AAAA"].into_iter().chain(built) {
        let h = sw_headers("webhook", "msg_1", NOW, junk);
        assert_eq!(
            check(&v, &h),
            Err(AuthError::Invalid("the signature header has no usable v1 or v1a entry")),
            "{junk}: refused from the headers alone"
        );
        let with_good = format!("{junk} {}", sw_sig(KEY_A, "msg_1", NOW, BODY));
        assert!(verify(&v, &sw_headers("webhook", "msg_1", NOW, &with_good), BODY).is_ok(), "{junk}");
    }
    assert_eq!(
        super::standard_webhooks::parse_signatures("v1, v1,AA v1a,zz v1a,  v3,AAAA"),
        Err(AuthError::Invalid("the signature header has no usable v1 or v1a entry"))
    );
}

#[test]
fn stripe_refuses_lists_over_the_bound_and_unusable_v1_before_the_body() {
    let secret = "whsec_stripe_bound";
    let auth = AuthConfig::Stripe { secrets: secrets(&[secret]), tolerance: HumanDuration::from_secs(300) };
    let v = Verifier::from_config("k", &auth).unwrap();
    let good = hmac_hex(secret.as_bytes(), &[format!("{NOW}.").as_bytes(), BODY].concat());
    let sh = |value: &str| headers(&[("stripe-signature", value)]);
    let max = super::MAX_SIGNATURE_ENTRIES;
    let wrong = format!("v1={}", "ab".repeat(32));
    for junk in [wrong.as_str(), "v1=00", "v1=", "v0=abc", ""] {
        let at_bound = format!("t={NOW},{},v1={good}", repeated(junk, max - 1, ","));
        assert_eq!(verify(&v, &sh(&at_bound), BODY), Ok("stripe"), "{junk}");
        for n in [max, 50_000] {
            let over = format!("t={NOW},{},v1={good}", repeated(junk, n, ","));
            assert_eq!(check(&v, &sh(&over)), Err(TOO_MANY), "{junk} x {n}");
        }
    }
    let not_hex = format!("v1={}", "g".repeat(64));
    for unusable in ["v1=", "v1=zz", "v1=00ff", "v1=ab,v1=", "v0=ab", not_hex.as_str()] {
        let h = sh(&format!("t={NOW},{unusable}"));
        assert_eq!(check(&v, &h), Err(AuthError::Invalid("Stripe-Signature has no v1= signature")), "{unusable}");
    }
    let twice = format!("t={NOW},t={NOW},v1={good}");
    assert_eq!(check(&v, &sh(&twice)), Err(AuthError::Invalid("Stripe-Signature has more than one t=")));
}

#[test]
fn github_takes_exactly_one_hex_signature() {
    let v = Verifier::from_config("k", &AuthConfig::Github { secrets: secrets(&["gh"]) }).unwrap();
    let good = format!("sha256={}", hmac_hex(b"gh", BODY));
    let gh = |value: &str| headers(&[("x-hub-signature-256", value)]);
    let list = repeated(&good, 50_000, ",");
    let spaced = repeated(&good, 2, " ");
    let not_hex = format!("sha256={}", "z".repeat(64));
    for bad in ["sha256=", "sha256=00", list.as_str(), spaced.as_str(), not_hex.as_str()] {
        assert!(matches!(check(&v, &gh(bad)), Err(AuthError::Invalid(_))), "{}", &bad[..bad.len().min(80)]);
    }
    assert_eq!(verify(&v, &gh(&good), BODY), Ok("github"));
}

#[test]
fn generic_hmac_takes_exactly_one_signature_of_its_algorithms_length() {
    for (algorithm, encoding, len) in [
        (HmacAlgorithm::Sha1, SignatureEncoding::Hex, 20),
        (HmacAlgorithm::Sha256, SignatureEncoding::Base64, 32),
        (HmacAlgorithm::Sha512, SignatureEncoding::Hex, 64),
    ] {
        let auth = AuthConfig::Hmac {
            header: "X-Sig".into(),
            algorithm,
            encoding,
            prefix: None,
            secrets: secrets(&["generic"]),
        };
        let v = Verifier::from_config("k", &auth).unwrap();
        let encode = |bytes: &[u8]| match encoding {
            SignatureEncoding::Hex => hex::encode(bytes),
            SignatureEncoding::Base64 => STANDARD.encode(bytes),
        };
        let sh = |value: &str| headers(&[("x-sig", value)]);
        let one = encode(&vec![7u8; len]);
        let list = repeated(&one, 50_000, ",");
        for bad in
            [String::new(), encode(&vec![7u8; len - 1]), encode(&vec![7u8; len + 1]), list, "!".repeat(one.len())]
        {
            assert!(matches!(check(&v, &sh(&bad)), Err(AuthError::Invalid(_))), "{algorithm:?} {}", bad.len());
        }
        assert_eq!(check(&v, &sh(&one)), Ok(()), "{algorithm:?}: the right length passes the header check");
        assert!(verify(&v, &sh(&one), BODY).is_err());
    }
}
