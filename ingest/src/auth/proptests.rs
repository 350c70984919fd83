//! Property tests of the signature-header parsers: any header text is answered without a
//! panic, a valid signature is found among up to `MAX_SIGNATURE_ENTRIES - 1` junk entries
//! wherever it stands, and a header over the bound is refused from the headers alone.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use ed25519_dalek::{Signer as _, SigningKey};
use hmac::Mac;
use hooklake_schemas::config::{AuthConfig, HmacAlgorithm, HumanDuration, Secret, SignatureEncoding};
use http::{HeaderMap, HeaderValue};
use proptest::{collection::vec, prelude::*, sample::Index};

use super::{
    AuthError, MAX_SIGNATURE_ENTRIES, TOO_MANY_ENTRIES, Verifier, secret::HmacSha256, standard_webhooks, stripe,
};

const NOW: u64 = 1_795_500_000;
const BODY: &[u8] = br#"{"type":"prop","n":1}"#;
const HMAC_KEY: &[u8] = b"proptest-hmac-key-0123456789";
const STRIPE_SECRET: &str = "whsec_proptest";
const ID: &str = "msg_prop";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn ed25519_key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn secrets(list: &[String]) -> Vec<Secret> {
    list.iter().map(|s| Secret::new(s.as_str())).collect()
}

/// A Standard Webhooks verifier with an HMAC secret and an ed25519 public key, so that
/// both entry kinds are checked.
fn standard() -> Verifier {
    let public = format!("whpk_{}", STANDARD.encode(ed25519_key().verifying_key().to_bytes()));
    let whsec = format!("whsec_{}", STANDARD.encode(HMAC_KEY));
    let auth =
        AuthConfig::StandardWebhooks { secrets: secrets(&[whsec, public]), tolerance: HumanDuration::from_secs(300) };
    Verifier::from_config("sources.p.auth", &auth).unwrap()
}

fn stripe_verifier() -> Verifier {
    let auth =
        AuthConfig::Stripe { secrets: secrets(&[STRIPE_SECRET.into()]), tolerance: HumanDuration::from_secs(300) };
    Verifier::from_config("sources.p.auth", &auth).unwrap()
}

/// One verifier per scheme, with the header its signature goes in.
fn every_scheme() -> Vec<(Verifier, &'static str)> {
    let hmac = AuthConfig::Hmac {
        header: "x-sig".into(),
        algorithm: HmacAlgorithm::Sha256,
        encoding: SignatureEncoding::Base64,
        prefix: Some("sha256=".into()),
        secrets: secrets(&["generic".into()]),
    };
    let github = AuthConfig::Github { secrets: secrets(&["gh".into()]) };
    let api_key = AuthConfig::ApiKey { header: "x-api-key".into(), keys: secrets(&["proptest-api-key".into()]) };
    vec![
        (standard(), "webhook-signature"),
        (standard(), "svix-signature"),
        (stripe_verifier(), "stripe-signature"),
        (Verifier::from_config("k", &hmac).unwrap(), "x-sig"),
        (Verifier::from_config("k", &github).unwrap(), "x-hub-signature-256"),
        (Verifier::from_config("k", &api_key).unwrap(), "x-api-key"),
    ]
}

fn sw_headers(signature: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("webhook-id", HeaderValue::from_static(ID));
    h.insert("webhook-timestamp", HeaderValue::from_str(&NOW.to_string()).unwrap());
    h.insert("webhook-signature", HeaderValue::from_str(signature).unwrap());
    h
}

fn signed_content() -> Vec<u8> {
    [format!("{ID}.{NOW}.").as_bytes(), BODY].concat()
}

/// The valid `v1,` or `v1a,` entry for [`BODY`].
fn valid_sw_entry(ed25519: bool) -> String {
    if ed25519 {
        format!("v1a,{}", STANDARD.encode(ed25519_key().sign(&signed_content()).to_bytes()))
    } else {
        format!("v1,{}", STANDARD.encode(hmac(HMAC_KEY, &signed_content())))
    }
}

fn valid_stripe_entry() -> String {
    format!("v1={}", hex::encode(hmac(STRIPE_SECRET.as_bytes(), &[format!("{NOW}.").as_bytes(), BODY].concat())))
}

/// Entries of a `webhook-signature` list that do not sign [`BODY`]: wrong MACs and
/// signatures of the right length, undecodable, empty and unknown ones. None holds
/// whitespace, so each is one entry.
fn sw_junk() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(|b| format!("v1,{}", STANDARD.encode(b))),
        vec(any::<u8>(), 64).prop_map(|b| format!("v1a,{}", STANDARD.encode(b))),
        "v1a?,[A-Za-z0-9+/=]{0,100}",
        "v[0-9],[A-Za-z0-9+/=]{0,50}",
        "[!-~]{1,30}",
    ]
}

/// Elements of a `Stripe-Signature` list that do not sign [`BODY`]: no `,`, and no `t=`.
fn stripe_junk() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 32]>().prop_map(|b| format!("v1={}", hex::encode(b))),
        "v1=[0-9a-fA-F]{0,70}",
        "v0=[0-9a-f]{0,64}",
        "[ -+\\--~]{0,30}",
    ]
    .prop_filter("not a timestamp", |e| !e.trim().starts_with("t="))
}

/// Header text: printable soup, and soups of the tokens signature headers are made of.
fn header_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("v1,".to_owned()),
        Just("v1a,".to_owned()),
        Just("v1=".to_owned()),
        Just("t=".to_owned()),
        Just("sha256=".to_owned()),
        Just(",".to_owned()),
        Just(" ".to_owned()),
        Just(NOW.to_string()),
        "[A-Za-z0-9+/=]{0,90}",
        "[0-9a-f]{0,64}",
    ];
    prop_oneof!["[ -~\t]{0,400}", vec(token, 0..80).prop_map(|t| t.concat())]
}

/// `junk` with `valid` inserted at `at`.
fn with_valid(mut junk: Vec<String>, valid: String, at: Index) -> Vec<String> {
    let i = at.index(junk.len() + 1);
    junk.insert(i, valid);
    junk
}

fn too_many() -> Result<(), AuthError> {
    Err(AuthError::Invalid(TOO_MANY_ENTRIES))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn parsers_take_any_text_without_panicking(text in header_text(), any_text in any::<String>()) {
        for t in [&text, &any_text] {
            let _ = standard_webhooks::parse_signatures(t);
            let _ = stripe::parse_header(t);
        }
        let Ok(value) = HeaderValue::from_str(&text) else { return Ok(()) };
        for (verifier, header) in every_scheme() {
            let mut h = sw_headers("v1,AAAA");
            h.insert(header, value.clone());
            h.insert("stripe-signature", value.clone());
            let _ = verifier.check_headers(&h, now());
            let _ = verifier.verify(&h, Bytes::from_static(BODY), now());
        }
    }

    #[test]
    fn any_header_bytes_are_answered_without_panicking(bytes in vec(any::<u8>(), 0..300)) {
        let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()) };
        for (verifier, header) in every_scheme() {
            let mut h = sw_headers("v1,AAAA");
            h.insert(header, value.clone());
            prop_assert!(verifier.verify(&h, Bytes::from_static(BODY), now()).is_err());
        }
    }

    #[test]
    fn a_valid_standard_webhooks_entry_is_found_among_junk(
        junk in vec(sw_junk(), 0..MAX_SIGNATURE_ENTRIES),
        at in any::<Index>(),
        ed25519 in any::<bool>(),
        separator in prop_oneof![Just(" "), Just("  "), Just("\t")],
    ) {
        let list = with_valid(junk, valid_sw_entry(ed25519), at).join(separator);
        prop_assert_eq!(standard().verify(&sw_headers(&list), Bytes::from_static(BODY), now()).map(|v| v.scheme()),
            Ok("standard_webhooks"));
    }

    #[test]
    fn a_standard_webhooks_list_over_the_bound_is_refused_from_the_headers(
        junk in vec(sw_junk(), MAX_SIGNATURE_ENTRIES..4 * MAX_SIGNATURE_ENTRIES),
        at in any::<Index>(),
        ed25519 in any::<bool>(),
    ) {
        let list = with_valid(junk, valid_sw_entry(ed25519), at).join(" ");
        prop_assert_eq!(standard_webhooks::parse_signatures(&list).map(drop), too_many());
        prop_assert_eq!(standard().check_headers(&sw_headers(&list), now()), too_many());
    }

    #[test]
    fn a_valid_stripe_entry_is_found_among_junk(
        junk in vec(stripe_junk(), 0..MAX_SIGNATURE_ENTRIES),
        at in any::<Index>(),
        t_at in any::<Index>(),
    ) {
        let elements = with_valid(with_valid(junk, valid_stripe_entry(), at), format!("t={NOW}"), t_at);
        let mut h = HeaderMap::new();
        h.insert("stripe-signature", HeaderValue::from_str(&elements.join(",")).unwrap());
        prop_assert_eq!(stripe_verifier().verify(&h, Bytes::from_static(BODY), now()).map(|v| v.scheme()), Ok("stripe"));
    }

    #[test]
    fn a_stripe_list_over_the_bound_is_refused_from_the_headers(
        junk in vec(stripe_junk(), MAX_SIGNATURE_ENTRIES..4 * MAX_SIGNATURE_ENTRIES),
        at in any::<Index>(),
        t_at in any::<Index>(),
    ) {
        let elements = with_valid(with_valid(junk, valid_stripe_entry(), at), format!("t={NOW}"), t_at);
        let value = elements.join(",");
        prop_assert_eq!(stripe::parse_header(&value).map(drop), too_many());
        let mut h = HeaderMap::new();
        h.insert("stripe-signature", HeaderValue::from_str(&value).unwrap());
        prop_assert_eq!(stripe_verifier().check_headers(&h, now()), too_many());
    }
}
