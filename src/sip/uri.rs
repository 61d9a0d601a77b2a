//! URIs: `sip`/`sips` parsed into user, password, host (name, IPv4 or bracketed IPv6), port,
//! parameters and headers; `tel` into number and parameters; any other scheme kept opaque.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::value::{is_host_name_char, is_uri_forbidden};
use super::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Any other syntactically valid scheme; the rest of the URI is opaque.
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UriSpans {
    pub scheme: Scheme,
    pub whole: Span,
    /// The user part (for `tel`, the number), still %-escaped.
    pub user: Option<Span>,
    pub password: Option<Span>,
    /// The host as written, brackets included for IPv6; empty for `tel` and opaque URIs.
    pub host: Span,
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    /// `;name[=value]` parameters, leading `;` included; empty when there are none.
    pub params: Span,
    /// Headers after `?`, without the `?`.
    pub headers: Option<Span>,
}

/// Parses a port: 1 to 5 digits, at most 65535.
pub(crate) fn parse_port(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits
        .iter()
        .try_fold(0u32, |n, &d| Some(n * 10 + u32::from(d - b'0')))
        .and_then(|n| u16::try_from(n).ok())
}

/// Validates a host: `[IPv6]`, IPv4 or a host name. `Some(None)` is a valid name,
/// `Some(Some(ip))` an address, `None` not a host at all.
pub(crate) fn parse_host(host: &[u8]) -> Option<Option<IpAddr>> {
    match host {
        [] => None,
        [b'[', inner @ .., b']'] => parse_ipv6(inner).map(|ip| Some(IpAddr::V6(ip))),
        [b'0'..=b'9', ..] => match parse_ipv4(host) {
            Some(ip) => Some(Some(IpAddr::V4(ip))),
            // Digits and dots that are no address (`1.2.3.4.5`) are not a host name either.
            None if host.iter().all(|b| b.is_ascii_digit() || *b == b'.') => None,
            None => host.iter().all(|&b| is_host_name_char(b)).then_some(None),
        },
        _ => host.iter().all(|&b| is_host_name_char(b)).then_some(None),
    }
}

/// Dotted-quad IPv4, as `Ipv4Addr::from_str` reads it (no leading zeros), in one pass over
/// the bytes: it runs for every host of every message, and the std parser needs a `str`.
pub(crate) fn parse_ipv4(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let (mut index, mut value, mut digits) = (0usize, 0u16, 0u8);
    for &b in text {
        match b {
            b'0'..=b'9' => {
                if digits == 1 && value == 0 {
                    return None; // leading zero
                }
                value = value * 10 + u16::from(b - b'0');
                digits += 1;
                if value > 255 {
                    return None;
                }
            }
            b'.' if digits > 0 && index < 3 => {
                octets[index] = value as u8;
                (index, value, digits) = (index + 1, 0, 0);
            }
            _ => return None,
        }
    }
    if digits == 0 || index != 3 {
        return None;
    }
    octets[3] = value as u8;
    Some(Ipv4Addr::from(octets))
}

/// Longest IPv6 text: eight groups of four hex digits and seven colons, or six groups and an
/// IPv4 tail (45), plus the extra colon [`parse_ipv6`] tolerates.
const MAX_IPV6_TEXT: usize = 46;

/// Parses the text inside an IPv6 reference's brackets.
///
/// RFC 3261's ABNF (taken from RFC 2373) lets `hexseq "::"` be followed by `":" IPv4address`,
/// which gives three colons (`2001:db8:::192.0.2.1`). RFC 5118 4.10 says an implementation must
/// tolerate it; it names the address written with two colons. Only that one position is
/// lenient: `:::` immediately before a dotted IPv4 tail.
fn parse_ipv6(inner: &[u8]) -> Option<Ipv6Addr> {
    let text = std::str::from_utf8(inner).ok()?;
    if let Ok(ip) = text.parse::<Ipv6Addr>() {
        return Some(ip);
    }
    let (head, tail) = text.rsplit_once(":::")?;
    if text.len() > MAX_IPV6_TEXT || tail.parse::<Ipv4Addr>().is_err() {
        return None;
    }
    // Rebuild it with two colons on the stack: no allocation for a hostile host.
    let mut fixed = [0u8; MAX_IPV6_TEXT];
    let len = head.len() + 2 + tail.len();
    fixed[..head.len()].copy_from_slice(head.as_bytes());
    fixed[head.len()..head.len() + 2].copy_from_slice(b"::");
    fixed[head.len() + 2..len].copy_from_slice(tail.as_bytes());
    std::str::from_utf8(&fixed[..len]).ok()?.parse().ok()
}

/// Every `%` must start a two-hex-digit escape (RFC 3261 25.1 `escaped`).
fn escapes_valid(s: &[u8]) -> bool {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'%', &s[i..]) {
        let at = i + p;
        match s.get(at + 1..at + 3) {
            Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i = at + 3,
            _ => return false,
        }
    }
    true
}

fn valid_scheme(s: &[u8]) -> bool {
    matches!(s.first(), Some(c) if c.is_ascii_alphabetic())
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Parses the URI covering `span` of `buf`. White space, controls, `<`, `>` and `"` are never
/// part of a URI, so their presence makes it invalid.
pub(crate) fn parse_uri(buf: &[u8], span: Span) -> Option<UriSpans> {
    let s = span.slice(buf);
    let base = span.start as usize;
    if s.iter().any(|&b| is_uri_forbidden(b)) {
        return None;
    }
    let colon = memchr::memchr(b':', s)?;
    let scheme_text = &s[..colon];
    if !valid_scheme(scheme_text) || colon + 1 == s.len() {
        return None;
    }
    let scheme = if scheme_text.eq_ignore_ascii_case(b"sip") {
        Scheme::Sip
    } else if scheme_text.eq_ignore_ascii_case(b"sips") {
        Scheme::Sips
    } else if scheme_text.eq_ignore_ascii_case(b"tel") {
        Scheme::Tel
    } else {
        Scheme::Other
    };
    let end = s.len();
    let at = |i: usize| Span::new(base + i, base + i);
    let mut uri = UriSpans {
        scheme,
        whole: span,
        user: None,
        password: None,
        host: at(end),
        ip: None,
        port: None,
        params: at(end),
        headers: None,
    };
    let rest = colon + 1;
    match scheme {
        Scheme::Other => Some(uri),
        Scheme::Tel => {
            let semi = memchr::memchr(b';', &s[rest..]).map_or(end, |i| i + rest);
            if semi == rest || !escapes_valid(&s[rest..semi]) {
                return None;
            }
            uri.user = Some(Span::new(base + rest, base + semi));
            uri.params = Span::new(base + semi, base + end);
            Some(uri)
        }
        Scheme::Sip | Scheme::Sips => {
            let mut host_start = rest;
            if let Some(at_sign) = memchr::memchr(b'@', &s[rest..]).map(|i| i + rest) {
                let userinfo = &s[rest..at_sign];
                let user_end = memchr::memchr(b':', userinfo).map_or(at_sign, |i| i + rest);
                if user_end == rest || !escapes_valid(userinfo) {
                    return None;
                }
                uri.user = Some(Span::new(base + rest, base + user_end));
                if user_end < at_sign {
                    uri.password = Some(Span::new(base + user_end + 1, base + at_sign));
                }
                host_start = at_sign + 1;
            }
            let host_end = if s.get(host_start) == Some(&b'[') {
                memchr::memchr(b']', &s[host_start..])? + host_start + 1
            } else {
                s[host_start..]
                    .iter()
                    .position(|b| matches!(b, b':' | b';' | b'?'))
                    .map_or(end, |i| i + host_start)
            };
            uri.ip = parse_host(&s[host_start..host_end])?;
            uri.host = Span::new(base + host_start, base + host_end);
            let mut pos = host_end;
            if s.get(pos) == Some(&b':') {
                let port_end = s[pos + 1..]
                    .iter()
                    .position(|b| matches!(b, b';' | b'?'))
                    .map_or(end, |i| i + pos + 1);
                uri.port = Some(parse_port(&s[pos + 1..port_end])?);
                pos = port_end;
            }
            if s.get(pos) == Some(&b';') {
                let params_end = memchr::memchr(b'?', &s[pos..]).map_or(end, |i| i + pos);
                uri.params = Span::new(base + pos, base + params_end);
                pos = params_end;
            } else {
                uri.params = at(pos);
            }
            match s.get(pos) {
                None => Some(uri),
                Some(b'?') => {
                    uri.headers = Some(Span::new(base + pos + 1, base + end));
                    Some(uri)
                }
                Some(_) => None,
            }
        }
    }
}

/// A parsed URI borrowed from its message.
#[derive(Clone, Copy, Debug)]
pub struct Uri<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) s: UriSpans,
}

impl<'a> Uri<'a> {
    /// Parses a standalone URI (for configuration and tests; messages parse their own).
    pub fn parse(text: &'a [u8]) -> Option<Uri<'a>> {
        parse_uri(text, Span::new(0, text.len())).map(|s| Uri { buf: text, s })
    }

    pub fn scheme(&self) -> Scheme {
        self.s.scheme
    }

    /// The whole URI exactly as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.s.whole.slice(self.buf)
    }

    /// The user part (or `tel` number), still %-escaped.
    pub fn user(&self) -> Option<&'a [u8]> {
        self.s.user.map(|s| s.slice(self.buf))
    }

    pub fn password(&self) -> Option<&'a [u8]> {
        self.s.password.map(|s| s.slice(self.buf))
    }

    /// The host as written (IPv6 with its brackets); empty for `tel` and opaque URIs.
    pub fn host(&self) -> &'a [u8] {
        self.s.host.slice(self.buf)
    }

    /// The host as an address when it is an IPv4 or IPv6 literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.s.ip
    }

    pub fn port(&self) -> Option<u16> {
        self.s.port
    }

    /// Raw `;name[=value]` parameters, leading `;` included.
    pub fn params(&self) -> &'a [u8] {
        self.s.params.slice(self.buf)
    }

    /// The value of parameter `name` (case-insensitive): `Some(b"")` for a flag like `lr`.
    pub fn param(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.params().split(|&b| b == b';').find_map(|p| {
            let (n, v) = match memchr::memchr(b'=', p) {
                Some(i) => (&p[..i], &p[i + 1..]),
                None => (p, &p[..0]),
            };
            (!n.is_empty() && n.eq_ignore_ascii_case(name)).then_some(v)
        })
    }

    /// URI headers after `?`.
    pub fn headers(&self) -> Option<&'a [u8]> {
        self.s.headers.map(|s| s.slice(self.buf))
    }
}

/// Decodes `%XX` escapes (for comparing user parts); allocates only when asked.
pub fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            s[i],
            s.get(i + 1).copied().and_then(hex),
            s.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri<'_> {
        Uri::parse(s.as_bytes()).unwrap_or_else(|| panic!("should parse: {s}"))
    }

    #[test]
    fn sip_uri_parts() {
        let u = uri("sip:alice:secret@atlanta.example.com:5070;transport=tcp;lr?subject=hi&x=y");
        assert_eq!(u.scheme(), Scheme::Sip);
        assert_eq!(u.user(), Some(&b"alice"[..]));
        assert_eq!(u.password(), Some(&b"secret"[..]));
        assert_eq!(u.host(), b"atlanta.example.com");
        assert_eq!(u.port(), Some(5070));
        assert_eq!(u.params(), b";transport=tcp;lr");
        assert_eq!(u.param(b"TRANSPORT"), Some(&b"tcp"[..]));
        assert_eq!(u.param(b"lr"), Some(&b""[..]));
        assert_eq!(u.param(b"maddr"), None);
        assert_eq!(u.headers(), Some(&b"subject=hi&x=y"[..]));
    }

    #[test]
    fn hosts() {
        let u = uri("sip:[2001:db8::10]:5070");
        assert_eq!(u.host(), b"[2001:db8::10]");
        assert_eq!(u.ip(), Some("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port(), Some(5070));
        // RFC 5118 4.3: the bracket makes the last group part of the address.
        let u = uri("sip:user@[2001:db8::10:5070]");
        assert_eq!(u.ip(), Some("2001:db8::10:5070".parse().unwrap()));
        assert_eq!(u.port(), None);
        let u = uri("sips:[2001:db8::192.0.2.1];lr");
        assert_eq!(u.ip(), Some("2001:db8::c000:201".parse().unwrap()));
        let u = uri("sip:192.0.2.4");
        assert_eq!(u.ip(), Some("192.0.2.4".parse().unwrap()));
        assert_eq!(
            uri("sip:[::ffff:192.0.2.4]").ip(),
            Some("::ffff:192.0.2.4".parse().unwrap())
        );
        assert_eq!(uri("SIP:host_1.example.com").scheme(), Scheme::Sip);
    }

    #[test]
    fn user_with_escapes_and_semicolons() {
        let u = uri("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user(), Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host(), b"example.com");
        assert_eq!(
            unescape(b"sip%3Auser%40example.com"),
            b"sip:user@example.com"
        );
        assert_eq!(
            uri("sip:null-%00-null@example.com").user(),
            Some(&b"null-%00-null"[..])
        );
    }

    #[test]
    fn tel_and_opaque_schemes() {
        let u = uri("tel:+1-201-555-0123;phone-context=example.com");
        assert_eq!(u.scheme(), Scheme::Tel);
        assert_eq!(u.user(), Some(&b"+1-201-555-0123"[..]));
        assert_eq!(u.param(b"phone-context"), Some(&b"example.com"[..]));
        let u = uri("soap.beep://192.0.2.103:3002");
        assert_eq!(u.scheme(), Scheme::Other);
        assert_eq!(u.as_bytes(), b"soap.beep://192.0.2.103:3002");
        assert_eq!(uri("http://example.com/a?b").scheme(), Scheme::Other);
    }

    #[test]
    fn invalid_uris() {
        for s in [
            "",
            "sip:",
            "sip:2001:db8::10",
            "sip:[2001:db8::10",
            "sip:[2001:db8::10]x",
            "sip:host:99999",
            "sip:host:",
            "sip:@host",
            "sip:us%zzer@host",
            "sip:user@",
            "sip:user@example.com; lr",
            "<sip:user@example.com>",
            "sip:user@exa mple.com",
            "sip:user@host!name",
            "9sip:x",
            "nocolon",
            "sip:1.2.3.4.5.6",
        ] {
            assert!(
                Uri::parse(s.as_bytes()).is_none(),
                "should not parse: {s:?}"
            );
        }
    }

    #[test]
    fn rfc5118_three_colon_ipv6_reference_is_tolerated() {
        // RFC 5118 4.10: RFC 3261's ABNF yields `hexseq "::" ":" IPv4address`.
        let u = uri("sip:user@[2001:db8:::192.0.2.1]");
        assert_eq!(u.ip(), Some("2001:db8::c000:201".parse().unwrap()));
        assert_eq!(u.host(), b"[2001:db8:::192.0.2.1]", "written as received");
        assert_eq!(
            uri("sip:[:::192.0.2.1]:5070").ip(),
            Some("::192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            parse_host(b"[1:2:3:4:5:::192.0.2.1]").map(|ip| ip.is_some()),
            Some(true)
        );
        // Only right before an IPv4 tail, and only one extra colon.
        for bad in [
            "[2001:db8:::1]",
            "[2001:db8::::192.0.2.1]",
            "[2001::db8:::192.0.2.1]",
            "[2001:db8:::192.0.2]",
            "[:::]",
            "[1:2:3:4:5:6:7:::192.0.2.1]",
            "[ffff:ffff:ffff:ffff:ffff:ffff:::255.255.255.255]",
        ] {
            assert_eq!(parse_host(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn ipv4_from_bytes_agrees_with_std() {
        for text in [
            "0.0.0.0",
            "192.0.2.1",
            "255.255.255.255",
            "256.0.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1..2.3",
            "",
            "1.2.3.4.",
            "a.b.c.d",
            "1.2.3.04",
            "10.0.0.1000",
        ] {
            assert_eq!(
                parse_ipv4(text.as_bytes()),
                text.parse::<Ipv4Addr>().ok(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn port_bounds() {
        assert_eq!(parse_port(b"65535"), Some(65535));
        assert_eq!(parse_port(b"65536"), None);
        assert_eq!(parse_port(b"000005"), None);
        assert_eq!(parse_port(b""), None);
    }
}
