//! The `key` and `headers` fields of a rate limit in TOML: every key shape, the errors of
//! bad ones (each naming its field), and a round trip.

use tower_prism_limit::rate::{
    ClientIpKey, ForwardedHeader, HeaderKey, KeyConfig, KeyPart, MissingHeader, RateLimitConfig,
};

fn client_ip(trusted: u8) -> KeyPart {
    KeyPart::ClientIp(ClientIpKey::new(trusted))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    rate_limit: RateLimitConfig,
}

fn parse(text: &str) -> Result<RateLimitConfig, String> {
    let file: File = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    file.rate_limit
        .validate()
        .map_err(|e| e.field().to_owned())?;
    Ok(file.rate_limit)
}

#[test]
fn every_key_shape_parses_from_toml() {
    let key = |text: &str| {
        parse(&format!("[rate_limit]\nrate = 10\nkey = {text}"))
            .unwrap()
            .key
            .unwrap()
    };
    assert_eq!(key("\"peer_ip\""), KeyConfig::new(KeyPart::PeerIp));
    assert_eq!(key("\"route\""), KeyConfig::new(KeyPart::Route));
    assert_eq!(key("\"path\""), KeyConfig::new(KeyPart::Path));
    assert_eq!(
        key("{ path_prefix = 2 }"),
        KeyConfig::new(KeyPart::PathPrefix(2))
    );
    assert_eq!(
        key("{ client_ip = { trusted_proxies = 1 } }"),
        KeyConfig::new(client_ip(1))
    );
    assert_eq!(
        key("{ client_ip = { trusted_proxies = 1, header = \"forwarded\" } }"),
        KeyConfig::new(KeyPart::ClientIp(
            ClientIpKey::new(1).header(ForwardedHeader::Forwarded)
        ))
    );
    assert_eq!(
        key("{ header = \"x-api-key\" }"),
        KeyConfig::new(KeyPart::Header(HeaderKey::new("x-api-key")))
    );
    assert_eq!(
        key("{ header = { name = \"x-api-key\", missing = \"peer_ip\" } }"),
        KeyConfig::new(KeyPart::Header(
            HeaderKey::new("x-api-key").missing(MissingHeader::PeerIp)
        ))
    );
    assert_eq!(
        key("[\"route\", { header = \"x-api-key\" }]"),
        KeyConfig::combined([KeyPart::Route, KeyPart::Header(HeaderKey::new("x-api-key"))])
    );
    let full = parse("[rate_limit]\nrate = 10\nheaders = true").unwrap();
    assert!(full.headers && full.key.is_none());
}

#[test]
fn bad_keys_are_errors_naming_the_field() {
    let error = |text: &str| parse(&format!("[rate_limit]\nrate = 10\n{text}")).unwrap_err();
    assert!(error("key = \"peer_addr\"").contains("peer_addr"));
    assert!(error("key = { client_ip = {} }").contains("trusted_proxies"));
    assert!(error("key = { client_ip = { trusted_proxies = 1, typo = 2 } }").contains("typo"));
    assert!(error("key = 7").contains("key part"));
    assert!(error("headers = \"yes\"").contains("bool"));
    assert_eq!(error("key = []"), "key");
    assert_eq!(error("key = { header = \"bad header\" }"), "key.header");
    assert_eq!(error("key = { path_prefix = 0 }"), "key.path_prefix");
    assert_eq!(error("key = { path_prefix = 33 }"), "key.path_prefix");
    assert_eq!(
        error("key = { client_ip = { trusted_proxies = 17 } }"),
        "key.client_ip.trusted_proxies"
    );
    assert_eq!(
        error("key = { client_ip = { trusted_proxies = 2, header = \"x-real-ip\" } }"),
        "key.client_ip.trusted_proxies"
    );
    let nine = ["\"path\""; 9].join(", ");
    assert_eq!(error(&format!("key = [{nine}]")), "key");
}

#[test]
fn a_key_round_trips_through_toml() {
    let config = RateLimitConfig::builder()
        .rate(10)
        .key(KeyConfig::combined([
            client_ip(2),
            KeyPart::Header(HeaderKey::new("x-tenant")),
        ]))
        .headers(true)
        .build()
        .unwrap();
    let text = toml::to_string(&config).unwrap();
    let back: RateLimitConfig = toml::from_str(&text).unwrap();
    assert_eq!(back, config);
}
