//! RFC 4475 (SIP torture test messages, section 3) and RFC 5118 (IPv6 torture tests, section 4)
//! against the SIP message layer, one test per RFC case.
//!
//! The messages are written for this file in the spirit of each RFC case, keeping the bytes that
//! make the case hard: folding, escaped quotes, control octets inside quoted strings, `%00`,
//! non-UTF-8 octets, stray separators. Every valid message parses, its typed views say what the
//! RFC says they hold, and writing it back without edits gives the input byte for byte. Every
//! invalid message is refused with the error that names its fault; a refused request still
//! gets a 400 built from its own headers. A message the RFC calls invalid only because of a
//! header a proxy never interprets is accepted, and its test says so. The last tests cut the
//! valid messages off a TCP stream one byte at a time.

use std::net::IpAddr;

use bytes::{Bytes, BytesMut};
use warp_edge::sip::{
    unescape, Frame, Framing, HeaderName, Limits, Message, Method, ParseError, RawMessage,
    ResponseBuilder, Rport, Scheme, StreamFramer, Transport,
};

// === helpers ===

/// Joins the start line and header lines with CRLF, ends the header section and appends `body`.
fn sip(head: &[&[u8]], body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(1024);
    for line in head {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Bytes::from(out)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

/// The message written back with no edits.
fn written(msg: &Message) -> Bytes {
    let mut out = BytesMut::new();
    msg.write(&[], &mut out).expect("no edits cannot fail");
    out.freeze()
}

/// Parses a message that must be accepted: both parse paths agree, and a Content-Length, when
/// present, is exactly the body.
fn accepted(bytes: &Bytes) -> Message {
    let msg = Message::parse(bytes.clone())
        .unwrap_or_else(|e| panic!("refused with {e:?}:\n{}", lossy(bytes)));
    let raw = RawMessage::scan(bytes.clone(), Framing::Datagram, &Limits::default())
        .expect("a parsed message scans");
    if let Err(rejected) = Message::validate(raw) {
        panic!("validate refused with {:?}", rejected.error);
    }
    if let Some(declared) = msg.content_length() {
        assert_eq!(
            declared as usize,
            msg.body().len(),
            "Content-Length frames the body"
        );
    }
    msg
}

/// [`accepted`], and written back without edits the message is the input byte for byte.
fn valid(bytes: &Bytes) -> Message {
    let msg = accepted(bytes);
    assert_eq!(written(&msg), *bytes, "round trip is byte-exact");
    msg
}

/// Parses a message that must be refused and returns why. Both parse paths give the same
/// error; a request refused after scanning is kept whole and can still be answered with a 400
/// built from its own headers.
fn invalid(bytes: &Bytes) -> ParseError {
    let error = match Message::parse(bytes.clone()) {
        Ok(_) => panic!("accepted:\n{}", lossy(bytes)),
        Err(e) => e,
    };
    match RawMessage::scan(bytes.clone(), Framing::Datagram, &Limits::default()) {
        Err(e) => assert_eq!(e, error, "scan gives the same error"),
        Ok(raw) => {
            let rejected = Message::validate(raw).expect_err("validate refuses");
            assert_eq!(rejected.error, error, "validate gives the same error");
            assert_eq!(rejected.raw.bytes(), bytes, "the scanned message is kept");
            if rejected.raw.is_request() {
                let reason = error.to_string();
                let response = ResponseBuilder::new(&rejected.raw, 400)
                    .reason(&reason)
                    .to_tag(b"torture")
                    .build();
                let status = format!("SIP/2.0 400 {reason}\r\n");
                assert!(
                    response.starts_with(status.as_bytes()),
                    "{}",
                    lossy(&response)
                );
                assert!(response.ends_with(b"Content-Length: 0\r\n\r\n"));
            }
        }
    }
    error
}

/// Transport, host and branch of every Via value, top first.
fn via_list(msg: &Message) -> Vec<(Transport, Vec<u8>, Option<Vec<u8>>)> {
    msg.vias()
        .map(|via| via.expect("every Via value is valid"))
        .map(|via| {
            (
                via.transport(),
                via.host().to_vec(),
                via.branch().map(<[u8]>::to_vec),
            )
        })
        .collect()
}

/// Feeds `stream` to a framer one byte at a time and returns each message it cuts (pings are
/// skipped) with the number of bytes that had been fed when it was cut.
fn frame_bytewise(stream: &[u8]) -> Result<Vec<(usize, RawMessage)>, ParseError> {
    let mut framer = StreamFramer::new(Limits::default());
    let mut out = Vec::new();
    for (i, byte) in stream.iter().enumerate() {
        framer.extend(std::slice::from_ref(byte));
        while let Some(frame) = framer.next_frame()? {
            if let Frame::Message(raw) = frame {
                out.push((i + 1, raw));
            }
        }
    }
    Ok(out)
}

/// A 149-octet SDP offer shared by the messages that carry one.
const SDP: &[u8] = b"v=0\r\n\
o=torture 29739 7272939 IN IP4 192.0.2.3\r\n\
s=-\r\n\
c=IN IP4 192.0.2.4\r\n\
t=0 0\r\n\
m=audio 49217 RTP/AVP 0 12\r\n\
m=video 3227 RTP/AVP 31\r\n\
a=rtpmap:31 LPC\r\n";

// === RFC 4475 3.1.1: valid messages ===

fn wsinv() -> Bytes {
    sip(
        &[
            b"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0",
            b"TO :",
            b" sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n",
            br#"from   : "J Rosenberg \\\""       <sip:jdrosen@example.com>"#,
            b"  ;",
            b"  tag = 98asjd8",
            b"MaX-fOrWaRdS: 0068",
            b"Call-ID: wsinv.torture-1@192.0.2.1",
            b"Content-Length   : 149",
            b"cseq: 0009",
            b"  INVITE",
            b"Via  : SIP  /   2.0",
            b" /UDP",
            b"    192.0.2.2;branch=390skdjuw",
            b"s :",
            b"NewFangledHeader:   newfangled value",
            b" continued newfangled value",
            b"UnknownHeaderWithUnusualValue: ;;,,;;,;",
            b"Content-Type: application/sdp",
            b"Route:",
            b" <sip:services.example.com;lr;unknownwith=value;unknown-no-value>",
            b"v:  SIP  / 2.0  / TCP     spindle.example.com   ;",
            b"  branch  =   z9hG4bK9ikj8  ,",
            b" SIP  /    2.0   / UDP  192.168.255.111   ; branch=",
            b" z9hG4bK30239",
            br#"m:"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam ="#,
            b"      newvalue ;",
            b"  secondparam ; q = 0.33",
        ],
        SDP,
    )
}

#[test]
fn rfc4475_wsinv() {
    // RFC 4475 3.1.1.1: A Short Tortuous INVITE.
    let msg = valid(&wsinv());
    assert_eq!(msg.method(), Some(Method::Invite));
    let uri = msg.request_uri().expect("a request");
    assert_eq!(uri.user(), Some(&b"vivekg"[..]));
    assert_eq!(uri.host(), b"chair-dnrc.example.com");
    assert_eq!(uri.param(b"unknownparam"), Some(&b""[..]));
    assert_eq!(
        msg.to().uri().as_bytes(),
        b"sip:vivekg@chair-dnrc.example.com"
    );
    assert_eq!(msg.to().tag(), Some(&b"1918181833n"[..]));
    assert_eq!(
        msg.from().display_name(),
        Some(&br#""J Rosenberg \\\"""#[..])
    );
    assert_eq!(msg.from().uri().host(), b"example.com");
    assert_eq!(msg.from().tag(), Some(&b"98asjd8"[..]));
    assert_eq!(msg.max_forwards(), Some(68), "leading zeros");
    assert_eq!(msg.call_id(), b"wsinv.torture-1@192.0.2.1");
    assert_eq!((msg.cseq().seq, msg.cseq().method), (9, Method::Invite));
    let top = msg.top_via();
    assert_eq!(top.transport(), Transport::Udp);
    assert_eq!(top.host(), b"192.0.2.2");
    assert_eq!(top.ip(), Some(ip("192.0.2.2")));
    assert_eq!(top.port(), None);
    assert_eq!(top.branch(), Some(&b"390skdjuw"[..]));
    assert!(!top.is_rfc3261_branch());
    assert_eq!(
        via_list(&msg),
        vec![
            (
                Transport::Udp,
                b"192.0.2.2".to_vec(),
                Some(b"390skdjuw".to_vec())
            ),
            (
                Transport::Tcp,
                b"spindle.example.com".to_vec(),
                Some(b"z9hG4bK9ikj8".to_vec())
            ),
            (
                Transport::Udp,
                b"192.168.255.111".to_vec(),
                Some(b"z9hG4bK30239".to_vec())
            ),
        ],
        "a long and a compact Via field, folded, comma-separated"
    );
    assert_eq!(msg.header(HeaderName::Subject), Some(&b""[..]), "empty s:");
    assert_eq!(
        msg.header_values(b"newfangledheader").collect::<Vec<_>>(),
        vec![&b"newfangled value\r\n continued newfangled value"[..]],
        "a folded unknown header keeps its fold"
    );
    assert_eq!(
        msg.header_values(b"UnknownHeaderWithUnusualValue")
            .collect::<Vec<_>>(),
        vec![&b";;,,;;,;"[..]]
    );
    let routes: Vec<_> = msg.routes().map(|r| r.expect("valid Route")).collect();
    assert_eq!(routes.len(), 1);
    assert!(routes[0].is_loose_route());
    assert_eq!(routes[0].uri().host(), b"services.example.com");
    assert_eq!(routes[0].uri().param(b"unknownwith"), Some(&b"value"[..]));
    let contacts: Vec<_> = msg.contacts().map(|c| c.expect("valid Contact")).collect();
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        contacts[0].display_name(),
        Some(&br#""Quoted string \"\"""#[..])
    );
    assert_eq!(contacts[0].uri().as_bytes(), b"sip:jdrosen@example.com");
    assert!(contacts[0].params().starts_with(b"; newparam ="));
    assert!(contacts[0].params().ends_with(b"secondparam ; q = 0.33"));
    assert_eq!(
        msg.header(HeaderName::ContentType),
        Some(&b"application/sdp"[..])
    );
    assert_eq!(msg.content_length(), Some(149));
    assert_eq!(msg.body(), SDP);
}

/// `!interesting-Method0123456789_*+`.%indeed'~`: every non-alphanumeric token character.
const ODD_METHOD: &[u8] = b"!interesting-Method0123456789_*+`.%indeed'~";

fn intmeth() -> Bytes {
    sip(
        &[
            b"!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0",
            b"Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
            // Quoted pairs escaping BEL, NUL and DEL.
            b"To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>",
            // A token display name, and a UTF-8 quoted parameter value.
            b"From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com> ;fromParam''~+*_!.-%=\"\xd1\x80\xd0\xb0\xd0\xb1\xd0\xbe\xd1\x82\xd0\xb0\xd1\x8e\xd1\x89\xd0\xb8\xd0\xb9\";tag=_token~1'+`*%!-.",
            br#"Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{"#,
            b"CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~",
            b"Max-Forwards: 255",
            b"extensionHeader-!.%*+_`'~:\xef\xbb\xbf\xe5\xa4\xa7\xe5\x81\x9c\xe9\x9b\xbb",
            b"Content-Length: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_intmeth() {
    // RFC 4475 3.1.1.2: Wide Range of Valid Characters.
    let msg = valid(&intmeth());
    assert_eq!(
        msg.method(),
        Some(Method::Other),
        "% is no escape in a method"
    );
    assert_eq!(msg.method_bytes(), ODD_METHOD);
    assert_eq!(msg.cseq().method_bytes, ODD_METHOD);
    assert_eq!(msg.cseq().seq, 139_122_385);
    let uri = msg.request_uri().expect("a request");
    assert_eq!(uri.scheme(), Scheme::Sip);
    assert_eq!(
        uri.user(),
        Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
    );
    assert_eq!(
        uri.password(),
        Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
    );
    assert_eq!(uri.host(), b"example.com");
    assert_eq!(uri.port(), None);
    assert_eq!(msg.top_via().branch(), Some(&b"z9hG4bK-.!%66*_+`'~"[..]));
    assert!(msg.top_via().is_rfc3261_branch());
    assert_eq!(
        msg.to().display_name(),
        Some(&b"\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\""[..])
    );
    assert_eq!(
        msg.to().uri().user(),
        Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
    );
    assert_eq!(msg.to().tag(), None);
    assert_eq!(
        msg.from().display_name(),
        Some(&b"token1~` token2'+_ token3*%!.-"[..])
    );
    assert_eq!(msg.from().tag(), Some(&b"_token~1'+`*%!-."[..]));
    assert!(msg
        .from()
        .params()
        .windows(4)
        .any(|w| w == b"\"\xd1\x80\xd0"));
    assert_eq!(
        msg.call_id(),
        br#"intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{"#
    );
    assert_eq!(msg.max_forwards(), Some(255));
    assert_eq!(
        msg.header_values(b"extensionheader-!.%*+_`'~")
            .collect::<Vec<_>>(),
        vec![&b"\xef\xbb\xbf\xe5\xa4\xa7\xe5\x81\x9c\xe9\x9b\xbb"[..]]
    );
    assert_eq!(msg.content_length(), Some(0));
}

fn esc01() -> Bytes {
    sip(
        &[
            b"INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0",
            b"To: sip:%75se%72@example.com",
            b"From: <sip:I%20have%20spaces@example.net>;tag=1928",
            b"Max-Forwards: 87",
            b"i: esc01.torture-239409asdfakjkn23onasd0-3234",
            b"CSeq: 234234 INVITE",
            b"Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw",
            b"C: application/sdp",
            b"Contact:",
            b"  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>",
            b"Content-Length: 149",
        ],
        SDP,
    )
}

#[test]
fn rfc4475_esc01() {
    // RFC 4475 3.1.1.3: Valid Use of the % Escaping Mechanism.
    let msg = valid(&esc01());
    let uri = msg.request_uri().expect("a request");
    assert_eq!(uri.user(), Some(&b"sips%3Auser%40example.com"[..]));
    assert_eq!(
        unescape(uri.user().unwrap_or_default()),
        b"sips:user@example.com"
    );
    assert_eq!(
        uri.host(),
        b"example.net",
        "the escaped @ is not the host separator"
    );
    assert_eq!(msg.to().uri().user(), Some(&b"%75se%72"[..]));
    assert_eq!(unescape(msg.to().uri().user().unwrap_or_default()), b"user");
    assert_eq!(
        unescape(msg.from().uri().user().unwrap_or_default()),
        b"I have spaces"
    );
    assert_eq!(msg.from().tag(), Some(&b"1928"[..]));
    assert_eq!(msg.call_id(), b"esc01.torture-239409asdfakjkn23onasd0-3234");
    assert_eq!(
        msg.header(HeaderName::ContentType),
        Some(&b"application/sdp"[..])
    );
    let contact = msg.contacts().next().expect("a Contact").expect("valid");
    assert_eq!(contact.uri().user(), Some(&b"cal%6Cer"[..]));
    assert_eq!(contact.uri().params(), b";%6C%72;n%61me=v%61lue%25%34%31");
    assert_eq!(msg.max_forwards(), Some(87));
    assert_eq!(msg.body(), SDP);
}

fn escnull() -> Bytes {
    sip(
        &[
            b"REGISTER sip:example.com SIP/2.0",
            b"To: sip:null-%00-null@example.com",
            b"From: sip:null-%00-null@example.com;tag=839923423",
            b"Max-Forwards: 70",
            b"Call-ID: escnull.torture-39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
            b"CSeq: 14398234 REGISTER",
            b"Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw",
            b"Contact: <sip:%00@host5.example.com>",
            b"Contact: <sip:%00%00@host5.example.com>",
            b"L:0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_escnull() {
    // RFC 4475 3.1.1.4: Escaped Nulls in URIs.
    let msg = valid(&escnull());
    assert_eq!(msg.method(), Some(Method::Register));
    assert_eq!(msg.to().uri().user(), Some(&b"null-%00-null"[..]));
    assert_eq!(
        unescape(msg.to().uri().user().unwrap_or_default()),
        b"null-\x00-null"
    );
    assert_eq!(msg.from().tag(), Some(&b"839923423"[..]));
    let users: Vec<_> = msg
        .contacts()
        .map(|c| c.expect("valid Contact").uri().user().map(<[u8]>::to_vec))
        .collect();
    assert_eq!(users, vec![Some(b"%00".to_vec()), Some(b"%00%00".to_vec())]);
    assert_eq!(msg.content_length(), Some(0), "compact L:0");
}

fn esc02() -> Bytes {
    sip(
        &[
            b"RE%47IST%45R sip:registrar.example.com SIP/2.0",
            br#"To: "%Z%45" <sip:resource@example.com>"#,
            br#"From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23"#,
            b"Call-ID: esc02.torture-asdfnqwo34rq23i34jrjasdcnl23nrlknsdf",
            b"Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234",
            b"CSeq: 29344 RE%47IST%45R",
            b"Max-Forwards: 70",
            b"Contact: <sip:alias1@host1.example.com>",
            b"C%6Fntact: <sip:alias2@host2.example.com>",
            b"Contact: <sip:alias3@host3.example.com>",
            b"l: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_esc02() {
    // RFC 4475 3.1.1.5: Use of % When It Is Not an Escape.
    let msg = valid(&esc02());
    assert_eq!(
        msg.method(),
        Some(Method::Other),
        "RE%47IST%45R is not REGISTER"
    );
    assert_eq!(msg.method_bytes(), b"RE%47IST%45R");
    assert_eq!(msg.cseq().method_bytes, b"RE%47IST%45R");
    assert_eq!(msg.to().display_name(), Some(&br#""%Z%45""#[..]));
    assert_eq!(msg.top_via().branch(), Some(&b"z9hG4bK209%fzsnel234"[..]));
    let hosts: Vec<_> = msg
        .contacts()
        .map(|c| c.expect("valid Contact").uri().host().to_vec())
        .collect();
    assert_eq!(
        hosts,
        vec![b"host1.example.com".to_vec(), b"host3.example.com".to_vec()],
        "C%6Fntact is an unknown header, not a Contact"
    );
    assert_eq!(
        msg.header_values(b"C%6Fntact").collect::<Vec<_>>(),
        vec![&b"<sip:alias2@host2.example.com>"[..]]
    );
}

fn lwsdisp() -> Bytes {
    sip(
        &[
            b"OPTIONS sip:user@example.com SIP/2.0",
            b"To: sip:user@example.com",
            b"From: caller<sip:caller@example.com>;tag=323",
            b"Max-Forwards: 70",
            b"Call-ID: lwsdisp.torture-1234abcd@funky.example.com",
            b"CSeq: 60 OPTIONS",
            b"Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw",
            b"l: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_lwsdisp() {
    // RFC 4475 3.1.1.6: Message with No LWS between Display Name and <.
    let msg = valid(&lwsdisp());
    assert_eq!(msg.from().display_name(), Some(&b"caller"[..]));
    assert_eq!(msg.from().uri().as_bytes(), b"sip:caller@example.com");
    assert_eq!(msg.from().tag(), Some(&b"323"[..]));
    assert_eq!(msg.cseq().method, Method::Options);
}

/// Pieces of the long values in [`longreq`].
fn long_branch() -> String {
    format!("very{}branchvalue", "long".repeat(50))
}

fn long_tag() -> String {
    format!("1{}424", "298".repeat(50))
}

fn long_caller() -> String {
    "amazinglylongcallername".repeat(5)
}

fn longreq() -> Bytes {
    let long = "long".repeat(20);
    let mut head = vec![
        "INVITE sip:user@example.com SIP/2.0".to_owned(),
        format!(
            "To: \"I have a user name of {} proportion\" <sip:user@example.com:6000;unknownparam1=very{long}value;longparam{}=shortvalue;very{long}ParameterNameWithNoValue>",
            "extreme ".repeat(10).trim_end(),
            "name".repeat(25),
        ),
        format!(
            "F: sip:{}@example.net;tag={};unknownheaderparam{}=unknowheaderparam{};unknownValueless{}",
            long_caller(),
            long_tag(),
            "name".repeat(20),
            "value".repeat(15),
            "paramname".repeat(10),
        ),
        format!("Call-ID: longreq.one{}longcallid", "really".repeat(20)),
        "CSeq: 3882340 INVITE".to_owned(),
        format!(
            "Unknown-{}-Name:unknown-{long}-value;unknown-{long}-parameter-name =unknown-{long}-parameter-value",
            "Long".repeat(20)
        ),
    ];
    // Every spelling of Via, long and compact, with and without space before the colon.
    let names = [
        "Via", "v", "V", "Via", "ViA", "VIa", "VIA", "via", "viA", "vIa", "vIA", "V ", "v ", "V  ",
        "v  ", "Via ", "Via  ",
    ];
    for n in (1..=33).rev() {
        let name = names.get(33 - n).copied().unwrap_or("Via");
        head.push(format!("{name}: SIP/2.0/TCP sip{n}.example.com"));
    }
    head.push(format!(
        "Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch={}",
        long_branch()
    ));
    head.push("Max-Forwards: 70".to_owned());
    head.push(format!(
        "Contact: <sip:{}@host5.example.net>",
        long_caller()
    ));
    head.push("Content-Type: application/sdp".to_owned());
    head.push("l: 149".to_owned());
    let lines: Vec<&[u8]> = head.iter().map(|l| l.as_bytes()).collect();
    sip(&lines, SDP)
}

#[test]
fn rfc4475_longreq() {
    // RFC 4475 3.1.1.7: Long Values in Header Fields.
    let msg = valid(&longreq());
    let to = msg.to();
    assert_eq!(to.uri().port(), Some(6000));
    assert_eq!(to.uri().host(), b"example.com");
    assert!(to
        .uri()
        .param(&format!("very{}ParameterNameWithNoValue", "long".repeat(20)).into_bytes())
        .is_some());
    assert!(to.display_name().is_some_and(|d| d.len() > 100));
    assert_eq!(msg.from().tag(), Some(long_tag().as_bytes()));
    assert_eq!(msg.from().uri().user(), Some(long_caller().as_bytes()));
    assert_eq!(
        msg.call_id(),
        format!("longreq.one{}longcallid", "really".repeat(20)).as_bytes()
    );
    let vias = via_list(&msg);
    assert_eq!(vias.len(), 34);
    assert_eq!(
        vias[0],
        (Transport::Tcp, b"sip33.example.com".to_vec(), None),
        "the top Via has no branch"
    );
    assert_eq!(vias[32].1, b"sip1.example.com");
    let bottom = msg.vias().last().expect("34 Vias").expect("valid");
    assert_eq!(bottom.received(), Some(&b"192.0.2.5"[..]));
    assert_eq!(bottom.branch(), Some(long_branch().as_bytes()));
    let contact = msg.contacts().next().expect("a Contact").expect("valid");
    assert_eq!(contact.uri().user(), Some(long_caller().as_bytes()));
    assert_eq!(msg.max_forwards(), Some(70));
    assert_eq!(msg.content_length(), Some(149));
}

fn dblreq_register() -> Bytes {
    sip(
        &[
            b"REGISTER sip:example.com SIP/2.0",
            b"To: sip:j.user@example.com",
            b"From: sip:j.user@example.com;tag=43251j3j324",
            b"Max-Forwards: 8",
            b"I: dblreq.torture-0ha0isndaksdj99sdfafnl3lk233412",
            b"Contact: sip:j.user@host.example.com",
            b"CSeq: 8 REGISTER",
            b"Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492",
            b"Content-Length: 0",
        ],
        b"",
    )
}

fn dblreq_invite() -> Bytes {
    sip(
        &[
            b"INVITE sip:joe@example.com SIP/2.0",
            b"t: sip:joe@example.com",
            b"From: sip:caller@example.net;tag=141334",
            b"Max-Forwards: 8",
            b"Call-ID: dblreq.torture-0ha0isnda977644900765@192.0.2.15",
            b"CSeq: 8 INVITE",
            b"Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234",
            b"Content-Type: application/sdp",
            b"Content-Length: 149",
        ],
        SDP,
    )
}

/// One datagram: a REGISTER with `Content-Length: 0`, then a whole INVITE.
fn dblreq() -> Bytes {
    [dblreq_register(), dblreq_invite()].concat().into()
}

#[test]
fn rfc4475_dblreq() {
    // RFC 4475 3.1.1.8: Extra Trailing Octets in a UDP Datagram.
    let datagram = dblreq();
    let msg = accepted(&datagram);
    assert_eq!(msg.method(), Some(Method::Register));
    assert_eq!(
        msg.call_id(),
        b"dblreq.torture-0ha0isndaksdj99sdfafnl3lk233412",
        "compact I:"
    );
    assert_eq!(msg.content_length(), Some(0));
    assert!(
        msg.body().is_empty(),
        "the INVITE is not the REGISTER's body"
    );
    assert_eq!(
        written(&msg),
        dblreq_register(),
        "only the REGISTER is forwarded; the trailing octets are dropped"
    );
    // The trailing octets are an ordinary INVITE, which a datagram parser must not see.
    assert_eq!(valid(&dblreq_invite()).method(), Some(Method::Invite));
}

fn semiuri() -> Bytes {
    sip(
        &[
            b"OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0",
            b"To: sip:j_user@example.com",
            b"From: sip:caller@example.org;tag=33242",
            b"Max-Forwards: 3",
            b"Call-ID: semiuri.torture-0ha0isndaksdj",
            b"CSeq: 8 OPTIONS",
            b"Accept: application/sdp, application/pkcs7-mime,",
            b"  multipart/mixed, multipart/signed,",
            b"  message/sip, message/sipfrag",
            b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw",
            b"l: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_semiuri() {
    // RFC 4475 3.1.1.9: Semicolon-Separated Parameters in URI User Part.
    let msg = valid(&semiuri());
    let uri = msg.request_uri().expect("a request");
    assert_eq!(uri.user(), Some(&b"user;par=u%40example.net"[..]));
    assert_eq!(uri.host(), b"example.com");
    assert_eq!(uri.params(), b"", "the semicolon belongs to the user part");
    assert_eq!(
        msg.header(HeaderName::Accept),
        Some(&b"application/sdp, application/pkcs7-mime,\r\n  multipart/mixed, multipart/signed,\r\n  message/sip, message/sipfrag"[..])
    );
    assert_eq!(msg.max_forwards(), Some(3));
}

fn transports() -> Bytes {
    sip(
        &[
            b"OPTIONS sip:user@example.com SIP/2.0",
            b"To: sip:user@example.com",
            b"From: <sip:caller@example.com>;tag=323",
            b"Max-Forwards: 70",
            b"Call-ID:  transports.torture-kijh4akdnaqjkwendsasfdj",
            b"Accept: application/sdp",
            b"CSeq: 60 OPTIONS",
            b"Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw",
            b"Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf",
            b"Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj",
            b"Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
            b"Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee",
            b"l: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_transports() {
    // RFC 4475 3.1.1.10: Varied and Unknown Transport Types.
    let msg = valid(&transports());
    let got: Vec<_> = via_list(&msg)
        .into_iter()
        .map(|(transport, host, _)| (transport, host))
        .collect();
    assert_eq!(
        got,
        vec![
            (Transport::Udp, b"t1.example.com".to_vec()),
            (Transport::Sctp, b"t2.example.com".to_vec()),
            (Transport::Tls, b"t3.example.com".to_vec()),
            (Transport::Other, b"t4.example.com".to_vec()),
            (Transport::Tcp, b"t5.example.com".to_vec()),
        ]
    );
    let unknown = msg.vias().nth(3).expect("five Vias").expect("valid");
    assert_eq!(unknown.transport_bytes(), b"UNKNOWN");
    assert_eq!(msg.call_id(), b"transports.torture-kijh4akdnaqjkwendsasfdj");
}

/// A binary part with NUL, bare CR LF, an empty line and octets that are not UTF-8.
const BINARY_PART: &[u8] =
    b"\x30\x82\x01\x52\x06\x09\x2a\x86\r\n\x48\x86\xf7\x0d\x01\x07\x02\xa0\x00\x00\r\n\r\n\xff\xfe\x80\x22\x5c\x3c\x3e";

fn mpart01_body() -> Vec<u8> {
    [
        &b"--7a9cbec02ceef655\r\n\
Content-Type: text/plain\r\n\
Content-Transfer-Encoding: binary\r\n\
\r\n\
Hello\r\n\
--7a9cbec02ceef655\r\n\
Content-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: binary\r\n\
\r\n"[..],
        BINARY_PART,
        b"\r\n--7a9cbec02ceef655--\r\n",
    ]
    .concat()
}

fn mpart01() -> Bytes {
    sip(
        &[
            b"MESSAGE sip:kumiko@example.org SIP/2.0",
            b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport",
            b"Max-Forwards: 70",
            b"Route: <sip:127.0.0.1:5080>",
            b"Identity: dG9ydHVyZSB0ZXN0IGlkZW50aXR5IHNpZ25hdHVyZSwgbm90IGEgcmVhbCBvbmU/+0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY=",
            b"Contact: <sip:fluffy@127.0.0.1:5070>",
            b"To: <sip:kumiko@example.org>",
            b"From: <sip:fluffy@example.com>;tag=2fb0dcc9",
            b"Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..",
            b"CSeq: 1 MESSAGE",
            b"Content-Transfer-Encoding: binary",
            b"Content-Type: multipart/mixed;boundary=7a9cbec02ceef655",
            b"Date: Sat, 15 Oct 2005 04:44:56 GMT",
            b"User-Agent: torture/1.0 (curses)",
            b"Content-Length: 242",
        ],
        &mpart01_body(),
    )
}

#[test]
fn rfc4475_mpart01() {
    // RFC 4475 3.1.1.11: Multipart MIME Message.
    let msg = valid(&mpart01());
    assert_eq!(msg.method(), Some(Method::Message));
    assert_eq!(msg.cseq().method, Method::Message);
    let via = msg.top_via();
    assert_eq!((via.ip(), via.port()), (Some(ip("127.0.0.1")), Some(5070)));
    assert_eq!(via.rport(), Rport::Requested);
    let route = msg.routes().next().expect("a Route").expect("valid");
    assert_eq!(
        (route.uri().host(), route.uri().port()),
        (&b"127.0.0.1"[..], Some(5080))
    );
    assert!(!route.is_loose_route());
    assert!(msg.header(HeaderName::Identity).is_some());
    assert_eq!(msg.content_length(), Some(242));
    assert_eq!(msg.body(), mpart01_body());
    assert!(
        std::str::from_utf8(msg.body()).is_err(),
        "the body is not text"
    );
}

fn unreason() -> Bytes {
    sip(
        &[
            "SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое".as_bytes(),
            b"Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923",
            b"Call-ID: unreason.torture-1234ksdfak3j2erwedfsASdf",
            b"CSeq: 35 INVITE",
            b"From: sip:user@example.com;tag=11141343",
            b"To: sip:user@example.edu;tag=2229",
            b"Content-Length: 149",
            b"Content-Type: application/sdp",
            b"Contact: <sip:user@host198.example.com>",
        ],
        SDP,
    )
}

#[test]
fn rfc4475_unreason() {
    // RFC 4475 3.1.1.12: Unusual Reason Phrase.
    let msg = valid(&unreason());
    assert_eq!(msg.status(), Some(200));
    assert_eq!(
        msg.reason(),
        "= 2**3 * 5**2 но сто девяносто девять - простое".as_bytes()
    );
    assert!(msg.request_uri().is_none());
    assert_eq!((msg.cseq().seq, msg.cseq().method), (35, Method::Invite));
    assert_eq!(msg.from().tag(), Some(&b"11141343"[..]));
    assert_eq!(msg.to().tag(), Some(&b"2229"[..]));
    assert_eq!(msg.body(), SDP);
}

fn noreason() -> Bytes {
    sip(
        &[
            b"SIP/2.0 100\x20",
            b"Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe",
            b"Call-ID: noreason.torture-asndj203insdf99223ndf",
            b"CSeq: 35 INVITE",
            b"From: <sip:user@example.com>;tag=39ansfi3",
            b"To: <sip:user@example.edu>;tag=902jndnke3",
            b"Content-Length: 0",
            b"Contact: <sip:user@host105.example.com>",
        ],
        b"",
    )
}

#[test]
fn rfc4475_noreason() {
    // RFC 4475 3.1.1.13: Empty Reason Phrase.
    let msg = valid(&noreason());
    assert_eq!(msg.status(), Some(100));
    assert_eq!(msg.reason(), b"");
    assert_eq!(msg.to().tag(), Some(&b"902jndnke3"[..]));
}

// === RFC 4475 3.1.2: invalid messages ===

fn badinv01(via: &[u8]) -> Bytes {
    sip(
        &[
            b"INVITE sip:user@example.com SIP/2.0",
            b"To: sip:j.user@example.com",
            b"From: sip:caller@example.net;tag=134161461246",
            b"Max-Forwards: 7",
            b"Call-ID: badinv01.torture-0ha0isndaksdjasdf3234nas",
            b"CSeq: 8 INVITE",
            via,
            br#"Contact: "Joe" <sip:joe@example.org>;;;;"#,
            b"Content-Length: 149",
            b"Content-Type: application/sdp",
        ],
        SDP,
    )
}

#[test]
fn rfc4475_badinv01() {
    // RFC 4475 3.1.2.1: Extraneous Header Field Separators.
    let error = invalid(&badinv01(b"Via: SIP/2.0/UDP 192.0.2.15;;,;,,"));
    assert_eq!(error, ParseError::BadHeader(HeaderName::Via));
    // The Contact's separators are as bad; a proxy only meets them when it reads Contact.
    let msg = accepted(&badinv01(b"Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKok"));
    assert_eq!(
        msg.contacts().next().map(|c| c.err()),
        Some(Some(ParseError::BadHeader(HeaderName::Contact)))
    );
}

fn clerr() -> Bytes {
    sip(
        &[
            b"INVITE sip:user@example.com SIP/2.0",
            b"Max-Forwards: 80",
            b"To: sip:j.user@example.com",
            b"From: sip:caller@example.net;tag=93942939o2",
            b"Contact: <sip:caller@hungry.example.net>",
            b"Call-ID: clerr.torture-0ha0isndaksdjweiafasdk3",
            b"CSeq: 8 INVITE",
            b"Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523",
            b"Content-Type: application/sdp",
            b"Content-Length: 9999",
        ],
        SDP,
    )
}

#[test]
fn rfc4475_clerr() {
    // RFC 4475 3.1.2.2: Content Length Larger Than Message.
    assert_eq!(
        invalid(&clerr()),
        ParseError::ContentLengthMismatch {
            declared: 9999,
            available: SDP.len()
        }
    );
}

fn ncl() -> Bytes {
    sip(
        &[
            b"INVITE sip:user@example.com SIP/2.0",
            b"Max-Forwards: 254",
            b"To: sip:j.user@example.com",
            b"From: sip:caller@example.net;tag=32394234",
            b"Call-ID: ncl.torture-0ha0isndaksdj2193423r542w35",
            b"CSeq: 0 INVITE",
            b"Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw",
            b"Contact: <sip:caller@example53.example.net>",
            b"Content-Type: application/sdp",
            b"Content-Length: -999",
        ],
        SDP,
    )
}

#[test]
fn rfc4475_ncl() {
    // RFC 4475 3.1.2.3: Negative Content-Length.
    assert_eq!(
        invalid(&ncl()),
        ParseError::BadHeader(HeaderName::ContentLength)
    );
}

fn scalar02(cseq: &[u8]) -> Bytes {
    let expires = format!("Expires: 1{}", "0".repeat(100));
    sip(
        &[
            b"REGISTER sip:example.com SIP/2.0",
            b"Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3",
            b"To: <sip:user@example.com>",
            b"From: <sip:user@example.com>;tag=239232jh3",
            cseq,
            b"Call-ID: scalar02.torture-23o0pd9vanlq3wnrlnewofjas9ui32",
            b"Max-Forwards: 300",
            expires.as_bytes(),
            b"Contact: <sip:user@host129.example.com>",
            b"  ;expires=280297596632815",
            b"Content-Length: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_scalar02() {
    // RFC 4475 3.1.2.4: Request Scalar Fields with Overlarge Values.
    assert_eq!(
        invalid(&scalar02(b"CSeq: 36893488147419103232 REGISTER")),
        ParseError::BadHeader(HeaderName::CSeq)
    );
    assert_eq!(
        invalid(&scalar02(b"CSeq: 4294967296 REGISTER")),
        ParseError::BadHeader(HeaderName::CSeq),
        "one past u32::MAX"
    );
    // With only Max-Forwards and the expiry values out of range the request is processed:
    // Max-Forwards 300 is clamped to 255 (as Kamailio does); Expires is not a proxy's to read.
    let msg = valid(&scalar02(b"CSeq: 4294967295 REGISTER"));
    assert_eq!(msg.cseq().seq, u32::MAX);
    assert_eq!(msg.max_forwards(), Some(255));
}

fn scalarlg() -> Bytes {
    sip(
        &[
            b"SIP/2.0 503 Service Unavailable",
            b"Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129",
            b"To: <sip:user@example.com>",
            b"From: <sip:other@example.net>;tag=2easdjfejw",
            b"CSeq: 9292394834772304023312 OPTIONS",
            b"Call-ID: scalarlg.torture-noase0of0234hn2qofoaf0232aewf2394r",
            b"Retry-After: 949302838503028349304023988",
            br#"Warning: 1812 overture "In Progress""#,
            b"Content-Length: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_scalarlg() {
    // RFC 4475 3.1.2.5: Response Scalar Fields with Overlarge Values.
    assert_eq!(
        invalid(&scalarlg()),
        ParseError::BadHeader(HeaderName::CSeq)
    );
}

fn quotbal() -> Bytes {
    sip(
        &[
            b"INVITE sip:user@example.com SIP/2.0",
            br#"To: "Mr. J. User <sip:j.user@example.com>"#,
            b"From: sip:caller@example.net;tag=93334",
            b"Max-Forwards: 10",
            b"Call-ID: quotbal.torture-aksdj",
            b"Contact: <sip:caller@host59.example.net>",
            b"CSeq: 8 INVITE",
            b"Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234",
            b"Content-Type: application/sdp",
            b"Content-Length: 149",
        ],
        SDP,
    )
}

#[test]
fn rfc4475_quotbal() {
    // RFC 4475 3.1.2.6: Unterminated Quoted String in Display Name.
    assert_eq!(invalid(&quotbal()), ParseError::BadHeader(HeaderName::To));
}

fn ltgtruri() -> Bytes {
    sip(
        &[
            b"INVITE <sip:user@example.com> SIP/2.0",
            b"To: sip:user@example.com",
            b"From: sip:caller@example.net;tag=39291",
            b"Max-Forwards: 23",
            b"Call-ID: ltgtruri.torture-1@192.0.2.5",
            b"CSeq: 1 INVITE",
            b"Via: SIP/2.0/UDP 192.0.2.5",
            b"Contact: <sip:caller@host5.example.net>",
            b"Content-Type: application/sdp",
            b"Content-Length: 149",
        ],
        SDP,
    )
}

#[test]
fn rfc4475_ltgtruri() {
    // RFC 4475 3.1.2.7: <> Enclosing Request-URI.
    assert_eq!(invalid(&ltgtruri()), ParseError::BadRequestUri);
}

fn lwsruri() -> Bytes {
    sip(
        &[
            b"INVITE sip:user@example.com; lr SIP/2.0",
            b"To: sip:user@example.com;tag=3xfe-9921883-z9f",
            b"From: sip:caller@example.net;tag=231413434",
            b"Max-Forwards: 5",
            b"Call-ID: lwsruri.torture-asdfasdoeoi2323-asdfwrn23-asd834rk423",
            b"CSeq: 2130706432 INVITE",
            b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395",
            b"Contact: <sip:caller@host1.example.net>",
            b"Content-Type: application/sdp",
            b"Content-Length: 149",
        ],
        SDP,
    )
}

#[test]
fn rfc4475_lwsruri() {
    // RFC 4475 3.1.2.8: Malformed SIP Request-URI (embedded LWS).
    assert_eq!(invalid(&lwsruri()), ParseError::BadRequestUri);
}

fn lwsstart() -> Bytes {
    sip(
        &[
            b"INVITE  sip:user@example.com  SIP/2.0",
            b"Max-Forwards: 8",
            b"To: sip:user@example.com",
            b"From: sip:caller@example.net;tag=8814",
            b"Call-ID: lwsstart.torture-dfknq234oi243099adsdfnawe3@example.com",
            b"CSeq: 1893884 INVITE",
            b"Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923",
            b"Contact: <sip:caller@host1.example.net>",
            b"Content-Type: application/sdp",
            b"Content-Length: 149",
        ],
        SDP,
    )
}

#[test]
fn rfc4475_lwsstart() {
    // RFC 4475 3.1.2.9: Multiple SP Separating Request-Line Elements.
    assert_eq!(invalid(&lwsstart()), ParseError::BadStartLine);
}

fn trws() -> Bytes {
    sip(
        &[
            b"OPTIONS sip:remote-target@example.com SIP/2.0\x20\x20",
            b"Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK299342093",
            b"To: <sip:remote-target@example.com>",
            b"From: <sip:local-resource@example.com>;tag=329429089",
            b"Call-ID: trws.torture-oicu34958239neffasdhr2345r",
            b"Accept: application/sdp",
            b"CSeq: 238923 OPTIONS",
            b"Max-Forwards: 70",
            b"Content-Length: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_trws() {
    // RFC 4475 3.1.2.10: SP Characters at End of Request-Line.
    assert_eq!(invalid(&trws()), ParseError::BadStartLine);
}

fn escruri() -> Bytes {
    sip(
        &[
            b"INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0",
            b"To: sip:user@example.com",
            b"From: sip:caller@example.net;tag=341518",
            b"Max-Forwards: 7",
            b"Contact: <sip:caller@host39923.example.net>",
            b"Call-ID: escruri.torture-23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5",
            b"CSeq: 149209342 INVITE",
            b"Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw",
            b"Content-Type: application/sdp",
            b"Content-Length: 149",
        ],
        SDP,
    )
}

#[test]
fn rfc4475_escruri() {
    // RFC 4475 3.1.2.11: Escaped Headers in SIP Request-URI.
    // Refused: the RFC lets an element either reject it or drop the headers, and a proxy must
    // not forward them in the Request-URI. The edge forwards every byte it does not edit.
    assert_eq!(invalid(&escruri()), ParseError::BadRequestUri);
}

fn baddate() -> Bytes {
    sip(
        &[
            b"INVITE sip:user@example.com SIP/2.0",
            b"To: sip:user@example.com",
            b"From: sip:caller@example.net;tag=2234923",
            b"Max-Forwards: 70",
            b"Call-ID: baddate.torture-239423mnsadf3j23lj42--sedfnm234",
            b"CSeq: 1392934 INVITE",
            b"Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw",
            b"Date: Fri, 01 Jan 2010 16:00:00 EST",
            b"Contact: <sip:caller@host5.example.net>",
            b"Content-Type: application/sdp",
            b"Content-Length: 149",
        ],
        SDP,
    )
}

#[test]
fn rfc4475_baddate() {
    // RFC 4475 3.1.2.12: Invalid Time Zone in Date Header Field.
    // accepted: a proxy does not interpret Date; the UAS rejects it.
    let msg = valid(&baddate());
    assert_eq!(
        msg.header_values(b"Date").collect::<Vec<_>>(),
        vec![&b"Fri, 01 Jan 2010 16:00:00 EST"[..]],
        "forwarded as received"
    );
}

fn regbadct() -> Bytes {
    sip(
        &[
            b"REGISTER sip:example.com SIP/2.0",
            b"To: sip:user@example.com",
            b"From: sip:user@example.com;tag=998332",
            b"Max-Forwards: 70",
            b"Call-ID: regbadct.torture-k345asrl3fdbv@10.0.0.1",
            b"CSeq: 1 REGISTER",
            b"Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw",
            b"Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            b"l: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_regbadct() {
    // RFC 4475 3.1.2.13: Failure to Enclose name-addr URI in <>.
    // accepted: a proxy does not interpret Contact in a REGISTER; the UAS rejects it.
    let msg = valid(&regbadct());
    assert_eq!(msg.method(), Some(Method::Register));
    assert_eq!(
        msg.header(HeaderName::Contact),
        Some(&b"sip:user@example.com?Route=%3Csip:sip.example.com%3E"[..])
    );
}

fn badaspec() -> Bytes {
    sip(
        &[
            b"OPTIONS sip:user@example.org SIP/2.0",
            b"Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234",
            b"Max-Forwards: 70",
            br#"From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423"#,
            br#"To: "Watson, Thomas" < sip:t.watson@example.org >"#,
            b"Call-ID: badaspec.torture-sdf0234n2nds0a099u23h3hnnw009cdkne3",
            b"Accept: application/sdp",
            b"CSeq: 3923239 OPTIONS",
            b"l: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_badaspec() {
    // RFC 4475 3.1.2.14: Spaces within addr-spec.
    // accepted: the fault is white space around the To URI, inside its angle brackets. The
    // RFC lets an element be liberal and ignore it; a proxy reads only the To tag, the URI is
    // read without the spaces, and the field is forwarded as received. The UAS may reject it.
    let msg = valid(&badaspec());
    assert_eq!(msg.to().display_name(), Some(&br#""Watson, Thomas""#[..]));
    assert_eq!(msg.to().uri().as_bytes(), b"sip:t.watson@example.org");
    assert_eq!(msg.to().tag(), None);
    assert_eq!(
        msg.from().display_name(),
        Some(&br#""Bell, Alexander""#[..])
    );
    assert_eq!(msg.from().tag(), Some(&b"433423"[..]));
    assert_eq!(
        msg.header(HeaderName::To),
        Some(&br#""Watson, Thomas" < sip:t.watson@example.org >"#[..])
    );
}

fn baddn() -> Bytes {
    sip(
        &[
            b"OPTIONS sip:t.watson@example.org SIP/2.0",
            b"Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw",
            b"Max-Forwards:      70",
            b"From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            b"To:      Watson, Thomas <sip:t.watson@example.org>",
            b"Call-ID: baddn.torture-31415@c.example.com",
            b"Accept: application/sdp",
            b"CSeq:    3923239 OPTIONS",
            b"l: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_baddn() {
    // RFC 4475 3.1.2.15: Non-token Characters in Display Name.
    assert_eq!(invalid(&baddn()), ParseError::BadHeader(HeaderName::From));
}

fn badvers() -> Bytes {
    sip(
        &[
            b"OPTIONS sip:t.watson@example.org SIP/7.0",
            b"Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw",
            b"Max-Forwards:     70",
            b"From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe",
            b"To:      T. Watson <sip:t.watson@example.org>",
            b"Call-ID: badvers.torture-31417@c.example.com",
            b"CSeq:    1 OPTIONS",
            b"l: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_badvers() {
    // RFC 4475 3.1.2.16: Unknown Protocol Version.
    assert_eq!(invalid(&badvers()), ParseError::VersionNotSupported);
    // The same holds for a response, and for any well-formed version other than 2.0.
    let text = String::from_utf8(badvers().to_vec()).expect("ASCII");
    let response = text.replace("OPTIONS sip:t.watson@example.org SIP/7.0", "SIP/2.1 200 OK");
    assert_eq!(
        invalid(&Bytes::from(response)),
        ParseError::VersionNotSupported
    );
}

fn mismatch01() -> Bytes {
    sip(
        &[
            b"OPTIONS sip:user@example.com SIP/2.0",
            b"To: sip:j.user@example.com",
            b"From: sip:caller@example.net;tag=34525",
            b"Max-Forwards: 6",
            b"Call-ID: mismatch01.torture-dj0234sxdfl3",
            b"CSeq: 8 INVITE",
            b"Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw",
            b"l: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_mismatch01() {
    // RFC 4475 3.1.2.17: Start Line and CSeq Method Mismatch.
    assert_eq!(invalid(&mismatch01()), ParseError::CSeqMethodMismatch);
}

fn mismatch02() -> Bytes {
    sip(
        &[
            b"NEWMETHOD sip:user@example.com SIP/2.0",
            b"To: sip:j.user@example.com",
            b"From: sip:caller@example.net;tag=34525",
            b"Max-Forwards: 6",
            b"Call-ID: mismatch02.torture-dj0234sxdfl3",
            b"CSeq: 8 INVITE",
            b"Contact: <sip:caller@host.example.net>",
            b"Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw",
            b"Content-Type: application/sdp",
            b"l: 149",
        ],
        SDP,
    )
}

#[test]
fn rfc4475_mismatch02() {
    // RFC 4475 3.1.2.18: Unknown Method with CSeq Method Mismatch.
    assert_eq!(invalid(&mismatch02()), ParseError::CSeqMethodMismatch);
}

fn bigcode(status_line: &[u8]) -> Bytes {
    sip(
        &[
            status_line,
            b"Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe",
            b"Call-ID: bigcode.torture-asdof3uj203asdnf3429uasdhfas3ehjasdfas9i",
            b"CSeq: 353494 INVITE",
            b"From: <sip:user@example.com>;tag=39ansfi3",
            b"To: <sip:user@example.edu>;tag=902jndnke3",
            b"Content-Length: 0",
            b"Contact: <sip:user@host105.example.com>",
        ],
        b"",
    )
}

#[test]
fn rfc4475_bigcode() {
    // RFC 4475 3.1.2.19: Overlarge Response Code.
    assert_eq!(
        invalid(&bigcode(
            b"SIP/2.0 4294967301 better not break the receiver"
        )),
        ParseError::BadStatusCode
    );
    // Codes outside 100-699, or not three digits, are as bad.
    for line in [
        &b"SIP/2.0 700 Out Of Range"[..],
        b"SIP/2.0 099 Too Small",
        b"SIP/2.0 20 Too Short",
        b"SIP/2.0 2000 Too Long",
        b"SIP/2.0 2x0 Not Digits",
        b"SIP/2.0 -200 Negative",
    ] {
        assert_eq!(
            invalid(&bigcode(line)),
            ParseError::BadStatusCode,
            "{}",
            lossy(line)
        );
    }
    assert_eq!(valid(&bigcode(b"SIP/2.0 699 Edge")).status(), Some(699));
}

// === RFC 4475 3.2: transaction layer semantics ===

fn badbranch() -> Bytes {
    sip(
        &[
            b"OPTIONS sip:user@example.com SIP/2.0",
            b"To: sip:user@example.com",
            b"From: sip:caller@example.org;tag=33242",
            b"Max-Forwards: 3",
            b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK",
            b"Accept: application/sdp",
            b"Call-ID: badbranch.torture-sadonfo23i420jv0as0derf3j3n",
            b"CSeq: 8 OPTIONS",
            b"l: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_badbranch() {
    // RFC 4475 3.2.1: Missing Transaction Identifier.
    // The parser must not break; whether to answer 400 or fall back to RFC 2543 matching is
    // the transaction layer's call, so the branch is handed over exactly as received.
    let msg = valid(&badbranch());
    assert_eq!(msg.top_via().branch(), Some(&b"z9hG4bK"[..]));
    assert_eq!(msg.top_via().ip(), Some(ip("192.0.2.1")));
    // The transaction layer falls back to RFC 2543 matching for it.
    assert!(!msg.top_via().is_rfc3261_branch());
}

// === RFC 4475 3.3: application layer semantics ===

fn insuf(head: &[&[u8]]) -> Bytes {
    let mut lines: Vec<&[u8]> = vec![
        b"INVITE sip:user@example.com SIP/2.0",
        b"CSeq: 193942 INVITE",
        b"Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf",
        b"Content-Type: application/sdp",
        b"l: 149",
    ];
    lines.extend_from_slice(head);
    sip(&lines, SDP)
}

#[test]
fn rfc4475_insuf() {
    // RFC 4475 3.3.1: Missing Required Header Fields.
    assert_eq!(
        invalid(&insuf(&[])),
        ParseError::Missing(HeaderName::CallId)
    );
    // One at a time, each missing field is named.
    assert_eq!(
        invalid(&insuf(&[b"Call-ID: insuf.torture-1"])),
        ParseError::Missing(HeaderName::From)
    );
    assert_eq!(
        invalid(&insuf(&[
            b"Call-ID: insuf.torture-1",
            b"From: <sip:caller@example.net>;tag=1"
        ])),
        ParseError::Missing(HeaderName::To)
    );
    let msg = valid(&insuf(&[
        b"Call-ID: insuf.torture-1",
        b"From: <sip:caller@example.net>;tag=1",
        b"To: <sip:user@example.com>",
    ]));
    assert_eq!(msg.max_forwards(), None, "Max-Forwards may be absent");
    let no_via = Bytes::from(
        String::from_utf8(insuf(&[]).to_vec())
            .expect("ASCII")
            .replace(
                "Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\r\n",
                "",
            ),
    );
    assert_eq!(invalid(&no_via), ParseError::Missing(HeaderName::Via));
}

fn unkscm() -> Bytes {
    sip(
        &[
            b"OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0",
            b"To: sip:user@example.com",
            b"From: sip:caller@example.net;tag=384",
            b"Max-Forwards: 3",
            b"Call-ID: unkscm.torture-nasdfasser0q239nwsdfasdkl34",
            b"CSeq: 3923423 OPTIONS",
            b"Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234",
            b"Content-Length: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_unkscm() {
    // RFC 4475 3.3.2: Request-URI with Unknown Scheme.
    // Parses; the scheme is reported so the proxy can answer 416.
    let msg = valid(&unkscm());
    let uri = msg.request_uri().expect("a request");
    assert_eq!(uri.scheme(), Scheme::Other);
    assert_eq!(
        uri.as_bytes(),
        b"nobodyKnowsThisScheme:totallyopaquecontent"
    );
    assert_eq!(uri.host(), b"");
}

fn novelsc() -> Bytes {
    sip(
        &[
            b"OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0",
            b"To: sip:user@example.com",
            b"From: sip:caller@example.net;tag=384",
            b"Max-Forwards: 3",
            b"Call-ID: novelsc.torture-asdfasser0q239nwsdfasdkl34",
            b"CSeq: 3923423 OPTIONS",
            b"Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234",
            b"Content-Length: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_novelsc() {
    // RFC 4475 3.3.3: Request-URI with Known but Atypical Scheme.
    let msg = valid(&novelsc());
    let uri = msg.request_uri().expect("a request");
    assert_eq!(uri.scheme(), Scheme::Other);
    assert_eq!(uri.as_bytes(), b"soap.beep://192.0.2.103:3002");
    assert_eq!((uri.ip(), uri.port()), (None, None), "opaque");
}

fn unksm2() -> Bytes {
    sip(
        &[
            b"REGISTER sip:example.com SIP/2.0",
            b"To: isbn:2983792873",
            b"From: <http://www.example.com>;tag=3234233",
            b"Call-ID: unksm2.torture-daksdj@hyphenated-host.example.com",
            b"CSeq: 234902 REGISTER",
            b"Max-Forwards: 70",
            b"Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw",
            b"Contact: <name:John_Smith>",
            b"l: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_unksm2() {
    // RFC 4475 3.3.4: Unknown URI Schemes in Header Fields.
    let msg = valid(&unksm2());
    assert_eq!(msg.to().scheme(), Scheme::Other);
    assert_eq!(msg.to().uri().as_bytes(), b"isbn:2983792873");
    assert_eq!(msg.from().scheme(), Scheme::Other);
    assert_eq!(msg.from().uri().as_bytes(), b"http://www.example.com");
    assert_eq!(msg.from().tag(), Some(&b"3234233"[..]));
    let contact = msg.contacts().next().expect("a Contact").expect("valid");
    assert_eq!(contact.uri().as_bytes(), b"name:John_Smith");
    assert_eq!(msg.top_via().port(), Some(5060));
}

fn bext01() -> Bytes {
    sip(
        &[
            b"OPTIONS sip:user@example.com SIP/2.0",
            b"To: sip:j_user@example.com",
            b"From: sip:caller@example.net;tag=242etr",
            b"Max-Forwards: 6",
            b"Call-ID: bext01.torture-0ha0isndaksdj",
            b"Require: nothingSupportsThis, nothingSupportsThisEither",
            b"Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis",
            b"CSeq: 8 OPTIONS",
            b"Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw",
            b"Content-Length: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_bext01() {
    // RFC 4475 3.3.5: Proxy-Require and Require.
    // Parses; the option tags are there for the proxy to answer 420 with Unsupported.
    let msg = valid(&bext01());
    assert_eq!(
        msg.header(HeaderName::ProxyRequire),
        Some(&b"noProxiesSupportThis, norDoAnyProxiesSupportThis"[..])
    );
    assert_eq!(
        msg.header(HeaderName::Require),
        Some(&b"nothingSupportsThis, nothingSupportsThisEither"[..])
    );
    assert_eq!(msg.top_via().transport(), Transport::Tls);
}

const INVUT_BODY: &[u8] = b"<audio>\r\n <pcmu port=\"443\"/>\r\n</audio>\r\n";

fn invut() -> Bytes {
    sip(
        &[
            b"INVITE sip:user@example.com SIP/2.0",
            b"Contact: <sip:caller@host5.example.net>",
            b"To: sip:j.user@example.com",
            b"From: sip:caller@example.net;tag=8392034",
            b"Max-Forwards: 70",
            b"Call-ID: invut.torture-0ha0isndaksdjadsfij34n23d",
            b"CSeq: 235448 INVITE",
            b"Via: SIP/2.0/UDP somehost.example.com;branch=z9hG4bKkdjuw",
            b"Content-Type: application/unknownformat",
            b"Content-Length: 40",
        ],
        INVUT_BODY,
    )
}

#[test]
fn rfc4475_invut() {
    // RFC 4475 3.3.6: Unknown Content-Type.
    // accepted: a proxy does not interpret Content-Type; the UAS rejects it.
    let msg = valid(&invut());
    assert_eq!(
        msg.header(HeaderName::ContentType),
        Some(&b"application/unknownformat"[..])
    );
    assert_eq!(msg.body(), INVUT_BODY);
}

fn regaut01() -> Bytes {
    sip(
        &[
            b"REGISTER sip:example.com SIP/2.0",
            b"To: sip:j.user@example.com",
            b"From: sip:j.user@example.com;tag=87321hj23128",
            b"Max-Forwards: 8",
            b"Call-ID: regaut01.torture-0ha0isndaksdj",
            b"CSeq: 9338 REGISTER",
            b"Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw",
            b"Authorization: NoOneKnowsThisScheme opaque-data=here",
            b"Content-Length:0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_regaut01() {
    // RFC 4475 3.3.7: Unknown Authorization Scheme.
    // accepted: a proxy does not interpret Authorization; the UAS rejects it.
    let msg = valid(&regaut01());
    assert_eq!(
        msg.header_values(b"authorization").collect::<Vec<_>>(),
        vec![&b"NoOneKnowsThisScheme opaque-data=here"[..]]
    );
    assert_eq!(msg.content_length(), Some(0), "no space after the colon");
}

const MULTI01_HEAD: [&[u8]; 17] = [
    b"INVITE sip:user@company.com SIP/2.0",
    b"Contact: <sip:caller@host25.example.net>",
    b"Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw",
    b"Max-Forwards: 70",
    b"CSeq: 5 INVITE",
    b"Call-ID: multi01.torture-98asdh@192.0.2.1",
    b"CSeq: 59 INVITE",
    b"Call-ID: multi01.torture-98asdh@192.0.2.2",
    b"From: sip:caller@example.com;tag=3413415",
    b"To: sip:user@example.com",
    b"To: sip:other@example.net",
    b"From: sip:caller@example.net;tag=2923420123",
    b"Content-Type: application/sdp",
    b"l: 149",
    b"Contact: <sip:caller@host36.example.net>",
    b"Max-Forwards: 5",
    b"i: multi01.torture-compact@192.0.2.3",
];

#[test]
fn rfc4475_multi01() {
    // RFC 4475 3.3.8: Multiple Values in Single Value Required Fields.
    let mut head: Vec<&[u8]> = MULTI01_HEAD.to_vec();
    assert_eq!(
        invalid(&sip(&head, SDP)),
        ParseError::Multiple(HeaderName::CallId)
    );
    // Remove the repeats one kind at a time; each repeated field is named in turn. The compact
    // `i:` counts as a third Call-ID.
    let steps: [(&[u8], ParseError); 5] = [
        (
            b"Call-ID: multi01.torture-98asdh@192.0.2.2",
            ParseError::Multiple(HeaderName::CallId),
        ),
        (
            b"i: multi01.torture-compact@192.0.2.3",
            ParseError::Multiple(HeaderName::CSeq),
        ),
        (b"CSeq: 59 INVITE", ParseError::Multiple(HeaderName::From)),
        (
            b"From: sip:caller@example.net;tag=2923420123",
            ParseError::Multiple(HeaderName::To),
        ),
        (
            b"To: sip:other@example.net",
            ParseError::Multiple(HeaderName::MaxForwards),
        ),
    ];
    for (line, error) in steps {
        head.retain(|l| *l != line);
        assert_eq!(invalid(&sip(&head, SDP)), error, "without {}", lossy(line));
    }
    head.retain(|l| *l != &b"Max-Forwards: 5"[..]);
    let msg = valid(&sip(&head, SDP));
    assert_eq!(msg.contacts().count(), 2, "Contact may repeat");
}

fn mcl01(second: &[u8]) -> Bytes {
    sip(
        &[
            b"OPTIONS sip:user@example.com SIP/2.0",
            b"Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423",
            b"To: sip:user@example.com",
            b"From: sip:other@example.net;tag=3923942",
            b"Call-ID: mcl01.torture-fhn2323orihawfdoa3o4r52o3irsdf",
            b"CSeq: 15932 OPTIONS",
            b"Content-Length: 13",
            b"Max-Forwards: 60",
            second,
            b"Content-Type: text/plain",
        ],
        b"There's no way to know how many octets are supposed to be here.\r\n",
    )
}

#[test]
fn rfc4475_mcl01() {
    // RFC 4475 3.3.9: Multiple Content-Length Values.
    assert_eq!(
        invalid(&mcl01(b"Content-Length: 5")),
        ParseError::Multiple(HeaderName::ContentLength)
    );
    assert_eq!(
        invalid(&mcl01(b"l: 13")),
        ParseError::Multiple(HeaderName::ContentLength),
        "even when the compact form repeats the same value"
    );
}

fn bcast() -> Bytes {
    sip(
        &[
            b"SIP/2.0 200 OK",
            b"Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923",
            b"Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23",
            b"Call-ID: bcast.torture-0384840201234ksdfak3j2erwedfsASdf",
            b"CSeq: 35 INVITE",
            b"From: sip:user@example.com;tag=11141343",
            b"To: sip:user@example.edu;tag=2229",
            b"Content-Length: 149",
            b"Content-Type: application/sdp",
            b"Contact: <sip:user@host28.example.com>",
        ],
        SDP,
    )
}

#[test]
fn rfc4475_bcast() {
    // RFC 4475 3.3.10: 200 OK Response with Broadcast Via Header Field Value.
    // Parses; the next-hop address is visible so the proxy can refuse to send to it.
    let msg = valid(&bcast());
    assert_eq!(msg.status(), Some(200));
    let next = msg.vias().nth(1).expect("two Vias").expect("valid");
    assert_eq!(next.ip(), Some(ip("255.255.255.255")));
    assert_eq!(next.branch(), Some(&b"z9hG4bK1saber23"[..]));
}

fn zeromf() -> Bytes {
    sip(
        &[
            b"OPTIONS sip:user@example.com SIP/2.0",
            b"To: sip:user@example.com",
            b"From: sip:caller@example.net;tag=3ghsd41",
            b"Call-ID: zeromf.torture-jfasdlfnm2o2l43r5u0asdfas",
            b"CSeq: 39234321 OPTIONS",
            b"Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i",
            b"Max-Forwards: 0",
            b"Content-Length: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_zeromf() {
    // RFC 4475 3.3.11: Max-Forwards of Zero.
    // Parses; the proxy answers 483 (or 200 to an OPTIONS aimed at itself).
    let msg = valid(&zeromf());
    assert_eq!(msg.max_forwards(), Some(0));
}

fn cparam01() -> Bytes {
    sip(
        &[
            b"REGISTER sip:example.com SIP/2.0",
            b"Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw",
            b"Max-Forwards: 70",
            b"From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe",
            b"To: sip:watson@example.com",
            b"Call-ID: cparam01.torture-70710@saturn.example.com",
            b"CSeq: 2 REGISTER",
            b"Contact: sip:+19725552222@gw1.example.net;unknownparam",
            b"l: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_cparam01() {
    // RFC 4475 3.3.12: REGISTER with a Contact Header Parameter.
    let msg = valid(&cparam01());
    let contact = msg.contacts().next().expect("a Contact").expect("valid");
    assert_eq!(contact.uri().user(), Some(&b"+19725552222"[..]));
    assert_eq!(
        contact.uri().params(),
        b"",
        "addr-spec: not a URI parameter"
    );
    assert_eq!(contact.params(), b";unknownparam");
}

fn cparam02() -> Bytes {
    sip(
        &[
            b"REGISTER sip:example.com SIP/2.0",
            b"Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw",
            b"Max-Forwards: 70",
            b"From: sip:watson@example.com;tag=838293",
            b"To: sip:watson@example.com",
            b"Call-ID: cparam02.torture-70710@saturn.example.com",
            b"CSeq: 3 REGISTER",
            b"Contact: <sip:+19725552222@gw1.example.net;unknownparam>",
            b"l: 0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_cparam02() {
    // RFC 4475 3.3.13: REGISTER with a url-parameter.
    let msg = valid(&cparam02());
    let contact = msg.contacts().next().expect("a Contact").expect("valid");
    assert_eq!(contact.uri().param(b"unknownparam"), Some(&b""[..]));
    assert_eq!(contact.params(), b"", "inside <>: a URI parameter");
}

fn regescrt() -> Bytes {
    sip(
        &[
            b"REGISTER sip:example.com SIP/2.0",
            b"To: sip:user@example.com",
            b"From: sip:user@example.com;tag=8",
            b"Max-Forwards: 70",
            b"Call-ID: regescrt.torture-k345asrl3fdbv@192.0.2.1",
            b"CSeq: 14398234 REGISTER",
            b"Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw",
            b"M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
            b"L:0",
        ],
        b"",
    )
}

#[test]
fn rfc4475_regescrt() {
    // RFC 4475 3.3.14: REGISTER with a URL Escaped Header.
    let msg = valid(&regescrt());
    let contact = msg.contacts().next().expect("compact M:").expect("valid");
    assert_eq!(
        contact.uri().headers(),
        Some(&b"Route=%3Csip:sip.example.com%3E"[..])
    );
    assert_eq!(
        unescape(contact.uri().headers().unwrap_or_default()),
        b"Route=<sip:sip.example.com>"
    );
}

fn sdp01() -> Bytes {
    sip(
        &[
            b"INVITE sip:user@example.com SIP/2.0",
            b"To: sip:j_user@example.com",
            b"Contact: <sip:caller@host15.example.net>",
            b"From: sip:caller@example.net;tag=234",
            b"Max-Forwards: 5",
            b"Call-ID: sdp01.torture-ndaksdj9342dasdd",
            b"Accept: text/nobodyKnowsThis",
            b"CSeq: 8 INVITE",
            b"Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw",
            b"Content-Length: 149",
            b"Content-Type: application/sdp",
        ],
        SDP,
    )
}

#[test]
fn rfc4475_sdp01() {
    // RFC 4475 3.3.15: Unacceptable Accept Offering.
    // accepted: a proxy does not interpret Accept; the UAS answers 406.
    let msg = valid(&sdp01());
    assert_eq!(
        msg.header(HeaderName::Accept),
        Some(&b"text/nobodyKnowsThis"[..])
    );
    assert_eq!(msg.body(), SDP);
}

// === RFC 4475 3.4: backward compatibility ===

fn inv2543() -> Bytes {
    sip(
        &[
            b"INVITE sip:UserB@example.com SIP/2.0",
            b"Via: SIP/2.0/UDP iftgw.example.com",
            b"From: <sip:+13035551111@ift.client.example.net;user=phone>",
            b"Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>",
            b"To: sip:+16505552222@ss1.example.net;user=phone",
            b"Call-ID: inv2543.torture-1717@ift.client.example.com",
            b"CSeq: 56 INVITE",
            b"Content-Type: application/sdp",
        ],
        SDP,
    )
}

#[test]
fn rfc4475_inv2543() {
    // RFC 4475 3.4.1: INVITE with RFC 2543 Syntax.
    let msg = valid(&inv2543());
    assert_eq!(msg.top_via().branch(), None);
    assert!(!msg.top_via().is_rfc3261_branch());
    assert_eq!(msg.max_forwards(), None);
    assert_eq!(msg.from().tag(), None);
    assert_eq!(msg.from().uri().param(b"user"), Some(&b"phone"[..]));
    assert_eq!(
        msg.to().params(),
        b";user=phone",
        "addr-spec: the parameter belongs to the header"
    );
    assert_eq!(msg.content_length(), None);
    assert_eq!(msg.body(), SDP, "the body runs to the end of the datagram");
    let rr = msg
        .record_routes()
        .next()
        .expect("a Record-Route")
        .expect("valid");
    assert_eq!(rr.uri().param(b"maddr"), Some(&b"ss1.example.com"[..]));
    assert!(!rr.is_loose_route(), "a strict router");
}

// === RFC 5118 4: IPv6 ===

fn ipv6_register(request_uri: &[u8], contact: &[u8]) -> Bytes {
    sip(
        &[
            request_uri,
            b"To: sip:user@example.com",
            b"From: sip:user@example.com;tag=81x2",
            b"Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
            b"Call-ID: SSG9559905523997077@hlau_4100",
            b"Max-Forwards: 70",
            contact,
            b"CSeq: 98176 REGISTER",
            b"Content-Length: 0",
        ],
        b"",
    )
}

fn ipv6_good() -> Bytes {
    ipv6_register(
        b"REGISTER sip:[2001:db8::10] SIP/2.0",
        br#"Contact: "Caller" <sip:caller@[2001:db8::1]>"#,
    )
}

#[test]
fn rfc5118_ipv6_good() {
    // RFC 5118 4.1: Valid SIP Message with an IPv6 Reference.
    let msg = valid(&ipv6_good());
    let uri = msg.request_uri().expect("a request");
    assert_eq!(uri.host(), b"[2001:db8::10]");
    assert_eq!((uri.ip(), uri.port()), (Some(ip("2001:db8::10")), None));
    let via = msg.top_via();
    assert_eq!(via.host(), b"[2001:db8::9:1]");
    assert_eq!((via.ip(), via.port()), (Some(ip("2001:db8::9:1")), None));
    assert_eq!(via.branch(), Some(&b"z9hG4bKas3-111"[..]));
    let contact = msg.contacts().next().expect("a Contact").expect("valid");
    assert_eq!(contact.uri().ip(), Some(ip("2001:db8::1")));
}

#[test]
fn rfc5118_ipv6_bad() {
    // RFC 5118 4.2: Invalid SIP Message with an IPv6 Reference.
    let bad = ipv6_register(
        b"REGISTER sip:2001:db8::10 SIP/2.0",
        br#"Contact: "Caller" <sip:caller@[2001:db8::1]>"#,
    );
    assert_eq!(invalid(&bad), ParseError::BadRequestUri);
    // The same missing brackets in a Contact only show when the Contact is read.
    let msg = accepted(&ipv6_register(
        b"REGISTER sip:[2001:db8::10] SIP/2.0",
        br#"Contact: "Caller" <sip:caller@2001:db8::1>"#,
    ));
    assert_eq!(
        msg.contacts().next().map(|c| c.err()),
        Some(Some(ParseError::BadHeader(HeaderName::Contact)))
    );
}

fn port_ambiguous() -> Bytes {
    ipv6_register(
        b"REGISTER sip:[2001:db8::10:5070] SIP/2.0",
        br#"Contact: "Caller" <sip:caller@[2001:db8::1]>"#,
    )
}

#[test]
fn rfc5118_port_ambiguous() {
    // RFC 5118 4.3: Port Ambiguous in a SIP URI.
    // Well formed: everything inside the brackets is the address, so there is no port.
    let msg = valid(&port_ambiguous());
    let uri = msg.request_uri().expect("a request");
    assert_eq!(uri.ip(), Some(ip("2001:db8::10:5070")));
    assert_eq!(uri.port(), None);
}

fn port_unambiguous() -> Bytes {
    ipv6_register(
        b"REGISTER sip:[2001:db8::10]:5070 SIP/2.0",
        br#"Contact: "Caller" <sip:caller@[2001:db8::1]>"#,
    )
}

#[test]
fn rfc5118_port_unambiguous() {
    // RFC 5118 4.4: Port Unambiguous in a SIP URI.
    let msg = valid(&port_unambiguous());
    let uri = msg.request_uri().expect("a request");
    assert_eq!(uri.host(), b"[2001:db8::10]");
    assert_eq!(
        (uri.ip(), uri.port()),
        (Some(ip("2001:db8::10")), Some(5070))
    );
}

fn via_received_param_with_delim() -> Bytes {
    sip(
        &[
            b"BYE sip:[2001:db8::10] SIP/2.0",
            b"To: sip:user@example.com;tag=bd76ya",
            b"From: sip:user@example.com;tag=81x2",
            b"Via: SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111",
            b"Call-ID: SSG9559905523997077@hlau_4100",
            b"Max-Forwards: 70",
            b"CSeq: 321 BYE",
            b"Content-Length: 0",
        ],
        b"",
    )
}

#[test]
fn rfc5118_via_received_param_with_delim() {
    // RFC 5118 4.5: IPv6 Reference Delimiters in Via Header (received with brackets).
    let msg = valid(&via_received_param_with_delim());
    let via = msg.top_via();
    assert_eq!(via.ip(), Some(ip("2001:db8::9:1")));
    assert_eq!(via.received(), Some(&b"[2001:db8::9:255]"[..]));
    assert_eq!(via.branch(), Some(&b"z9hG4bKas3-111"[..]));
    assert_eq!(msg.to().tag(), Some(&b"bd76ya"[..]));
}

fn via_received_param_no_delim() -> Bytes {
    sip(
        &[
            b"OPTIONS sip:[2001:db8::10] SIP/2.0",
            b"To: sip:user@example.com",
            b"From: sip:user@example.com;tag=81x2",
            b"Via: SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3",
            b"Call-ID: SSG95523997077@hlau_4100",
            b"Max-Forwards: 70",
            br#"Contact: "Caller" <sip:caller@[2001:db8::9:1]>"#,
            b"CSeq: 921 OPTIONS",
            b"Content-Length: 0",
        ],
        b"",
    )
}

#[test]
fn rfc5118_via_received_param_no_delim() {
    // RFC 5118 4.5: IPv6 Reference Delimiters in Via Header (received without brackets).
    let msg = valid(&via_received_param_no_delim());
    let via = msg.top_via();
    assert_eq!(via.received(), Some(&b"2001:db8::9:255"[..]));
    assert_eq!(via.branch(), Some(&b"z9hG4bKas3"[..]));
}

const IPV6_SDP: &[u8] = b"v=0\r\n\
o=assistant 971731711378798081 0 IN IP6 2001:db8::20\r\n\
s=Live video feed for today's meeting\r\n\
c=IN IP6 2001:db8::20\r\n\
t=3338481189 3370017201\r\n\
m=audio 6000 RTP/AVP 2\r\n\
a=rtpmap:2 G726-32/8000\r\n\
m=video 6024 RTP/AVP 107\r\n\
a=rtpmap:107 H263-1998/90000\r\n";

fn ipv6_in_sdp() -> Bytes {
    sip(
        &[
            b"INVITE sip:user@[2001:db8::10] SIP/2.0",
            b"To: sip:user@[2001:db8::10]",
            b"From: sip:user@example.com;tag=81x2",
            b"Via: SIP/2.0/UDP [2001:db8::20];branch=z9hG4bKas3-111",
            b"Call-ID: SSG9559905523997077@hlau_4100",
            br#"Contact: "Caller" <sip:caller@[2001:db8::20]>"#,
            b"CSeq: 8612 INVITE",
            b"Max-Forwards: 70",
            b"Content-Type: application/sdp",
            b"Content-Length: 251",
        ],
        IPV6_SDP,
    )
}

#[test]
fn rfc5118_ipv6_in_sdp() {
    // RFC 5118 4.6: SIP Request with IPv6 Addresses in SDP Body.
    let msg = valid(&ipv6_in_sdp());
    assert_eq!(
        msg.request_uri().and_then(|u| u.ip()),
        Some(ip("2001:db8::10"))
    );
    assert_eq!(msg.to().uri().ip(), Some(ip("2001:db8::10")));
    assert_eq!(msg.top_via().ip(), Some(ip("2001:db8::20")));
    assert_eq!(
        msg.body(),
        IPV6_SDP,
        "unbracketed IPv6 in SDP is the body's business"
    );
}

fn mult_ip_in_header() -> Bytes {
    sip(
        &[
            b"BYE sip:user@host.example.net SIP/2.0",
            b"Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111",
            b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144",
            b"Via: SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200",
            b"Call-ID: 997077@lau_4100",
            b"Max-Forwards: 70",
            b"CSeq: 89187 BYE",
            b"To: sip:user@example.net;tag=9817--94",
            b"From: sip:user@example.com;tag=81x2",
            b"Content-Length: 0",
        ],
        b"",
    )
}

#[test]
fn rfc5118_mult_ip_in_header() {
    // RFC 5118 4.7: Multiple IP Addresses in SIP Headers.
    let msg = valid(&mult_ip_in_header());
    let vias: Vec<_> = msg
        .vias()
        .map(|v| v.expect("valid Via"))
        .map(|v| {
            (
                v.transport(),
                v.ip(),
                v.port(),
                v.received().map(<[u8]>::to_vec),
            )
        })
        .collect();
    assert_eq!(
        vias,
        vec![
            (Transport::Udp, Some(ip("2001:db8::9:1")), Some(6050), None),
            (Transport::Udp, Some(ip("192.0.2.1")), None, None),
            (
                Transport::Tcp,
                Some(ip("2001:db8::9:255")),
                None,
                Some(b"192.0.2.200".to_vec())
            ),
        ]
    );
}

const MULT_IP_SDP: &[u8] = b"v=0\r\n\
o=bob 280744730 28977631 IN IP4 host.example.com\r\n\
s=\r\n\
t=0 0\r\n\
m=audio 22334 RTP/AVP 0\r\n\
c=IN IP4 192.0.2.1\r\n\
m=video 6024 RTP/AVP 107\r\n\
c=IN IP6 2001:db8::1\r\n\
a=rtpmap:107 H263-1998/90000\r\n";

fn mult_ip_in_sdp() -> Bytes {
    sip(
        &[
            b"INVITE sip:user@[2001:db8::10] SIP/2.0",
            b"To: sip:user@[2001:db8::10]",
            b"From: sip:user@example.com;tag=81x2",
            b"Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111",
            b"Call-ID: SSG9559905523997077@hlau_4100",
            br#"Contact: "Caller" <sip:caller@[2001:db8::9:1]>"#,
            b"Max-Forwards: 70",
            b"CSeq: 8912 INVITE",
            b"Content-Type: application/sdp",
            b"Content-Length: 189",
        ],
        MULT_IP_SDP,
    )
}

#[test]
fn rfc5118_mult_ip_in_sdp() {
    // RFC 5118 4.8: Multiple IP Addresses in SDP.
    let msg = valid(&mult_ip_in_sdp());
    assert_eq!(msg.body(), MULT_IP_SDP);
    assert_eq!(msg.content_length(), Some(189));
}

const MAPPED_SDP: &[u8] = b"v=0\r\n\
o=assistant 971731711378798081 0 IN IP6 ::ffff:192.0.2.2\r\n\
s=Call me maybe\r\n\
c=IN IP6 ::ffff:192.0.2.2\r\n\
t=3338481189 3370017201\r\n\
m=audio 6000 RTP/AVP 2\r\n\
a=rtpmap:2 G726-32/8000\r\n";

fn ipv4_mapped_ipv6() -> Bytes {
    sip(
        &[
            b"INVITE sip:user@example.com SIP/2.0",
            b"To: sip:user@example.com",
            b"From: sip:user@east.example.com;tag=81x2",
            b"Via: SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19",
            b"Via: SIP/2.0/UDP [::ffff:192.0.2.2];branch=z9hG4bKas3-111",
            b"Call-ID: SSG9559905523997077@hlau_4100",
            br#"Contact: "T. desk phone" <sip:ted@[::ffff:192.0.2.2]>"#,
            b"CSeq: 612 INVITE",
            b"Max-Forwards: 70",
            b"Content-Type: application/sdp",
            b"Content-Length: 181",
        ],
        MAPPED_SDP,
    )
}

#[test]
fn rfc5118_ipv4_mapped_ipv6() {
    // RFC 5118 4.9: IPv4-Mapped IPv6 Addresses.
    let msg = valid(&ipv4_mapped_ipv6());
    let top = msg.top_via();
    assert_eq!(top.ip(), Some(ip("::ffff:192.0.2.10")));
    assert_eq!(top.port(), Some(19823));
    assert_eq!(top.host(), b"[::ffff:192.0.2.10]");
    let contact = msg.contacts().next().expect("a Contact").expect("valid");
    assert_eq!(contact.uri().ip(), Some(ip("::ffff:192.0.2.2")));
    assert_eq!(msg.body(), MAPPED_SDP);
}

fn ipv6_abnf(host: &[u8]) -> Bytes {
    let request_line = [&b"OPTIONS sip:user@"[..], host, b" SIP/2.0"].concat();
    let to = [&b"To: sip:user@"[..], host].concat();
    sip(
        &[
            &request_line,
            &to,
            b"From: sip:user@example.com;tag=810x2",
            b"Via: SIP/2.0/UDP lab1.east.example.com;branch=z9hG4bKas3-111",
            b"Call-ID: G9559905523997077@hlau_4100",
            b"CSeq: 689 OPTIONS",
            b"Max-Forwards: 70",
            b"Content-Length: 0",
        ],
        b"",
    )
}

#[test]
fn rfc5118_ipv6_bug_abnf_3_colons() {
    // RFC 5118 4.10: IPv6 Reference Bug in RFC 3261 ABNF (three colons before the IPv4 part).
    // RFC 3261's ABNF produces it and RFC 5118 says it must be tolerated: it names the same
    // address as the two-colon form, and is forwarded as written.
    let msg = valid(&ipv6_abnf(b"[2001:db8:::192.0.2.1]"));
    let uri = msg.request_uri().expect("a request");
    assert_eq!(uri.host(), b"[2001:db8:::192.0.2.1]");
    assert_eq!(uri.ip(), Some(ip("2001:db8::192.0.2.1")));
    assert_eq!(msg.to().uri().ip(), Some(ip("2001:db8::192.0.2.1")));
}

#[test]
fn rfc5118_ipv6_correct_abnf_2_colons() {
    // RFC 5118 4.10: IPv6 Reference Bug in RFC 3261 ABNF (the correct, two-colon form).
    let msg = valid(&ipv6_abnf(b"[2001:db8::192.0.2.1]"));
    let uri = msg.request_uri().expect("a request");
    assert_eq!(uri.ip(), Some(ip("2001:db8::c000:201")));
    assert_eq!(msg.to().uri().ip(), Some(ip("2001:db8::c000:201")));
}

// === stream framing ===

/// Every valid message above that carries a Content-Length, so it can travel on TCP.
fn framed_messages() -> Vec<(&'static str, Bytes)> {
    vec![
        ("wsinv", wsinv()),
        ("intmeth", intmeth()),
        ("esc01", esc01()),
        ("escnull", escnull()),
        ("esc02", esc02()),
        ("lwsdisp", lwsdisp()),
        ("longreq", longreq()),
        ("semiuri", semiuri()),
        ("transports", transports()),
        ("mpart01", mpart01()),
        ("unreason", unreason()),
        ("noreason", noreason()),
        ("baddate", baddate()),
        ("regbadct", regbadct()),
        ("badaspec", badaspec()),
        ("badbranch", badbranch()),
        ("unkscm", unkscm()),
        ("novelsc", novelsc()),
        ("unksm2", unksm2()),
        ("bext01", bext01()),
        ("invut", invut()),
        ("regaut01", regaut01()),
        ("bcast", bcast()),
        ("zeromf", zeromf()),
        ("cparam01", cparam01()),
        ("cparam02", cparam02()),
        ("regescrt", regescrt()),
        ("sdp01", sdp01()),
        ("ipv6-good", ipv6_good()),
        ("port-ambiguous", port_ambiguous()),
        ("port-unambiguous", port_unambiguous()),
        (
            "via-received-param-with-delim",
            via_received_param_with_delim(),
        ),
        ("via-received-param-no-delim", via_received_param_no_delim()),
        ("ipv6-in-sdp", ipv6_in_sdp()),
        ("mult-ip-in-header", mult_ip_in_header()),
        ("mult-ip-in-sdp", mult_ip_in_sdp()),
        ("ipv4-mapped-ipv6", ipv4_mapped_ipv6()),
        (
            "ipv6-bug-abnf-3-colons",
            ipv6_abnf(b"[2001:db8:::192.0.2.1]"),
        ),
        (
            "ipv6-correct-abnf-2-colons",
            ipv6_abnf(b"[2001:db8::192.0.2.1]"),
        ),
    ]
}

#[test]
fn stream_framing_cuts_each_valid_torture_message_byte_by_byte() {
    for (name, bytes) in framed_messages() {
        let frames = frame_bytewise(&bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(frames.len(), 1, "{name}: one message");
        let (fed, raw) = &frames[0];
        assert_eq!(*fed, bytes.len(), "{name}: incomplete until its last byte");
        assert_eq!(
            raw.bytes(),
            &bytes,
            "{name}: the framed bytes are the input"
        );
        let msg =
            Message::validate(raw.clone()).unwrap_or_else(|r| panic!("{name}: {:?}", r.error));
        assert_eq!(written(&msg), bytes, "{name}: round trip after framing");
    }
}

#[test]
fn stream_framing_cuts_torture_messages_back_to_back() {
    // All of them on one connection, with keep-alives and stray CRLFs between some.
    let messages = framed_messages();
    let mut stream = Vec::new();
    for (i, (_, bytes)) in messages.iter().enumerate() {
        match i % 3 {
            1 => stream.extend_from_slice(b"\r\n\r\n"),
            2 => stream.extend_from_slice(b"\r\n"),
            _ => {}
        }
        stream.extend_from_slice(bytes);
    }
    let frames = frame_bytewise(&stream).expect("the stream frames");
    assert_eq!(frames.len(), messages.len());
    for ((name, bytes), (_, raw)) in messages.iter().zip(&frames) {
        assert_eq!(raw.bytes(), bytes, "{name}");
    }
    // Whole, in one read, the same messages come out.
    let mut framer = StreamFramer::new(Limits::default());
    framer.extend(&stream);
    let mut whole = Vec::new();
    while let Some(frame) = framer.next_frame().expect("the stream frames") {
        if let Frame::Message(raw) = frame {
            whole.push(raw.bytes().clone());
        }
    }
    let want: Vec<Bytes> = messages.into_iter().map(|(_, bytes)| bytes).collect();
    assert_eq!(whole, want);
}

#[test]
fn stream_framing_dblreq_is_two_requests() {
    // RFC 4475 3.1.1.8 on a stream: what a datagram drops is the next message.
    let frames = frame_bytewise(&dblreq()).expect("the stream frames");
    let got: Vec<_> = frames.iter().map(|(_, raw)| raw.bytes().clone()).collect();
    assert_eq!(got, vec![dblreq_register(), dblreq_invite()]);
    assert_eq!(
        frames[0].0,
        dblreq_register().len(),
        "cut as soon as it is whole"
    );
}

#[test]
fn stream_framing_passes_framed_but_invalid_messages_on() {
    // A message that frames but fails validation is the caller's to answer; the stream goes on.
    let stream = [mismatch01(), baddn(), escruri(), wsinv()].concat();
    let frames = frame_bytewise(&stream).expect("the stream frames");
    let errors: Vec<_> = frames
        .into_iter()
        .map(|(_, raw)| Message::validate(raw).err().map(|r| r.error))
        .collect();
    assert_eq!(
        errors,
        vec![
            Some(ParseError::CSeqMethodMismatch),
            Some(ParseError::BadHeader(HeaderName::From)),
            Some(ParseError::BadRequestUri),
            None,
        ]
    );
}

#[test]
fn stream_framing_refuses_rfc_messages_it_cannot_frame() {
    // Without a usable Content-Length the end of the message is unknown: the stream breaks.
    for (name, bytes, error) in [
        (
            "ncl",
            ncl(),
            ParseError::BadHeader(HeaderName::ContentLength),
        ),
        (
            "mcl01",
            mcl01(b"Content-Length: 5"),
            ParseError::Multiple(HeaderName::ContentLength),
        ),
        (
            "inv2543",
            inv2543(),
            ParseError::Missing(HeaderName::ContentLength),
        ),
        ("lwsstart", lwsstart(), ParseError::BadStartLine),
    ] {
        assert_eq!(frame_bytewise(&bytes).err(), Some(error), "{name}");
    }
    // RFC 4475 3.1.2.2 on a stream is only a message still arriving.
    let mut framer = StreamFramer::new(Limits::default());
    framer.extend(&clerr());
    assert!(matches!(framer.next_frame(), Ok(None)));
}
