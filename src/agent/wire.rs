//! The agent's wire format: length-prefixed frames over a Unix socket.
//!
//! A frame is a 4-byte big-endian length (1..=[`MAX_FRAME`]) and a body. A body is one byte
//! naming the message and then its fields, each a 2-byte big-endian length and the bytes.
//! Field order is fixed per message. A hand-written format rather than JSON: every byte of a
//! secret is read straight into a buffer that is wiped on drop, and no parser makes copies
//! behind our back (the agent's memory is scanned for secrets in the tests).

use std::io::{self, Read, Write};

use zeroize::Zeroizing;

/// The largest frame either side accepts. Real STS session tokens are 0.4-3 KiB.
pub const MAX_FRAME: usize = 64 * 1024;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection ended before a whole frame (EOF).
    #[error("the other side closed the connection")]
    Closed,
    /// A frame or field longer than its limit: its length, in bytes.
    #[error("frame of {0} bytes is over the limit of {MAX_FRAME}")]
    TooLarge(usize),
    /// A frame of length 0, or a body with no kind byte.
    #[error("empty frame")]
    Empty,
    /// The body does not parse as a message, or a field is missing or of the wrong form.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// The agent will not take a lead's result (profile locked meanwhile, arena full): the reason,
    /// passed to the waiting callers.
    #[error("{0}")]
    Refused(String),
    /// Reading or writing the socket failed (timeouts included).
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Reads one frame into a buffer that is wiped when dropped.
pub fn read_frame(r: &mut impl Read) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let mut body = Zeroizing::new(vec![0u8; len]);
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => FrameError::Closed,
        _ => FrameError::Io(e),
    })?;
    Ok(body)
}

/// [`read_frame`] with a deadline for the whole frame, not for each read: a peer that sends a
/// byte now and then cannot hold the connection past `deadline`.
pub fn read_frame_by(
    stream: &mut std::os::unix::net::UnixStream,
    deadline: std::time::Instant,
) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    struct ByDeadline<'s> {
        stream: &'s mut std::os::unix::net::UnixStream,
        deadline: std::time::Instant,
    }
    impl Read for ByDeadline<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let left = self
                .deadline
                .saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the frame did not arrive in time",
                ));
            }
            self.stream.set_read_timeout(Some(left))?;
            self.stream.read(buf)
        }
    }
    read_frame(&mut ByDeadline { stream, deadline })
}

/// Encodes a message (kind + fields) as one frame, in a buffer sized exactly up front so that
/// it never reallocates and leaves no unwiped copy behind.
pub fn encode(kind: u8, fields: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, FrameError> {
    let body_len = 1 + fields.iter().map(|f| 2 + f.len()).sum::<usize>();
    if body_len > MAX_FRAME {
        return Err(FrameError::TooLarge(body_len));
    }
    let mut out = Zeroizing::new(Vec::with_capacity(4 + body_len));
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    out.push(kind);
    for f in fields {
        let len = u16::try_from(f.len()).map_err(|_| FrameError::TooLarge(f.len()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(f);
    }
    Ok(out)
}

/// Writes a message as one frame.
pub fn send(w: &mut impl Write, kind: u8, fields: &[&[u8]]) -> Result<(), FrameError> {
    let frame = encode(kind, fields)?;
    w.write_all(&frame)?;
    w.flush()?;
    Ok(())
}

/// A decoded body: its kind and borrowed fields.
pub struct Message<'a> {
    /// The message kind (see [`super::kind`]).
    pub kind: u8,
    fields: Vec<&'a [u8]>,
}

impl<'a> Message<'a> {
    /// Splits a frame body into its kind and fields (at most 32).
    pub fn parse(body: &'a [u8]) -> Result<Self, FrameError> {
        let (&kind, mut rest) = body.split_first().ok_or(FrameError::Empty)?;
        let mut fields = Vec::new();
        while !rest.is_empty() {
            if rest.len() < 2 {
                return Err(FrameError::Malformed("truncated field length"));
            }
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            rest = &rest[2..];
            if rest.len() < len {
                return Err(FrameError::Malformed("field longer than the frame"));
            }
            fields.push(&rest[..len]);
            rest = &rest[len..];
            if fields.len() > 32 {
                return Err(FrameError::Malformed("too many fields"));
            }
        }
        Ok(Self { kind, fields })
    }

    /// Checks the field count of this kind of message.
    pub fn expect(&self, n: usize) -> Result<(), FrameError> {
        if self.fields.len() == n {
            Ok(())
        } else {
            Err(FrameError::Malformed("wrong number of fields"))
        }
    }

    /// Field `i`, raw (secret fields are read with this, never as text).
    pub fn bytes(&self, i: usize) -> Result<&'a [u8], FrameError> {
        self.fields
            .get(i)
            .copied()
            .ok_or(FrameError::Malformed("missing field"))
    }

    /// A field that is not secret, as text.
    pub fn text(&self, i: usize) -> Result<&'a str, FrameError> {
        std::str::from_utf8(self.bytes(i)?).map_err(|_| FrameError::Malformed("text is not UTF-8"))
    }

    /// Field `i` as a big-endian `u64` (8 bytes): times are Unix seconds.
    pub fn number(&self, i: usize) -> Result<u64, FrameError> {
        let b = self.bytes(i)?;
        let arr: [u8; 8] = b
            .try_into()
            .map_err(|_| FrameError::Malformed("number is not 8 bytes"))?;
        Ok(u64::from_be_bytes(arr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_sent_a_byte_at_a_time_ends_at_its_deadline_not_per_read() {
        let (mut agent_end, mut slow) = std::os::unix::net::UnixStream::pair().unwrap();
        let dribble = std::thread::spawn(move || {
            // A byte every 20 ms: each read would succeed well inside a per-read timeout.
            for b in [0u8, 0, 0, 200].iter().chain(std::iter::repeat_n(&7, 100)) {
                if slow.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
        let err = read_frame_by(&mut agent_end, deadline).err().unwrap();
        assert!(
            matches!(&err, FrameError::Io(e) if e.kind() == io::ErrorKind::TimedOut
                || e.kind() == io::ErrorKind::WouldBlock),
            "{err}"
        );
        drop(agent_end);
        dribble.join().unwrap();
    }
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let frame = encode(7, &[b"prod", b"", &42u64.to_be_bytes()]).unwrap();
        assert_eq!(frame.capacity(), frame.len(), "sized exactly");
        let body = read_frame(&mut &frame[..]).unwrap();
        let m = Message::parse(&body).unwrap();
        assert_eq!(m.kind, 7);
        m.expect(3).unwrap();
        assert_eq!(m.text(0).unwrap(), "prod");
        assert_eq!(m.bytes(1).unwrap(), b"");
        assert_eq!(m.number(2).unwrap(), 42);
        assert!(m.bytes(3).is_err());
    }

    #[test]
    fn limits_and_truncation() {
        let mut big = (MAX_FRAME as u32 + 1).to_be_bytes().to_vec();
        big.extend_from_slice(&[0; 16]);
        assert!(matches!(
            read_frame(&mut &big[..]),
            Err(FrameError::TooLarge(_))
        ));
        assert!(matches!(
            read_frame(&mut &[0u8, 0, 0, 0][..]),
            Err(FrameError::Empty)
        ));
        assert!(matches!(
            read_frame(&mut &[0u8, 0, 0, 9, 1][..]),
            Err(FrameError::Closed)
        ));
        assert!(matches!(read_frame(&mut &[][..]), Err(FrameError::Closed)));
        assert!(Message::parse(&[1, 0, 5, b'a']).is_err());
        assert!(Message::parse(&[1, 0]).is_err());
        assert!(encode(1, &[&vec![0u8; 70_000]]).is_err());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(m) = Message::parse(&body) {
                for i in 0..4 {
                    let _ = m.text(i);
                    let _ = m.number(i);
                }
            }
            let mut framed = (body.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&body);
            let _ = read_frame(&mut &framed[..]);
        }
    }
}
