//! The bridge that plugs a [`SoftCard`] into the `vpcd` virtual reader of pcscd
//! (vsmartcard). The card is the TCP client; vpcd, loaded by pcscd, listens.
//!
//! Wire format: every message is a 2-byte big-endian length and a payload. A 1-byte payload is
//! a control message (0 power off, 1 power on, 2 reset, 4 get ATR: answered with the ATR);
//! anything longer is a command APDU, answered with the response APDU.
//!
//! Latency quirk: without `TCP_NODELAY` and `TCP_QUICKACK` every APDU waits for a delayed ACK
//! (~44 ms); with both it takes ~0.3 ms. Linux is not permanent about `TCP_QUICKACK`: sending
//! a response puts the socket back into delayed-ACK ("pingpong") mode, and then the ACK of the
//! next length prefix waits ~40 ms while vpcd's Nagle holds the APDU behind it. So it is set
//! again after every read and after every write.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use socket2::SockRef;
use zeroize::Zeroizing;

use super::{SoftCard, ATR};

/// vpcd's first reader slot ("Virtual PCD 00 00"); the second is on the next port.
pub const DEFAULT_PORT: u16 = 35963;

const CTRL_OFF: u8 = 0;
const CTRL_ON: u8 = 1;
const CTRL_RESET: u8 = 2;
const CTRL_ATR: u8 = 4;

/// Connects to vpcd. Only loopback addresses are allowed: the card's traffic carries secrets.
pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("vpcd address {addr} is not a loopback address; use 127.0.0.1"),
        ));
    }
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    set_quickack(&stream);
    Ok(stream)
}

fn set_quickack(stream: &TcpStream) {
    // Best effort: only a latency optimisation.
    let _ = SockRef::from(stream).set_quickack(true);
}

fn read_message(stream: &mut TcpStream) -> io::Result<Option<Zeroizing<Vec<u8>>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    set_quickack(stream);
    let mut payload = Zeroizing::new(vec![0u8; usize::from(u16::from_be_bytes(len))]);
    stream.read_exact(&mut payload)?;
    set_quickack(stream);
    Ok(Some(payload))
}

fn write_message(stream: &mut TcpStream, payload: &[u8]) -> io::Result<()> {
    let len = u16::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "response longer than 64 KiB"))?;
    let mut frame = Zeroizing::new(Vec::with_capacity(payload.len() + 2));
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    stream.write_all(&frame)?;
    set_quickack(stream);
    Ok(())
}

/// Serves the card on a connected stream until vpcd closes it (Ok) or I/O fails.
pub fn serve(card: &mut SoftCard, stream: &mut TcpStream) -> io::Result<()> {
    while let Some(msg) = read_message(stream)? {
        match msg.as_slice() {
            [] => {}
            [CTRL_OFF] | [CTRL_ON] | [CTRL_RESET] => card.reset(),
            [CTRL_ATR] => write_message(stream, &ATR)?,
            [_] => {} // unknown control message: vpcd expects no answer
            apdu => {
                let response = card.process(apdu);
                write_message(stream, &response)?;
            }
        }
    }
    Ok(())
}
