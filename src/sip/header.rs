//! Header names: the ones a proxy looks at, recognised case-insensitively in long and
//! compact form (RFC 3261 7.3.3 and the registry's later compact forms).

use std::fmt;

/// A header the proxy knows by name, or `Other`. Compact forms map to the same variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderName {
    Accept,
    Allow,
    AllowEvents,
    CallId,
    Contact,
    ContentEncoding,
    ContentLength,
    ContentType,
    CSeq,
    Event,
    From,
    Identity,
    MaxForwards,
    ProxyRequire,
    RecordRoute,
    ReferTo,
    ReferredBy,
    Require,
    Route,
    SessionExpires,
    Subject,
    Supported,
    To,
    Via,
    Other,
}

impl HeaderName {
    /// Classifies a header name as it appeared on the wire.
    pub fn classify(name: &[u8]) -> HeaderName {
        use HeaderName::*;
        if let [c] = name {
            return match c.to_ascii_lowercase() {
                b'i' => CallId,
                b'm' => Contact,
                b'e' => ContentEncoding,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'f' => From,
                b's' => Subject,
                b'k' => Supported,
                b't' => To,
                b'v' => Via,
                b'o' => Event,
                b'r' => ReferTo,
                b'b' => ReferredBy,
                b'u' => AllowEvents,
                b'x' => SessionExpires,
                b'y' => Identity,
                _ => Other,
            };
        }
        let candidates: &[HeaderName] = match name.len() {
            2 => &[To],
            3 => &[Via],
            4 => &[CSeq, From],
            5 => &[Allow, Event, Route],
            6 => &[Accept],
            7 => &[CallId, Contact, Require, Subject],
            8 => &[Identity, ReferTo],
            9 => &[Supported],
            11 => &[ReferredBy],
            12 => &[AllowEvents, ContentType, MaxForwards, RecordRoute],
            13 => &[ProxyRequire],
            14 => &[ContentLength],
            15 => &[SessionExpires],
            16 => &[ContentEncoding],
            _ => &[],
        };
        candidates
            .iter()
            .copied()
            .find(|c| c.as_str().as_bytes().eq_ignore_ascii_case(name))
            .unwrap_or(Other)
    }

    /// The canonical long form, as the edge writes it.
    pub const fn as_str(self) -> &'static str {
        use HeaderName::*;
        match self {
            Accept => "Accept",
            Allow => "Allow",
            AllowEvents => "Allow-Events",
            CallId => "Call-ID",
            Contact => "Contact",
            ContentEncoding => "Content-Encoding",
            ContentLength => "Content-Length",
            ContentType => "Content-Type",
            CSeq => "CSeq",
            Event => "Event",
            From => "From",
            Identity => "Identity",
            MaxForwards => "Max-Forwards",
            ProxyRequire => "Proxy-Require",
            RecordRoute => "Record-Route",
            ReferTo => "Refer-To",
            ReferredBy => "Referred-By",
            Require => "Require",
            Route => "Route",
            SessionExpires => "Session-Expires",
            Subject => "Subject",
            Supported => "Supported",
            To => "To",
            Via => "Via",
            Other => "Header",
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderName::{self, *};

    #[test]
    fn compact_forms() {
        let table = [
            ("i", CallId),
            ("m", Contact),
            ("e", ContentEncoding),
            ("l", ContentLength),
            ("c", ContentType),
            ("f", From),
            ("s", Subject),
            ("k", Supported),
            ("t", To),
            ("v", Via),
            ("o", Event),
            ("r", ReferTo),
            ("b", ReferredBy),
            ("u", AllowEvents),
            ("x", SessionExpires),
            ("y", Identity),
            ("V", Via),
            ("I", CallId),
            ("z", Other),
        ];
        for (name, want) in table {
            assert_eq!(HeaderName::classify(name.as_bytes()), want, "{name}");
        }
    }

    #[test]
    fn long_forms_any_case() {
        for name in [
            Accept,
            Allow,
            AllowEvents,
            CallId,
            Contact,
            ContentEncoding,
            ContentLength,
            ContentType,
            CSeq,
            Event,
            From,
            Identity,
            MaxForwards,
            ProxyRequire,
            RecordRoute,
            ReferTo,
            ReferredBy,
            Require,
            Route,
            SessionExpires,
            Subject,
            Supported,
            To,
            Via,
        ] {
            let s = name.as_str();
            assert_eq!(HeaderName::classify(s.as_bytes()), name);
            assert_eq!(
                HeaderName::classify(s.to_ascii_lowercase().as_bytes()),
                name
            );
            assert_eq!(
                HeaderName::classify(s.to_ascii_uppercase().as_bytes()),
                name
            );
        }
        assert_eq!(HeaderName::classify(b"X-Custom"), Other);
        assert_eq!(HeaderName::classify(b""), Other);
    }
}
