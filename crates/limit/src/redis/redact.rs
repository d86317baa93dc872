//! Credentials kept out of everything shown: URLs with their password replaced by `***`,
//! and error texts with any known secret replaced.

use tower_prism_core::config::{quote_bounded, MAX_QUOTED};

/// What replaces a secret.
const MASK: &str = "***";

/// `url` with the password of its user info (`redis://user:secret@host`, or the whole user
/// info when it has no `:`, as in `redis://secret@host`) and any `password=` query value
/// replaced by `***`, cut to a bounded length: the only form in which a URL is shown.
pub(crate) fn redact_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len().min(256));
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    out.push_str(scheme);
    let (userinfo, rest) = split_userinfo(rest);
    if let Some(userinfo) = userinfo {
        match userinfo.find(':') {
            Some(colon) => {
                out.push_str(&userinfo[..colon + 1]);
                out.push_str(MASK);
            }
            None => out.push_str(MASK),
        }
    }
    // The host ends at the first `/`, `?` or `#` after the user info.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    out.push_str(authority);
    match tail.find('?') {
        Some(q) => {
            out.push_str(&tail[..q + 1]);
            let query = &tail[q + 1..];
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((name, _)) if name.to_ascii_lowercase().contains("pass") => {
                        out.push_str(name);
                        out.push('=');
                        out.push_str(MASK);
                    }
                    _ => out.push_str(pair),
                }
            }
        }
        None => out.push_str(tail),
    }
    quote_bounded(&out, MAX_QUOTED * 4)
}

/// A URL's text after its scheme, split into its user info (up to the last `@`) and the
/// rest (from that `@` on). Up to the last `@`, not to the first `/`, `?` or `#`: a
/// password holding one of those unencoded (generated ones do) still ends at the `@`, and
/// showing a little more than the user info only hides more.
fn split_userinfo(rest: &str) -> (Option<&str>, &str) {
    match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at..]),
        None => (None, rest),
    }
}

/// The secrets a limiter knows (the URL's password and user info, the `password` setting),
/// to scrub from texts that might quote them (errors from the Redis client).
#[derive(Clone, Default)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    /// The secrets inside `url`: its user info's password (or whole user info) and any
    /// `password=` query value, raw and percent-decoded.
    pub(crate) fn of_url(url: &str) -> Secrets {
        let mut secrets = Secrets::default();
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let (userinfo, rest) = split_userinfo(rest);
        if let Some(userinfo) = userinfo {
            secrets.add(userinfo.split_once(':').map_or(userinfo, |(_, p)| p));
        }
        if let Some((_, query)) = rest.split_once('?') {
            for pair in query.split('&') {
                if let Some((name, value)) = pair.split_once('=') {
                    if name.to_ascii_lowercase().contains("pass") {
                        secrets.add(value);
                    }
                }
            }
        }
        secrets
    }

    /// Adds a secret (and its percent-decoded form, as the client may show either).
    pub(crate) fn add(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let decoded = percent_decode(secret);
        if decoded != secret && !decoded.is_empty() {
            self.0.push(decoded);
        }
        self.0.push(secret.to_owned());
    }

    /// `text` with every known secret replaced by `***`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.0 {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} redacted)", self.0.len())
    }
}

/// `%XX` sequences decoded (bytes that are not UTF-8 are replaced).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_url_password_is_masked_and_the_rest_kept() {
        assert_eq!(
            redact_url("redis://:secret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact_url("rediss://user:secret@host/"),
            "rediss://user:***@host/"
        );
        assert_eq!(redact_url("redis://secret@host/"), "redis://***@host/");
        assert_eq!(
            redact_url("redis://h:1/?password=secret&db=2"),
            "redis://h:1/?password=***&db=2"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        assert_eq!(redact_url("not a url"), "not a url");
        assert!(!redact_url("redis://u:p@ss:w@rd@h/").contains("rd"));
        // `#`, `/` and `?` unencoded in a password (generated ones hold them): the user
        // info still ends at the last `@`, and the password is not shown.
        for url in [
            "redis://:s3cr#tPW@h:6379/",
            "redis://u:a/b?c#d@h/0",
            "rediss://u:p?w@h",
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains('#') && !shown.contains("tPW") && !shown.contains("c#d"));
            assert!(shown.contains("***@h"), "{shown}");
            let secrets = Secrets::of_url(url);
            assert_eq!(secrets.scrub(url).matches("***").count(), 1, "{url}");
        }
    }

    #[test]
    fn known_secrets_are_scrubbed_from_texts() {
        let mut s = Secrets::of_url("redis://u:p%40ss@h/?password=q2");
        s.add("field-pw");
        let text = "auth p%40ss p@ss q2 field-pw fine";
        assert_eq!(s.scrub(text), "auth *** *** *** *** fine");
        assert!(!format!("{s:?}").contains("field-pw"));
    }
}
