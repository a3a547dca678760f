//! The protobuf wire format, read without a schema: a message is a sequence of
//! (field number, wire type, value) records. Every read is bounds-checked; malformed input
//! becomes a [`WireError`], never a panic.

/// A field value as it sits on the wire.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated varint")]
    TruncatedVarint,
    #[error("varint longer than 10 bytes")]
    VarintTooLong,
    #[error("length-delimited field runs past the end of its message")]
    TruncatedBytes,
    #[error("fixed-width field runs past the end of its message")]
    TruncatedFixed,
    #[error("field number 0")]
    FieldNumberZero,
    #[error("field number above 2^29-1")]
    FieldNumberTooLarge,
    #[error("wire type {0} (groups and unknown wire types are not used by Kubernetes)")]
    UnsupportedWireType(u8),
}

/// Reads the records of one message.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(WireError::TruncatedVarint);
            };
            self.pos += 1;
            // The tenth byte carries only the top bit of a u64; extra bits are dropped as
            // other protobuf decoders do.
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(WireError::VarintTooLong)
    }

    fn take(&mut self, n: usize, err: WireError) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(err)?;
        let bytes = self.buf.get(self.pos..end).ok_or(err)?;
        self.pos = end;
        Ok(bytes)
    }

    /// A little-endian 8-byte value, as in packed repeated doubles.
    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8, WireError::TruncatedFixed)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| WireError::TruncatedFixed)?))
    }

    /// The next record, or `None` at the end of the message.
    pub fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, WireError> {
        if self.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 {
            return Err(WireError::FieldNumberZero);
        }
        let number = u32::try_from(number).ok().filter(|n| *n < (1 << 29)).ok_or(WireError::FieldNumberTooLarge)?;
        let value = match (key & 7) as u8 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(self.fixed64()?),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| WireError::TruncatedBytes)?;
                WireValue::Bytes(self.take(len, WireError::TruncatedBytes)?)
            }
            5 => {
                let b = self.take(4, WireError::TruncatedFixed)?;
                WireValue::Fixed32(u32::from_le_bytes(b.try_into().map_err(|_| WireError::TruncatedFixed)?))
            }
            other => return Err(WireError::UnsupportedWireType(other)),
        };
        Ok(Some((number, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_wire_type() {
        // field 1 varint 150, field 2 bytes "hi", field 3 fixed64 1, field 4 fixed32 2
        let buf = [0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x25, 2, 0, 0, 0];
        let mut r = Reader::new(&buf);
        assert_eq!(r.next_field(), Ok(Some((1, WireValue::Varint(150)))));
        assert_eq!(r.next_field(), Ok(Some((2, WireValue::Bytes(b"hi")))));
        assert_eq!(r.next_field(), Ok(Some((3, WireValue::Fixed64(1)))));
        assert_eq!(r.next_field(), Ok(Some((4, WireValue::Fixed32(2)))));
        assert_eq!(r.next_field(), Ok(None));
    }

    #[test]
    fn rejects_malformed_records() {
        assert_eq!(Reader::new(&[0x08]).next_field(), Err(WireError::TruncatedVarint));
        assert_eq!(Reader::new(&[0x12, 0x05, b'a']).next_field(), Err(WireError::TruncatedBytes));
        assert_eq!(Reader::new(&[0x00, 0x00]).next_field(), Err(WireError::FieldNumberZero));
        assert_eq!(Reader::new(&[0x0b]).next_field(), Err(WireError::UnsupportedWireType(3)));
        assert_eq!(Reader::new(&[0x09, 1, 2]).next_field(), Err(WireError::TruncatedFixed));
        let long = [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&long).next_field(), Err(WireError::VarintTooLong));
        let huge_len = [0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&huge_len).next_field(), Err(WireError::TruncatedBytes));
    }
}
