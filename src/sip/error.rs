//! Parse errors. Each `Display` text is a valid SIP reason phrase, so a 400 can carry it as is.

use super::HeaderName;

/// Why a message was refused. `Display` names the fault in a few words fit for a reason phrase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("Message Too Large")]
    TooLarge { size: usize, limit: usize },
    #[error("Too Many Headers")]
    TooManyHeaders { limit: usize },
    #[error("Line Too Long")]
    LineTooLong { limit: usize },
    /// The header section never ended with an empty line.
    #[error("Truncated Message")]
    Truncated,
    #[error("Bad Start Line")]
    BadStartLine,
    #[error("Bad Method")]
    BadMethod,
    #[error("Bad Request-URI")]
    BadRequestUri,
    #[error("Bad Status Code")]
    BadStatusCode,
    /// A well-formed `SIP/x.y` other than 2.0; a proxy answers 505.
    #[error("Version Not Supported")]
    VersionNotSupported,
    #[error("Bad Header Line")]
    BadHeaderLine,
    #[error("Missing {0}")]
    Missing(HeaderName),
    #[error("Multiple {0} Values")]
    Multiple(HeaderName),
    #[error("Bad {0}")]
    BadHeader(HeaderName),
    /// The CSeq method differs from the request method.
    #[error("CSeq Method Mismatch")]
    CSeqMethodMismatch,
    /// Content-Length promises more body than arrived.
    #[error("Content-Length Mismatch")]
    ContentLengthMismatch { declared: usize, available: usize },
}

impl ParseError {
    /// Every [`ParseError::kind`] label, in [`ParseError::kind_index`] order.
    pub const KINDS: [&'static str; 15] = [
        "too_large",
        "too_many_headers",
        "line_too_long",
        "truncated",
        "bad_start_line",
        "bad_method",
        "bad_request_uri",
        "bad_status_code",
        "version_not_supported",
        "bad_header_line",
        "missing_header",
        "multiple_values",
        "bad_header",
        "cseq_method_mismatch",
        "content_length_mismatch",
    ];

    /// The position of this error's label in [`ParseError::KINDS`], for metric handles kept in
    /// an array.
    pub const fn kind_index(self) -> usize {
        match self {
            ParseError::TooLarge { .. } => 0,
            ParseError::TooManyHeaders { .. } => 1,
            ParseError::LineTooLong { .. } => 2,
            ParseError::Truncated => 3,
            ParseError::BadStartLine => 4,
            ParseError::BadMethod => 5,
            ParseError::BadRequestUri => 6,
            ParseError::BadStatusCode => 7,
            ParseError::VersionNotSupported => 8,
            ParseError::BadHeaderLine => 9,
            ParseError::Missing(_) => 10,
            ParseError::Multiple(_) => 11,
            ParseError::BadHeader(_) => 12,
            ParseError::CSeqMethodMismatch => 13,
            ParseError::ContentLengthMismatch { .. } => 14,
        }
    }

    /// A short stable label for metrics (`parse_errors_total{kind=...}`).
    pub const fn kind(self) -> &'static str {
        Self::KINDS[self.kind_index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed() {
        let samples = [
            ParseError::TooLarge { size: 2, limit: 1 },
            ParseError::TooManyHeaders { limit: 1 },
            ParseError::LineTooLong { limit: 1 },
            ParseError::Truncated,
            ParseError::BadStartLine,
            ParseError::BadMethod,
            ParseError::BadRequestUri,
            ParseError::BadStatusCode,
            ParseError::VersionNotSupported,
            ParseError::BadHeaderLine,
            ParseError::Missing(HeaderName::Via),
            ParseError::Multiple(HeaderName::To),
            ParseError::BadHeader(HeaderName::CSeq),
            ParseError::CSeqMethodMismatch,
            ParseError::ContentLengthMismatch {
                declared: 2,
                available: 1,
            },
        ];
        for (i, e) in samples.into_iter().enumerate() {
            assert_eq!(e.kind_index(), i);
            assert_eq!(ParseError::KINDS[i], e.kind());
        }
    }

    #[test]
    fn display_is_a_reason_phrase() {
        assert_eq!(
            ParseError::BadHeader(HeaderName::CSeq).to_string(),
            "Bad CSeq"
        );
        assert_eq!(
            ParseError::Missing(HeaderName::CallId).to_string(),
            "Missing Call-ID"
        );
        assert_eq!(
            ParseError::ContentLengthMismatch {
                declared: 10,
                available: 2
            }
            .to_string(),
            "Content-Length Mismatch"
        );
        assert_eq!(
            ParseError::Multiple(HeaderName::ContentLength).to_string(),
            "Multiple Content-Length Values"
        );
    }
}
