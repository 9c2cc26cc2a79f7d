//! A streaming response-body decoder: for bodies larger than the caller's buffer (policy bodies),
//! the IO loop hands each read's bytes to [`BodyDecoder::feed`], which passes the body's data
//! on (chunked framing removed) as it arrives. Any split of the input yields the same data as
//! [`super::decode_chunked_in_place`] on the whole; the framing is validated as strictly.

use super::response::BodyFraming;
use super::HttpError;
use crate::sink::Sink;

/// Why feeding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum StreamError {
    /// The framing is malformed.
    Http(HttpError),
    /// The caller's sink refused the data.
    Sink,
}

/// What one [`BodyDecoder::feed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Fed {
    /// Input bytes that belonged to the body (the rest, if any, follows the response).
    pub consumed: usize,
    /// The body is complete.
    pub complete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Chunk {
    /// Reading the hex size (`digits` so far).
    Size {
        size: usize,
        digits: usize,
    },
    /// Whitespace after the size.
    SizeWs {
        size: usize,
    },
    /// A chunk extension up to CR.
    Ext {
        size: usize,
    },
    /// CR of the size line seen.
    SizeLf {
        size: usize,
    },
    /// Chunk data still to come.
    Data {
        left: usize,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum State {
    Length { left: usize },
    Chunked(Chunk),
    UntilClose,
}

/// Decodes one response body incrementally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BodyDecoder {
    state: State,
    delivered: usize,
}

fn hex(b: u8) -> Option<usize> {
    match b {
        b'0'..=b'9' => Some(usize::from(b - b'0')),
        b'a'..=b'f' => Some(usize::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(usize::from(b - b'A' + 10)),
        _ => None,
    }
}

fn line_char(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7F)
}

impl BodyDecoder {
    /// A decoder for a body with this framing.
    pub fn new(framing: BodyFraming) -> Self {
        let state = match framing {
            BodyFraming::ContentLength(n) => State::Length { left: n },
            BodyFraming::Chunked => State::Chunked(Chunk::Size { size: 0, digits: 0 }),
            BodyFraming::UntilClose => State::UntilClose,
        };
        Self {
            state,
            delivered: 0,
        }
    }

    /// Body bytes passed on so far.
    pub fn delivered(&self) -> usize {
        self.delivered
    }

    /// Whether the body is complete (an `UntilClose` body completes only at [`Self::finish`]).
    pub fn is_complete(&self) -> bool {
        matches!(
            self.state,
            State::Length { left: 0 } | State::Chunked(Chunk::Done)
        )
    }

    /// The peer closed the connection: `Ok` if the body is complete (or runs until the close).
    pub fn finish(&self) -> Result<(), HttpError> {
        if self.is_complete() || self.state == State::UntilClose {
            Ok(())
        } else {
            Err(HttpError::UnexpectedEof)
        }
    }

    fn deliver(&mut self, data: &[u8], out: &mut dyn Sink) -> Result<(), StreamError> {
        if data.is_empty() {
            return Ok(());
        }
        self.delivered = self.delivered.saturating_add(data.len());
        out.write(data).map_err(|_| StreamError::Sink)
    }

    /// Decode `input` (the next bytes of the response after its head), writing the body's data
    /// to `out` as it is found. Stops at the end of the body.
    pub fn feed(&mut self, input: &[u8], out: &mut dyn Sink) -> Result<Fed, StreamError> {
        let mut pos = 0usize;
        match self.state {
            State::UntilClose => {
                self.deliver(input, out)?;
                return Ok(Fed {
                    consumed: input.len(),
                    complete: false,
                });
            }
            State::Length { left } => {
                let n = left.min(input.len());
                self.state = State::Length { left: left - n };
                self.deliver(input.get(..n).unwrap_or(&[]), out)?;
                return Ok(Fed {
                    consumed: n,
                    complete: self.is_complete(),
                });
            }
            State::Chunked(_) => {}
        }
        let bad_size = StreamError::Http(HttpError::InvalidChunkSize);
        let bad_chunk = StreamError::Http(HttpError::MalformedChunk);
        while let State::Chunked(chunk) = self.state {
            if chunk == Chunk::Done {
                break;
            }
            if let Chunk::Data { left } = chunk {
                let avail = input.len().saturating_sub(pos);
                if avail == 0 {
                    break;
                }
                let n = left.min(avail);
                let end = pos.saturating_add(n);
                self.state = State::Chunked(if n == left {
                    Chunk::DataCr
                } else {
                    Chunk::Data { left: left - n }
                });
                self.deliver(input.get(pos..end).unwrap_or(&[]), out)?;
                pos = end;
                continue;
            }
            let Some(&b) = input.get(pos) else { break };
            pos = pos.saturating_add(1);
            let next = match chunk {
                Chunk::Size { size, digits } => match (hex(b), b) {
                    (Some(d), _) => Chunk::Size {
                        size: size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(d))
                            .ok_or(StreamError::Http(HttpError::ChunkSizeOverflow))?,
                        digits: digits.saturating_add(1),
                    },
                    (None, _) if digits == 0 => return Err(bad_size),
                    (None, b' ' | b'\t') => Chunk::SizeWs { size },
                    (None, b';') => Chunk::Ext { size },
                    (None, b'\r') => Chunk::SizeLf { size },
                    (None, _) => return Err(bad_size),
                },
                Chunk::SizeWs { size } => match b {
                    b' ' | b'\t' => Chunk::SizeWs { size },
                    b';' => Chunk::Ext { size },
                    b'\r' => Chunk::SizeLf { size },
                    _ => return Err(bad_size),
                },
                Chunk::Ext { size } => match b {
                    b'\r' => Chunk::SizeLf { size },
                    b if line_char(b) => Chunk::Ext { size },
                    _ => return Err(bad_size),
                },
                Chunk::SizeLf { size } => match b {
                    b'\n' if size == 0 => Chunk::TrailerStart,
                    b'\n' => Chunk::Data { left: size },
                    _ => return Err(bad_size),
                },
                Chunk::DataCr => match b {
                    b'\r' => Chunk::DataLf,
                    _ => return Err(bad_chunk),
                },
                Chunk::DataLf => match b {
                    b'\n' => Chunk::Size { size: 0, digits: 0 },
                    _ => return Err(bad_chunk),
                },
                Chunk::TrailerStart => match b {
                    b'\r' => Chunk::FinalLf,
                    b if line_char(b) => Chunk::TrailerLine,
                    _ => return Err(bad_chunk),
                },
                Chunk::TrailerLine => match b {
                    b'\r' => Chunk::TrailerLf,
                    b if line_char(b) => Chunk::TrailerLine,
                    _ => return Err(bad_chunk),
                },
                Chunk::TrailerLf => match b {
                    b'\n' => Chunk::TrailerStart,
                    _ => return Err(bad_chunk),
                },
                Chunk::FinalLf => match b {
                    b'\n' => Chunk::Done,
                    _ => return Err(bad_chunk),
                },
                // Handled above.
                Chunk::Data { .. } | Chunk::Done => chunk,
            };
            self.state = State::Chunked(next);
        }
        Ok(Fed {
            consumed: pos,
            complete: self.is_complete(),
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::http::{decode_chunked_in_place, ChunkedProgress};
    use crate::sink::{CountingSink, Overflow};
    use std::vec::Vec;

    struct VecSink(Vec<u8>);
    impl Sink for VecSink {
        fn write(&mut self, b: &[u8]) -> Result<(), Overflow> {
            self.0.extend_from_slice(b);
            Ok(())
        }
    }
    struct Refuse;
    impl Sink for Refuse {
        fn write(&mut self, _: &[u8]) -> Result<(), Overflow> {
            Err(Overflow)
        }
    }

    fn stream(
        framing: BodyFraming,
        input: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, usize, bool), StreamError> {
        let mut d = BodyDecoder::new(framing);
        let mut out = VecSink(Vec::new());
        let mut consumed = 0;
        for piece in input.chunks(step.max(1)) {
            if d.is_complete() {
                break;
            }
            let fed = d.feed(piece, &mut out)?;
            consumed += fed.consumed;
        }
        assert_eq!(d.delivered(), out.0.len());
        Ok((out.0, consumed, d.is_complete()))
    }

    const CHUNKED: &[u8] =
        b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE \r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";

    #[test]
    fn chunked_any_split_matches_the_in_place_decoder() {
        let mut whole = CHUNKED.to_vec();
        let n = match decode_chunked_in_place(&mut whole[..CHUNKED.len() - 4]).unwrap() {
            ChunkedProgress::Complete { body_len } => body_len,
            ChunkedProgress::Incomplete => panic!(),
        };
        for step in 1..CHUNKED.len() {
            let (out, consumed, complete) = stream(BodyFraming::Chunked, CHUNKED, step).unwrap();
            assert_eq!(out, &whole[..n], "step {step}");
            assert!(complete);
            assert_eq!(consumed, CHUNKED.len() - 4, "step {step}");
        }
    }

    #[test]
    fn length_and_until_close() {
        let (out, consumed, complete) =
            stream(BodyFraming::ContentLength(5), b"hello world", 3).unwrap();
        assert_eq!(
            (out.as_slice(), consumed, complete),
            (&b"hello"[..], 5, true)
        );
        let mut d = BodyDecoder::new(BodyFraming::ContentLength(0));
        assert!(d.is_complete());
        assert_eq!(
            d.feed(b"x", &mut CountingSink::default()).unwrap().consumed,
            0
        );
        let mut d = BodyDecoder::new(BodyFraming::ContentLength(4));
        d.feed(b"ab", &mut CountingSink::default()).unwrap();
        assert_eq!(d.finish(), Err(HttpError::UnexpectedEof));
        let mut d = BodyDecoder::new(BodyFraming::UntilClose);
        d.feed(b"abc", &mut CountingSink::default()).unwrap();
        assert!(!d.is_complete());
        assert_eq!(d.finish(), Ok(()));
        assert_eq!(d.delivered(), 3);
    }

    #[test]
    fn malformed_chunks_are_refused_like_the_in_place_decoder() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"4\nWiki\r\n0\r\n\r\n",
            b"4\r\nWikiX\r\n0\r\n\r\n",
            b"4\r\nWiki\rX0\r\n\r\n",
            b"4 x\r\n",
            b"4;\x01\r\n",
            b"0\r\nX\x01\r\n\r\n",
            b"0\r\n\rX",
            b"FFFFFFFFFFFFFFFFFFFF\r\n",
        ] {
            let mut buf = bad.to_vec();
            assert!(decode_chunked_in_place(&mut buf).is_err(), "{bad:?}");
            for step in 1..=bad.len() {
                assert!(
                    matches!(
                        stream(BodyFraming::Chunked, bad, step),
                        Err(StreamError::Http(_))
                    ),
                    "{bad:?} step {step}"
                );
            }
        }
        let mut d = BodyDecoder::new(BodyFraming::Chunked);
        d.feed(b"4\r\nWi", &mut CountingSink::default()).unwrap();
        assert_eq!(d.finish(), Err(HttpError::UnexpectedEof));
        assert_eq!(
            BodyDecoder::new(BodyFraming::Chunked).feed(b"4\r\nWiki\r\n", &mut Refuse),
            Err(StreamError::Sink)
        );
    }
}
