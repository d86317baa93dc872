//! Reading a client's address off `X-Forwarded-For`, `Forwarded` and `X-Real-IP`, trusting
//! only the hops the configured proxies appended. Pure functions over header values.
//!
//! Each proxy appends the address it was reached from, so with `n` trusted proxies the
//! client is the `n`th address from the right: everything left of it was written by the
//! client (or untrusted hops) and may be forged. Anything unexpected (too few hops, an
//! address that does not parse, an obfuscated `Forwarded` node) gives `None`, and the
//! caller keys by the peer instead.

use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderMap, FORWARDED};
use http::HeaderName;

use super::key_config::ForwardedHeader;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The header `header` names.
pub(crate) fn header_name(header: ForwardedHeader) -> &'static HeaderName {
    match header {
        ForwardedHeader::XForwardedFor => &X_FORWARDED_FOR,
        ForwardedHeader::Forwarded => &FORWARDED,
        ForwardedHeader::XRealIp => &X_REAL_IP,
    }
}

/// The client's address behind `trusted` proxies writing `header`, if the header holds a
/// well-formed one at that hop.
pub(crate) fn client_ip(
    headers: &HeaderMap,
    header: ForwardedHeader,
    trusted: usize,
) -> Option<IpAddr> {
    if trusted == 0 {
        return None;
    }
    match header {
        ForwardedHeader::XForwardedFor => {
            nth_from_right(headers, &X_FORWARDED_FOR, trusted).and_then(parse_node)
        }
        ForwardedHeader::Forwarded => {
            nth_from_right(headers, &FORWARDED, trusted).and_then(forwarded_for)
        }
        ForwardedHeader::XRealIp => {
            // One address, written by the nearest proxy; two lines mean a forged one.
            let mut values = headers.get_all(&X_REAL_IP).iter();
            let value = values.next()?;
            if trusted != 1 || values.next().is_some() {
                return None;
            }
            parse_node(value.to_str().ok()?)
        }
    }
}

/// The `n`th (from 1) comma-separated element from the right, over every line of `name`
/// in order; `None` when there are fewer, or a line is not visible ASCII.
fn nth_from_right<'a>(headers: &'a HeaderMap, name: &HeaderName, n: usize) -> Option<&'a str> {
    let mut seen = 0;
    for value in headers.get_all(name).iter().rev() {
        let value = value.to_str().ok()?;
        for element in value.rsplit(',') {
            seen += 1;
            if seen == n {
                return Some(element);
            }
        }
    }
    None
}

/// The address of an `X-Forwarded-For` node: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`
/// or `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// The address in the `for` parameter of a `Forwarded` element (`for=192.0.2.60;proto=http`,
/// `for="[2001:db8::1]:4711"`); `None` for `unknown` or an obfuscated `_name`.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        parse_node(value)
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(name: &HeaderName, lines: &[&'static str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(name.clone(), HeaderValue::from_static(line));
        }
        map
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn x_forwarded_for_counts_hops_from_the_right_across_lines() {
        let map = headers(&X_FORWARDED_FOR, &["203.0.113.7, 10.0.0.1", "10.0.0.2"]);
        let xff = ForwardedHeader::XForwardedFor;
        assert_eq!(client_ip(&map, xff, 0), None);
        assert_eq!(client_ip(&map, xff, 1), ip("10.0.0.2"));
        assert_eq!(client_ip(&map, xff, 2), ip("10.0.0.1"));
        assert_eq!(client_ip(&map, xff, 3), ip("203.0.113.7"));
        assert_eq!(client_ip(&map, xff, 4), None);
    }

    #[test]
    fn nodes_with_ports_and_brackets_parse() {
        assert_eq!(parse_node(" 192.0.2.1:4711 "), ip("192.0.2.1"));
        assert_eq!(parse_node("[2001:db8::1]:4711"), ip("2001:db8::1"));
        assert_eq!(parse_node("[2001:db8::1]"), ip("2001:db8::1"));
        assert_eq!(parse_node("2001:db8::1"), ip("2001:db8::1"));
        assert_eq!(parse_node("unknown"), None);
        assert_eq!(parse_node(""), None);
    }

    #[test]
    fn forwarded_reads_the_for_parameter() {
        let map = headers(
            &FORWARDED,
            &["for=192.0.2.60;proto=http;by=203.0.113.43, For=\"[2001:db8:cafe::17]:4711\""],
        );
        let fwd = ForwardedHeader::Forwarded;
        assert_eq!(client_ip(&map, fwd, 1), ip("2001:db8:cafe::17"));
        assert_eq!(client_ip(&map, fwd, 2), ip("192.0.2.60"));
        let hidden = headers(&FORWARDED, &["for=_hidden, for=unknown"]);
        assert_eq!(client_ip(&hidden, fwd, 1), None);
        assert_eq!(client_ip(&hidden, fwd, 2), None);
    }

    #[test]
    fn x_real_ip_is_one_address_from_one_proxy() {
        let real = ForwardedHeader::XRealIp;
        let one = headers(&X_REAL_IP, &["198.51.100.4"]);
        assert_eq!(client_ip(&one, real, 1), ip("198.51.100.4"));
        let two = headers(&X_REAL_IP, &["198.51.100.4", "198.51.100.5"]);
        assert_eq!(client_ip(&two, real, 1), None);
    }
}
