//! ISO 7816-4 command and response APDUs, status words, and the BER-TLV subset the YubiKey
//! applets use.
//!
//! Buffers are `Zeroizing` because a command may carry an access code response or an OATH
//! seed, and a response may carry a full HMAC used as a key factor. Nothing here logs bytes.

use std::fmt;

use zeroize::Zeroizing;

/// Largest data field of a short APDU.
pub const SHORT_MAX: usize = 255;
/// Largest data field this crate builds or accepts (extended APDU).
pub const EXTENDED_MAX: usize = 65_535;

/// A malformed APDU or TLV structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The response is shorter than the two status-word bytes.
    #[error("response shorter than a status word ({len} bytes)")]
    ResponseTooShort {
        /// Its length, in bytes.
        len: usize,
    },
    /// A command APDU that cannot be parsed (header cut short, Lc not matching the data), or a
    /// response that chains past 64 KiB.
    #[error("command APDU is malformed: {reason}")]
    BadCommand {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A TLV element runs past the end of its buffer.
    #[error("TLV data is truncated at offset {offset}")]
    TlvTruncated {
        /// Byte offset of the cut in the whole buffer.
        offset: usize,
    },
    /// A length form other than one byte, `81 xx` or `82 xx xx` (`80` or `83` and up), or a tag
    /// longer than 3 bytes.
    #[error("TLV length form is not supported at offset {offset}")]
    TlvBadLength {
        /// Byte offset of the offending length or tag byte in the whole buffer.
        offset: usize,
    },
    /// An element with another tag stands where one tag was required.
    #[error("expected TLV tag {expected:#04x}, found {found:#04x}")]
    UnexpectedTag {
        /// The tag required.
        expected: u32,
        /// The tag read.
        found: u32,
    },
    /// A required element is absent from a TLV list.
    #[error("TLV tag {tag:#04x} is missing")]
    MissingTag {
        /// The tag looked for.
        tag: u32,
    },
}

/// An ISO 7816 status word (SW1 SW2).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusWord(pub u16);

impl StatusWord {
    /// `9000`: success.
    pub const OK: Self = Self(0x9000);
    /// `6581`: memory failure (the applet's write failed).
    pub const MEMORY_FAILURE: Self = Self(0x6581);
    /// `6700`: wrong length (Lc or the data).
    pub const WRONG_LENGTH: Self = Self(0x6700);
    /// `6982`: security status not satisfied; YKOATH uses it for "validate first" and "not touched
    /// in time", PIV for a missing PIN, management key or touch.
    pub const SECURITY_STATUS_NOT_SATISFIED: Self = Self(0x6982);
    /// `6983`: authentication method blocked (a PIN or PUK with no tries left).
    pub const AUTH_METHOD_BLOCKED: Self = Self(0x6983);
    /// "Data invalid"; YKOATH uses it for "no such credential".
    pub const NO_SUCH_OBJECT: Self = Self(0x6984);
    /// `6985`: conditions of use not satisfied.
    pub const CONDITIONS_NOT_SATISFIED: Self = Self(0x6985);
    /// `6A80`: incorrect data in the command.
    pub const WRONG_DATA: Self = Self(0x6A80);
    /// `6A82`: application or file not found (SELECT of an absent applet).
    pub const FILE_NOT_FOUND: Self = Self(0x6A82);
    /// `6A84`: not enough memory for the object.
    pub const NO_SPACE: Self = Self(0x6A84);
    /// "Referenced data not found"; PIV uses it for an empty key slot.
    pub const REFERENCE_NOT_FOUND: Self = Self(0x6A88);
    /// `6B00`: wrong parameters P1-P2.
    pub const WRONG_P1P2: Self = Self(0x6B00);
    /// `6D00`: instruction not supported.
    pub const INS_NOT_SUPPORTED: Self = Self(0x6D00);
    /// `6E00`: class not supported.
    pub const CLA_NOT_SUPPORTED: Self = Self(0x6E00);
    /// `6F00`: command aborted (no precise diagnosis).
    pub const COMMAND_ABORTED: Self = Self(0x6F00);

    /// The status word from SW1 and SW2.
    pub fn from_bytes(sw1: u8, sw2: u8) -> Self {
        Self(u16::from_be_bytes([sw1, sw2]))
    }

    /// SW1 and SW2.
    pub fn to_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }

    /// `true` only for `9000`; `61xx` is not ok (more data waits).
    pub fn is_ok(self) -> bool {
        self == Self::OK
    }

    /// `61 xx`: more response data waits; `xx` bytes (0 means 256 or more).
    pub fn more_data(self) -> Option<u8> {
        let [sw1, sw2] = self.to_bytes();
        (sw1 == 0x61).then_some(sw2)
    }

    /// A short name for messages ("6982 security status not satisfied").
    pub fn meaning(self) -> &'static str {
        match self.0 {
            0x9000 => "success",
            0x6581 => "memory failure",
            0x6700 => "wrong length",
            0x6982 => "security status not satisfied",
            0x6983 => "authentication method blocked",
            0x6984 => "data invalid / no such object",
            0x6985 => "conditions of use not satisfied",
            0x6A80 => "incorrect data",
            0x6A82 => "application or file not found",
            0x6A84 => "not enough memory",
            0x6A88 => "referenced data not found",
            0x6B00 => "wrong parameters P1-P2",
            0x6D00 => "instruction not supported",
            0x6E00 => "class not supported",
            0x6F00 => "command aborted",
            sw if sw >> 8 == 0x61 => "more data available",
            sw if sw >> 8 == 0x63 => "verification failed",
            _ => "unknown status",
        }
    }
}

impl fmt::Debug for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SW {:04X}", self.0)
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X} ({})", self.0, self.meaning())
    }
}

/// A command APDU. `Debug` shows the header and the data length, never the data.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    /// Class byte (`00` for every command breakglass sends).
    pub cla: u8,
    /// Instruction byte.
    pub ins: u8,
    /// Parameter byte 1.
    pub p1: u8,
    /// Parameter byte 2.
    pub p2: u8,
    /// Command data (Lc is its length); empty when the command has none.
    pub data: Zeroizing<Vec<u8>>,
    /// Expected response length; `None` when absent from the APDU.
    pub le: Option<u32>,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Command {{ cla: {:02X}, ins: {:02X}, p1: {:02X}, p2: {:02X}, data: {} bytes, le: {:?} }}",
            self.cla,
            self.ins,
            self.p1,
            self.p2,
            self.data.len(),
            self.le
        )
    }
}

impl Command {
    /// A command with no data and no Le.
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Self {
        Self {
            cla,
            ins,
            p1,
            p2,
            data: Zeroizing::new(Vec::new()),
            le: None,
        }
    }

    /// Sets the command data.
    pub fn with_data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = Zeroizing::new(data.into());
        self
    }

    /// Sets the expected response length Le (256 encodes as `00` in a short APDU, 65 536 as `0000`
    /// in an extended one).
    pub fn with_le(mut self, le: u32) -> Self {
        self.le = Some(le);
        self
    }

    /// Encodes as a short APDU when data and Le fit, else as an extended APDU.
    ///
    /// # Panics
    /// Never for data up to [`EXTENDED_MAX`] bytes; longer data is a programming error and is
    /// truncated by the caller's contract (all callers build bounded payloads).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let n = self.data.len();
        let le = self.le.unwrap_or(0);
        let extended = n > SHORT_MAX || le > 256;
        let mut out = Zeroizing::new(Vec::with_capacity(n + 9));
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if !extended {
            if n > 0 {
                out.push(n as u8);
                out.extend_from_slice(&self.data);
            }
            if self.le.is_some() {
                out.push(if le == 256 { 0 } else { le as u8 });
            }
        } else {
            out.push(0);
            if n > 0 {
                out.extend_from_slice(&(n as u16).to_be_bytes());
                out.extend_from_slice(&self.data);
            }
            if self.le.is_some() {
                let le16 = if le >= 65_536 { 0 } else { le as u16 };
                out.extend_from_slice(&le16.to_be_bytes());
            }
        }
        out
    }

    /// Parses a short or extended command APDU (the soft token's side of the wire).
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let bad = |reason| ParseError::BadCommand { reason };
        if bytes.len() < 4 {
            return Err(bad("shorter than a header"));
        }
        let mut cmd = Self::new(bytes[0], bytes[1], bytes[2], bytes[3]);
        let body = &bytes[4..];
        match body.len() {
            0 => {}
            1 => {
                cmd.le = Some(if body[0] == 0 {
                    256
                } else {
                    u32::from(body[0])
                })
            }
            _ if body[0] != 0 => {
                let lc = usize::from(body[0]);
                let rest = &body[1..];
                if rest.len() == lc {
                    cmd.data = Zeroizing::new(rest.to_vec());
                } else if rest.len() == lc + 1 {
                    cmd.data = Zeroizing::new(rest[..lc].to_vec());
                    let le = rest[lc];
                    cmd.le = Some(if le == 0 { 256 } else { u32::from(le) });
                } else {
                    return Err(bad("Lc does not match the data length"));
                }
            }
            2 => return Err(bad("extended APDU with a two-byte body")),
            3 => {
                let le = u32::from(u16::from_be_bytes([body[1], body[2]]));
                cmd.le = Some(if le == 0 { 65_536 } else { le });
            }
            _ => {
                let lc = usize::from(u16::from_be_bytes([body[1], body[2]]));
                let rest = &body[3..];
                if lc == 0 {
                    return Err(bad("extended Lc of zero"));
                }
                if rest.len() == lc {
                    cmd.data = Zeroizing::new(rest.to_vec());
                } else if rest.len() == lc + 2 {
                    cmd.data = Zeroizing::new(rest[..lc].to_vec());
                    let le = u32::from(u16::from_be_bytes([rest[lc], rest[lc + 1]]));
                    cmd.le = Some(if le == 0 { 65_536 } else { le });
                } else {
                    return Err(bad("extended Lc does not match the data length"));
                }
            }
        }
        Ok(cmd)
    }
}

/// A response APDU: data and status word.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// Response data, without the status word.
    pub data: Zeroizing<Vec<u8>>,
    /// The status word SW1 SW2.
    pub sw: StatusWord,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Response {{ {} bytes, {:?} }}", self.data.len(), self.sw)
    }
}

impl Response {
    /// A response with `data` and `sw`.
    pub fn new(data: impl Into<Vec<u8>>, sw: StatusWord) -> Self {
        Self {
            data: Zeroizing::new(data.into()),
            sw,
        }
    }

    /// A response with no data, only `sw`.
    pub fn status(sw: StatusWord) -> Self {
        Self::new(Vec::new(), sw)
    }

    /// Splits raw response bytes into data and the last two bytes, the status word.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let n = bytes.len();
        if n < 2 {
            return Err(ParseError::ResponseTooShort { len: n });
        }
        Ok(Self::new(
            bytes[..n - 2].to_vec(),
            StatusWord::from_bytes(bytes[n - 2], bytes[n - 1]),
        ))
    }

    /// Data followed by SW1 SW2, as on the wire.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.data.len() + 2));
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.sw.to_bytes());
        out
    }
}

/// One BER-TLV element borrowed from a buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag (1 to 3 bytes, as read, big-endian).
    pub tag: u32,
    /// The value bytes.
    pub value: &'a [u8],
}

impl fmt::Debug for Tlv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tlv {{ tag: {:#04x}, {} bytes }}",
            self.tag,
            self.value.len()
        )
    }
}

impl<'a> Tlv<'a> {
    /// Reads one element at the start of `buf`; returns it and the rest.
    pub fn read(buf: &'a [u8], base_offset: usize) -> Result<(Self, &'a [u8]), ParseError> {
        let truncated = |at| ParseError::TlvTruncated {
            offset: base_offset + at,
        };
        let mut i = 0;
        let first = *buf.first().ok_or(truncated(0))?;
        let mut tag = u32::from(first);
        i += 1;
        if first & 0x1F == 0x1F {
            // Multi-byte tag: continue while bit 8 is set. ISO 7816-4 tags are 1–3 bytes, as
            // many as `write_tlv` writes: a 4-byte tag would not encode back to itself.
            loop {
                let b = *buf.get(i).ok_or(truncated(i))?;
                tag = (tag << 8) | u32::from(b);
                i += 1;
                if b & 0x80 == 0 {
                    break;
                }
                if i >= 3 {
                    return Err(ParseError::TlvBadLength {
                        offset: base_offset + i,
                    });
                }
            }
        }
        let l0 = *buf.get(i).ok_or(truncated(i))?;
        i += 1;
        let len = match l0 {
            0x00..=0x7F => usize::from(l0),
            0x81 => {
                let b = *buf.get(i).ok_or(truncated(i))?;
                i += 1;
                usize::from(b)
            }
            0x82 => {
                let hi = *buf.get(i).ok_or(truncated(i))?;
                let lo = *buf.get(i + 1).ok_or(truncated(i + 1))?;
                i += 2;
                usize::from(u16::from_be_bytes([hi, lo]))
            }
            _ => {
                return Err(ParseError::TlvBadLength {
                    offset: base_offset + i - 1,
                })
            }
        };
        let end = i.checked_add(len).ok_or(truncated(i))?;
        if end > buf.len() {
            return Err(truncated(buf.len()));
        }
        Ok((
            Self {
                tag,
                value: &buf[i..end],
            },
            &buf[end..],
        ))
    }

    /// Parses a whole buffer as a sequence of elements.
    pub fn parse_all(mut buf: &'a [u8]) -> Result<Vec<Self>, ParseError> {
        let total = buf.len();
        let mut out = Vec::new();
        while !buf.is_empty() {
            let (tlv, rest) = Self::read(buf, total - buf.len())?;
            out.push(tlv);
            buf = rest;
        }
        Ok(out)
    }

    /// The first element with `tag` in a parsed list.
    pub fn find(list: &[Tlv<'a>], tag: u32) -> Result<&'a [u8], ParseError> {
        list.iter()
            .find(|t| t.tag == tag)
            .map(|t| t.value)
            .ok_or(ParseError::MissingTag { tag })
    }
}

/// Appends a BER-TLV element (tag of 1–3 bytes, length in short or long form).
pub fn write_tlv(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    if tag > 0xFFFF {
        out.push((tag >> 16) as u8);
    }
    if tag > 0xFF {
        out.push((tag >> 8) as u8);
    }
    out.push(tag as u8);
    let n = value.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n <= 0xFF {
        out.extend_from_slice(&[0x81, n as u8]);
    } else {
        let n16 = u16::try_from(n).unwrap_or(u16::MAX);
        out.push(0x82);
        out.extend_from_slice(&n16.to_be_bytes());
    }
    out.extend_from_slice(&value[..n.min(usize::from(u16::MAX))]);
}

/// A TLV element as an owned, zeroizing buffer.
pub fn tlv(tag: u32, value: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() + 5));
    write_tlv(&mut out, tag, value);
    out
}

#[cfg(test)]
mod tests {

    /// Command and response data are never printed, only their lengths: a PIN, a seed or a
    /// key passing through an APDU cannot reach a log through `Debug`.
    #[test]
    fn debug_shows_lengths_never_the_bytes() {
        let marker = b"SECRET-MARKER-123456";
        let cmd = Command {
            cla: 0,
            ins: 0x20,
            p1: 0,
            p2: 0x80,
            data: Zeroizing::new(marker.to_vec()),
            le: None,
        };
        let resp = Response::new(marker.to_vec(), StatusWord(0x9000));
        for shown in [format!("{cmd:?}"), format!("{resp:?}")] {
            assert!(shown.contains("20 bytes"), "{shown}");
            assert!(!shown.contains("SECRET"), "{shown}");
            assert!(!shown.to_lowercase().contains("534543"), "{shown}");
            assert!(!shown.contains("83, 69, 67"), "{shown}");
        }
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_apdu_forms() {
        let c = Command::new(0, 0xA4, 4, 0).with_data(vec![0xA0, 0, 0, 5, 0x27, 0x21, 1]);
        assert_eq!(
            &c.to_bytes()[..],
            &[0, 0xA4, 4, 0, 7, 0xA0, 0, 0, 5, 0x27, 0x21, 1][..]
        );
        let c = Command::new(0, 0xA1, 0, 0);
        assert_eq!(&c.to_bytes()[..], &[0, 0xA1, 0, 0][..]);
        let c = Command::new(0, 0xCB, 0x3F, 0xFF).with_le(256);
        assert_eq!(&c.to_bytes()[..], &[0, 0xCB, 0x3F, 0xFF, 0][..]);
    }

    #[test]
    fn extended_apdu_for_long_data() {
        let c = Command::new(0, 0xDB, 0x3F, 0xFF).with_data(vec![7u8; 300]);
        let b = c.to_bytes();
        assert_eq!(&b[..7], &[0, 0xDB, 0x3F, 0xFF, 0, 0x01, 0x2C][..]);
        assert_eq!(b.len(), 7 + 300);
        assert_eq!(Command::parse(&b).unwrap(), c);
    }

    #[test]
    fn malformed_commands_are_errors() {
        assert!(Command::parse(&[0, 1, 2]).is_err());
        assert!(Command::parse(&[0, 1, 2, 3, 5, 1, 2]).is_err());
        assert!(Command::parse(&[0, 1, 2, 3, 0, 0]).is_err());
        assert!(Command::parse(&[0, 1, 2, 3, 0, 0, 4, 1]).is_err());
    }

    #[test]
    fn response_parse_and_status() {
        let r = Response::parse(&[1, 2, 0x61, 0x10]).unwrap();
        assert_eq!(&r.data[..], &[1, 2][..]);
        assert_eq!(r.sw.more_data(), Some(0x10));
        assert!(Response::parse(&[0x90]).is_err());
        assert!(Response::parse(&[0x90, 0x00]).unwrap().sw.is_ok());
        assert_eq!(
            StatusWord(0x6982).to_string(),
            "6982 (security status not satisfied)"
        );
    }

    #[test]
    fn tlv_long_lengths_and_multibyte_tags() {
        let v = vec![9u8; 200];
        let enc = tlv(0x7F49, &v);
        assert_eq!(&enc[..4], &[0x7F, 0x49, 0x81, 200][..]);
        let (t, rest) = Tlv::read(&enc, 0).unwrap();
        assert_eq!(t.tag, 0x7F49);
        assert_eq!(t.value, &v[..]);
        assert!(rest.is_empty());
        let enc = tlv(0x53, &vec![1u8; 1000]);
        assert_eq!(&enc[..4], &[0x53, 0x82, 0x03, 0xE8][..]);
    }

    #[test]
    fn tlv_malformed_inputs_are_errors() {
        assert!(matches!(
            Tlv::parse_all(&[0x71, 0x05, 1, 2]),
            Err(ParseError::TlvTruncated { .. })
        ));
        assert!(matches!(
            Tlv::parse_all(&[0x71, 0x83, 0, 0, 1]),
            Err(ParseError::TlvBadLength { .. })
        ));
        assert!(Tlv::parse_all(&[0x71]).is_err());
        assert!(Tlv::parse_all(&[0x7F]).is_err());
        // A 4-byte tag (fuzz/regressions/apdu/four-byte-tag).
        assert!(Tlv::parse_all(&[0x5F, 0xB2, 0xFF, 0x01, 0x00]).is_err());
        assert_eq!(
            Tlv::parse_all(&[0x5F, 0xFF, 0x01, 0x00]).unwrap()[0].tag,
            0x5F_FF01
        );
        assert!(Tlv::parse_all(&[0x71, 0x81]).is_err());
        let list = Tlv::parse_all(&[0x71, 0x01, 0xAA]).unwrap();
        assert_eq!(
            Tlv::find(&list, 0x74),
            Err(ParseError::MissingTag { tag: 0x74 })
        );
    }

    proptest! {
        #[test]
        fn command_round_trip(cla: u8, ins: u8, p1: u8, p2: u8,
                              data in proptest::collection::vec(any::<u8>(), 0..600),
                              le in proptest::option::of(1u32..=65_536)) {
            let mut c = Command::new(cla, ins, p1, p2).with_data(data);
            c.le = le;
            let parsed = Command::parse(&c.to_bytes()).unwrap();
            prop_assert_eq!(parsed, c);
        }

        #[test]
        fn tlv_round_trip(items in proptest::collection::vec(
            (prop_oneof![0x01u32..=0x1E, 0x5F01u32..=0x5F7F, 0x7F21u32..=0x7F7F],
             proptest::collection::vec(any::<u8>(), 0..400)), 0..8)) {
            let mut buf = Vec::new();
            for (tag, value) in &items {
                write_tlv(&mut buf, *tag, value);
            }
            let parsed = Tlv::parse_all(&buf).unwrap();
            prop_assert_eq!(parsed.len(), items.len());
            for (p, (tag, value)) in parsed.iter().zip(&items) {
                prop_assert_eq!(p.tag, *tag);
                prop_assert_eq!(p.value, &value[..]);
            }
        }

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Tlv::parse_all(&bytes);
            let _ = Command::parse(&bytes);
            let _ = Response::parse(&bytes);
        }
    }
}
