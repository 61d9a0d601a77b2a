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
        // Lower-case into a stack buffer, then one `match` on bytes: the compiler turns it
        // into a length switch and a few word compares.
        const LONGEST: usize = 16;
        if name.len() > LONGEST {
            return Other;
        }
        let mut lower = [0u8; LONGEST];
        for (l, c) in lower.iter_mut().zip(name) {
            *l = c.to_ascii_lowercase();
        }
        match &lower[..name.len()] {
            b"to" => To,
            b"via" => Via,
            b"cseq" => CSeq,
            b"from" => From,
            b"allow" => Allow,
            b"event" => Event,
            b"route" => Route,
            b"accept" => Accept,
            b"call-id" => CallId,
            b"contact" => Contact,
            b"require" => Require,
            b"subject" => Subject,
            b"identity" => Identity,
            b"refer-to" => ReferTo,
            b"supported" => Supported,
            b"referred-by" => ReferredBy,
            b"allow-events" => AllowEvents,
            b"content-type" => ContentType,
            b"max-forwards" => MaxForwards,
            b"record-route" => RecordRoute,
            b"proxy-require" => ProxyRequire,
            b"content-length" => ContentLength,
            b"session-expires" => SessionExpires,
            b"content-encoding" => ContentEncoding,
            _ => Other,
        }
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
