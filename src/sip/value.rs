//! Parsers for header values a proxy must understand: comma-separated lists, Via, name-addr
//! (From, To, Route, Record-Route, Contact) and CSeq. They read spans of a message buffer and
//! return spans, so the message stays the only owner of bytes.
//!
//! Folded lines reach these parsers unchanged (`CRLF SP` inside a value), so every "skip
//! whitespace" here treats CR and LF as linear white space.

use std::net::IpAddr;

use super::uri::{parse_host, parse_port, parse_uri, UriSpans};
use super::Span;

// === lexical helpers ===

/// Character classes, one table lookup per byte on the hot paths.
const TOKEN: u8 = 1;
/// Never inside a URI: white space, controls, DEL, `<`, `>`, `"`.
const URI_FORBIDDEN: u8 = 2;
/// Host name characters (letters, digits, `-`, `.`, `_`).
const HOST_NAME: u8 = 4;

static CLASSES: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut class = 0;
        // RFC 3261 25.1 `token`.
        if c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            class |= TOKEN;
        }
        if c <= b' ' || c == 0x7f || matches!(c, b'<' | b'>' | b'"') {
            class |= URI_FORBIDDEN;
        }
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_') {
            class |= HOST_NAME;
        }
        table[b] = class;
        b += 1;
    }
    table
}

#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 3261 25.1 `token` characters.
#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    CLASSES[b as usize] & TOKEN != 0
}

#[inline]
pub(crate) fn is_uri_forbidden(b: u8) -> bool {
    CLASSES[b as usize] & URI_FORBIDDEN != 0
}

#[inline]
pub(crate) fn is_host_name_char(b: u8) -> bool {
    CLASSES[b as usize] & HOST_NAME != 0
}

#[inline]
pub(crate) fn skip_lws(buf: &[u8], mut pos: usize, end: usize) -> usize {
    while pos < end && is_lws(buf[pos]) {
        pos += 1;
    }
    pos
}

/// `span` without leading and trailing linear white space.
pub(crate) fn trim(buf: &[u8], span: Span) -> Span {
    let (mut s, mut e) = (span.start as usize, span.end as usize);
    while s < e && is_lws(buf[s]) {
        s += 1;
    }
    while e > s && is_lws(buf[e - 1]) {
        e -= 1;
    }
    Span::new(s, e)
}

/// End of a token starting at `pos` (== `pos` when there is none).
#[inline]
fn token_end(buf: &[u8], mut pos: usize, end: usize) -> usize {
    while pos < end && is_token(buf[pos]) {
        pos += 1;
    }
    pos
}

/// Position just past the closing quote of the quoted string opening at `pos`, honouring
/// `\` escapes; `None` when it is unterminated.
fn quoted_end(buf: &[u8], pos: usize, end: usize) -> Option<usize> {
    let mut i = pos + 1;
    while i < end {
        match buf[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

// === comma-separated lists ===

/// Splits a header value at commas that are outside quoted strings and angle brackets,
/// yielding trimmed, non-empty elements.
pub(crate) struct CommaSplit<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> CommaSplit<'a> {
    pub(crate) fn new(buf: &'a [u8], span: Span) -> Self {
        CommaSplit {
            buf,
            pos: span.start as usize,
            end: span.end as usize,
        }
    }
}

impl Iterator for CommaSplit<'_> {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        let hay = &self.buf[..self.end];
        while self.pos < self.end {
            let start = self.pos;
            let mut i = start;
            // Jump from one interesting byte to the next: a comma ends the element, a quote
            // opens a quoted string, `<` opens a URI that runs to `>`.
            while let Some(offset) = memchr::memchr3(b',', b'"', b'<', &hay[i..]) {
                i += offset;
                match hay[i] {
                    b',' => break,
                    b'"' => i = quoted_end(self.buf, i, self.end).unwrap_or(self.end),
                    _ => i = memchr::memchr(b'>', &hay[i..]).map_or(self.end, |o| i + o + 1),
                }
            }
            let i = if i < self.end && hay[i] == b',' {
                i
            } else {
                self.end
            };
            self.pos = i + 1;
            let element = trim(self.buf, Span::new(start, i));
            if !element.is_empty() {
                return Some(element);
            }
        }
        None
    }
}

// === generic ;name=value parameters ===

/// One `;name[=value]` parameter of a header value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Param {
    pub name: Span,
    pub value: Option<Span>,
}

/// Parses `*( SEMI generic-param )` from `pos` to `end`, calling `f` for each; returns the
/// end of the last parameter, or `None` when the text is not a parameter list.
fn parse_params(buf: &[u8], mut pos: usize, end: usize, mut f: impl FnMut(Param)) -> Option<usize> {
    let mut last = pos;
    loop {
        pos = skip_lws(buf, pos, end);
        if pos == end {
            return Some(last);
        }
        if buf[pos] != b';' {
            return None;
        }
        pos = skip_lws(buf, pos + 1, end);
        let name_end = token_end(buf, pos, end);
        if name_end == pos {
            return None;
        }
        let name = Span::new(pos, name_end);
        last = name_end;
        pos = skip_lws(buf, name_end, end);
        let mut value = None;
        if pos < end && buf[pos] == b'=' {
            pos = skip_lws(buf, pos + 1, end);
            let value_end = match buf.get(pos) {
                Some(b'"') => quoted_end(buf, pos, end)?,
                Some(b'[') => memchr::memchr(b']', &buf[pos..end])? + pos + 1,
                _ => {
                    let mut i = pos;
                    while i < end && !is_lws(buf[i]) && buf[i] != b';' && buf[i] != b',' {
                        // gen-value is a token, a host or a quoted string: angle brackets,
                        // quotes and controls never belong, and admitting them would let
                        // the comma splitter and this parser disagree on where values end.
                        if buf[i] < 0x20 || matches!(buf[i], 0x7f | b'<' | b'>' | b'"') {
                            return None;
                        }
                        i += 1;
                    }
                    i
                }
            };
            if value_end == pos {
                return None;
            }
            value = Some(Span::new(pos, value_end));
            last = value_end;
            pos = value_end;
        }
        f(Param { name, value });
    }
}

fn name_is(buf: &[u8], span: Span, name: &[u8]) -> bool {
    span.slice(buf).eq_ignore_ascii_case(name)
}

// === Via ===

/// What the top Via says about `rport` (RFC 3581).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rport {
    Absent,
    /// `;rport` with no value: the client asks for the source port to be filled in.
    Requested,
    Value(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ViaSpans {
    pub element: Span,
    pub transport: Span,
    pub host: Span,
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
    pub branch: Option<Span>,
    pub received: Option<Span>,
    pub rport: Rport,
    /// The `rport` parameter's name; a value is written right after it.
    pub rport_name: Option<Span>,
    pub rport_value: Option<Span>,
    /// Where a new parameter is appended: just past the last parameter (or the sent-by).
    pub params_end: u32,
}

/// The first via-parm of a Via field's value (the top Via when it is the first field).
pub(crate) fn parse_first_via(buf: &[u8], value: Span) -> Option<ViaSpans> {
    CommaSplit::new(buf, value)
        .next()
        .and_then(|element| parse_via(buf, element))
}

/// Parses one via-parm: `sent-protocol LWS sent-by *( SEMI via-params )`.
pub(crate) fn parse_via(buf: &[u8], element: Span) -> Option<ViaSpans> {
    let (start, end) = (element.start as usize, element.end as usize);
    // sent-protocol: name SLASH version SLASH transport, with LWS allowed around slashes.
    let mut pos = skip_lws(buf, start, end);
    let mut transport = Span::default();
    for part in 0..3 {
        if part > 0 {
            pos = skip_lws(buf, pos, end);
            if buf.get(pos) != Some(&b'/') || pos >= end {
                return None;
            }
            pos = skip_lws(buf, pos + 1, end);
        }
        let token = token_end(buf, pos, end);
        if token == pos {
            return None;
        }
        transport = Span::new(pos, token);
        pos = token;
    }
    let sent_by = skip_lws(buf, pos, end);
    if sent_by == pos || sent_by == end {
        return None;
    }
    // sent-by: host [ COLON port ]
    let mut host_end = sent_by;
    if buf[sent_by] == b'[' {
        host_end = memchr::memchr(b']', &buf[sent_by..end])? + sent_by + 1;
    } else {
        while host_end < end
            && (buf[host_end].is_ascii_alphanumeric()
                || matches!(buf[host_end], b'.' | b'-' | b'_'))
        {
            host_end += 1;
        }
    }
    let host = Span::new(sent_by, host_end);
    let ip = parse_host(host.slice(buf))?;
    pos = skip_lws(buf, host_end, end);
    let mut port = None;
    let mut params_end = host_end;
    if pos < end && buf[pos] == b':' {
        let p = skip_lws(buf, pos + 1, end);
        let mut q = p;
        while q < end && buf[q].is_ascii_digit() {
            q += 1;
        }
        port = Some(parse_port(&buf[p..q])?);
        params_end = q;
        pos = q;
    }
    let mut via = ViaSpans {
        element,
        transport,
        host,
        ip,
        port,
        branch: None,
        received: None,
        rport: Rport::Absent,
        rport_name: None,
        rport_value: None,
        params_end: params_end as u32,
    };
    let mut bad_rport = false;
    let last = parse_params(buf, pos, end, |p| {
        if name_is(buf, p.name, b"branch") {
            via.branch = p.value;
        } else if name_is(buf, p.name, b"received") {
            via.received = p.value;
        } else if name_is(buf, p.name, b"rport") {
            via.rport_name = Some(p.name);
            via.rport_value = p.value;
            via.rport = match p.value {
                None => Rport::Requested,
                Some(v) => match parse_port(v.slice(buf)) {
                    Some(port) => Rport::Value(port),
                    None => {
                        bad_rport = true;
                        Rport::Absent
                    }
                },
            };
        }
    })?;
    if bad_rport {
        return None;
    }
    via.params_end = via.params_end.max(last as u32);
    Some(via)
}

// === name-addr / addr-spec ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NameAddrSpans {
    pub element: Span,
    pub display: Option<Span>,
    pub uri: UriSpans,
    /// Header parameters after the URI (`;tag=...`), starting at the first `;`.
    pub params: Span,
    pub tag: Option<Span>,
}

/// Parses `( name-addr / addr-spec ) *( SEMI generic-param )`.
pub(crate) fn parse_name_addr(buf: &[u8], element: Span) -> Option<NameAddrSpans> {
    let element = trim(buf, element);
    let (start, end) = (element.start as usize, element.end as usize);
    if start == end {
        return None;
    }
    let (display, uri_span, params_start) = if buf[start] == b'"' {
        let q = quoted_end(buf, start, end)?;
        let lt = skip_lws(buf, q, end);
        if buf.get(lt) != Some(&b'<') || lt >= end {
            return None;
        }
        let gt = memchr::memchr(b'>', &buf[lt..end])? + lt;
        (
            Some(Span::new(start, q)),
            trim(buf, Span::new(lt + 1, gt)),
            gt + 1,
        )
    } else if let Some(lt) = memchr::memchr(b'<', &buf[start..end]).map(|i| i + start) {
        let display = trim(buf, Span::new(start, lt));
        if !display.slice(buf).iter().all(|&b| is_token(b) || is_lws(b)) {
            return None;
        }
        let gt = memchr::memchr(b'>', &buf[lt..end])? + lt;
        let display = (!display.is_empty()).then_some(display);
        (display, trim(buf, Span::new(lt + 1, gt)), gt + 1)
    } else {
        // addr-spec: header parameters start at the first semicolon (RFC 3261 20).
        let semi = memchr::memchr(b';', &buf[start..end]).map_or(end, |i| i + start);
        (None, trim(buf, Span::new(start, semi)), semi)
    };
    let uri = parse_uri(buf, uri_span)?;
    let mut tag = None;
    parse_params(buf, params_start, end, |p| {
        if name_is(buf, p.name, b"tag") {
            tag = p.value;
        }
    })?;
    let params = trim(buf, Span::new(params_start, end));
    Some(NameAddrSpans {
        element,
        display,
        uri,
        params,
        tag,
    })
}

// === CSeq ===

/// Parses `1*DIGIT LWS Method`, returning the number and the method's span.
pub(crate) fn parse_cseq(buf: &[u8], value: Span) -> Option<(u32, Span)> {
    let (start, end) = (value.start as usize, value.end as usize);
    let mut pos = start;
    let mut seq: u32 = 0;
    while pos < end && buf[pos].is_ascii_digit() {
        seq = seq
            .checked_mul(10)?
            .checked_add(u32::from(buf[pos] - b'0'))?;
        pos += 1;
    }
    let method_start = skip_lws(buf, pos, end);
    if pos == start || method_start == pos {
        return None;
    }
    let method_end = token_end(buf, method_start, end);
    if method_end == method_start || method_end != end {
        return None;
    }
    Some((seq, Span::new(method_start, method_end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(s: &[u8]) -> Span {
        Span::new(0, s.len())
    }

    fn split(s: &[u8]) -> Vec<&[u8]> {
        CommaSplit::new(s, whole(s)).map(|sp| sp.slice(s)).collect()
    }

    #[test]
    fn commas_inside_quotes_and_brackets_do_not_split() {
        let v = br#""Doe, John" <sip:a@b;x=1,2>, <sip:c@d> , sip:e@f"#;
        assert_eq!(
            split(v),
            vec![
                &br#""Doe, John" <sip:a@b;x=1,2>"#[..],
                b"<sip:c@d>",
                b"sip:e@f"
            ]
        );
        assert_eq!(split(b" , ,, "), Vec::<&[u8]>::new());
        assert_eq!(
            split(br#""a\",b" <sip:x>"#),
            vec![&br#""a\",b" <sip:x>"#[..]]
        );
    }

    #[test]
    fn via_with_folding_and_spaces() {
        let v = b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2 : 5070 ; branch = z9hG4bK1 ;rport ; received=10.0.0.1";
        let via = parse_via(v, whole(v)).expect("valid via");
        assert_eq!(via.transport.slice(v), b"UDP");
        assert_eq!(via.host.slice(v), b"192.0.2.2");
        assert_eq!(via.port, Some(5070));
        assert_eq!(via.branch.map(|s| s.slice(v)), Some(&b"z9hG4bK1"[..]));
        assert_eq!(via.received.map(|s| s.slice(v)), Some(&b"10.0.0.1"[..]));
        assert_eq!(via.rport, Rport::Requested);
        assert_eq!(via.params_end as usize, v.len());
    }

    #[test]
    fn via_ipv6_forms() {
        let v = b"SIP/2.0/UDP [2001:db8::9:1]:5060;branch=z9hG4bKas3;received=[2001:db8::9:255]";
        let via = parse_via(v, whole(v)).expect("valid via");
        assert_eq!(via.ip, Some("2001:db8::9:1".parse().unwrap()));
        assert_eq!(via.port, Some(5060));
        assert_eq!(
            via.received.map(|s| s.slice(v)),
            Some(&b"[2001:db8::9:255]"[..])
        );
        let v = b"SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;rport=5061";
        let via = parse_via(v, whole(v)).expect("valid via");
        assert_eq!(
            via.received.map(|s| s.slice(v)),
            Some(&b"2001:db8::9:255"[..])
        );
        assert_eq!(via.rport, Rport::Value(5061));
    }

    #[test]
    fn bad_vias() {
        for v in [
            // Found by the parse_message fuzzer: an unquoted `<` and `>` in two parameters
            // made the comma splitter see one Via value where this parser saw two.
            &b"SIP/2.0/UDP h;x=<;received=>"[..],
            b"SIP/2.0/UDP h;x=a\x06b",
            b"SIP/2.0/UDP h;x=a\"b",
            b"SIP/2.0/UDP",
            b"SIP/2.0 UDP host",
            b"SIP/2.0/UDP host:99999",
            b"SIP/2.0/UDP host:",
            b"SIP/2.0/UDP [::1",
            b"SIP/2.0/UDP host;",
            b"SIP/2.0/UDP host junk",
            b"SIP/2.0/UDP host;rport=abc",
            b"",
        ] {
            assert!(
                parse_via(v, whole(v)).is_none(),
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
    }

    #[test]
    fn name_addr_forms() {
        let v = br#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#;
        let na = parse_name_addr(v, whole(v)).expect("valid");
        assert_eq!(
            na.display.map(|s| s.slice(v)),
            Some(&br#""J Rosenberg \\\"""#[..])
        );
        assert_eq!(na.uri.whole.slice(v), b"sip:jdrosen@example.com");
        assert_eq!(na.tag.map(|s| s.slice(v)), Some(&b"98asjd8"[..]));

        let v = b"sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n";
        let na = parse_name_addr(v, whole(v)).expect("valid");
        assert_eq!(na.uri.whole.slice(v), b"sip:vivekg@chair-dnrc.example.com");
        assert_eq!(na.tag.map(|s| s.slice(v)), Some(&b"1918181833n"[..]));

        let v = b"caller<sip:caller@example.com>;tag=323";
        let na = parse_name_addr(v, whole(v)).expect("valid");
        assert_eq!(na.display.map(|s| s.slice(v)), Some(&b"caller"[..]));
        assert_eq!(na.tag.map(|s| s.slice(v)), Some(&b"323"[..]));

        let v = b"<sip:p1.example.com;lr>";
        let na = parse_name_addr(v, whole(v)).expect("valid");
        assert!(na.tag.is_none());
        assert!(na.params.is_empty());
    }

    #[test]
    fn bad_name_addrs() {
        for v in [
            &br#""Mr J. User <sip:j.user@example.com>"#[..],
            b"Bell, Alexander <sip:a.g.bell@bell-tel.com>;tag=43",
            b"<sip:a@b",
            b"<sip:a@b> junk",
            b"",
            b"<>",
        ] {
            assert!(
                parse_name_addr(v, whole(v)).is_none(),
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
    }

    #[test]
    fn cseq_forms() {
        let v = b"0009\r\n  INVITE";
        let (seq, m) = parse_cseq(v, whole(v)).expect("valid");
        assert_eq!((seq, m.slice(v)), (9, &b"INVITE"[..]));
        for v in [
            &b"INVITE"[..],
            b"1",
            b"1INVITE",
            b"-1 INVITE",
            b"36893488147419103232 INVITE",
            b"1 INVITE x",
        ] {
            assert!(
                parse_cseq(v, whole(v)).is_none(),
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
        let v = b"4294967295 ACK";
        assert_eq!(parse_cseq(v, whole(v)).map(|c| c.0), Some(u32::MAX));
    }
}
