//! Tablestore's PlainBuffer row format (the `row_change` of a BatchWriteRow row, and rows in
//! responses), with its CRC-8 checksums, written from the format's description and checked
//! byte for byte against the official `tablestore` Python package (`testdata/vectors.json`).
//!
//! A buffer is a little-endian `u32` header `0x75`, then per row: `TAG_ROW_PK` and the primary
//! key cells, `TAG_ROW_DATA` and the attribute cells (when there are any), an optional
//! `TAG_DELETE_ROW_MARKER`, and `TAG_ROW_CHECKSUM` with the row's CRC-8. A cell is `TAG_CELL`,
//! `TAG_CELL_NAME` + `u32` length + UTF-8 name, `TAG_CELL_VALUE` + `u32` length + type byte +
//! payload (absent for a delete cell), optional `TAG_CELL_TYPE` + op byte and
//! `TAG_CELL_TIMESTAMP` + `i64`, and `TAG_CELL_CHECKSUM` + the cell's CRC-8.
//!
//! Checksums: CRC-8 (polynomial 0x07, init 0, no reflection) over the cell's name bytes, its
//! type byte, its payload (integers and lengths as little-endian bytes, doubles as their bits),
//! then the timestamp and the op byte; a row's CRC-8 runs over its cells' CRCs and then one
//! byte: 1 with a delete marker, else 0.

use thiserror::Error;

const HEADER: u32 = 0x75;
const TAG_ROW_PK: u8 = 0x1;
const TAG_ROW_DATA: u8 = 0x2;
const TAG_CELL: u8 = 0x3;
const TAG_CELL_NAME: u8 = 0x4;
const TAG_CELL_VALUE: u8 = 0x5;
const TAG_CELL_TYPE: u8 = 0x6;
const TAG_CELL_TIMESTAMP: u8 = 0x7;
const TAG_DELETE_ROW_MARKER: u8 = 0x8;
const TAG_ROW_CHECKSUM: u8 = 0x9;
const TAG_CELL_CHECKSUM: u8 = 0xA;

const VT_INTEGER: u8 = 0x0;
const VT_DOUBLE: u8 = 0x1;
const VT_BOOLEAN: u8 = 0x2;
const VT_STRING: u8 = 0x3;
const VT_BLOB: u8 = 0x7;

/// A cell's op in an UpdateRow: delete every version of the column.
pub const DELETE_ALL_VERSION: u8 = 0x1;

/// One cell value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Int(i64),
    Double(f64),
    Bool(bool),
    Str(String),
    Blob(Vec<u8>),
}

/// One attribute cell as decoded: its value (none for a delete), op and timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<Cell>,
    pub op: Option<u8>,
    pub timestamp: Option<i64>,
}

/// A decoded row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub primary_key: Vec<(String, Cell)>,
    pub attributes: Vec<Attribute>,
    pub delete_marker: bool,
}

/// Why a buffer does not decode.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("PlainBuffer ends early (at byte {0})")]
    Truncated(usize),
    #[error("PlainBuffer header is {0:#x}, not 0x75")]
    Header(u32),
    #[error("PlainBuffer expected tag {expected:#x} at byte {at}, found {found:#x}")]
    Tag { expected: u8, found: u8, at: usize },
    #[error("PlainBuffer value type {0:#x} is unknown")]
    ValueType(u8),
    #[error("PlainBuffer {what} checksum is {found:#04x}, computed {computed:#04x}")]
    Checksum {
        what: &'static str,
        found: u8,
        computed: u8,
    },
    #[error("PlainBuffer value length {declared} does not match its {actual} bytes")]
    Length { declared: u32, actual: usize },
    #[error("PlainBuffer boolean byte {0:#x} is not 0 or 1")]
    Bool(u8),
    #[error("PlainBuffer cell name or string is not UTF-8")]
    Utf8,
}

const fn crc8_table() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u8;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 0x80 != 0 {
                (c << 1) ^ 0x07
            } else {
                c << 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC8: [u8; 256] = crc8_table();

fn crc(mut c: u8, bytes: &[u8]) -> u8 {
    for b in bytes {
        c = CRC8[(c ^ b) as usize];
    }
    c
}

/// The cell checksum contribution of a value: type byte and payload.
fn crc_value(c: u8, value: &Cell) -> u8 {
    match value {
        Cell::Int(v) => crc(crc(c, &[VT_INTEGER]), &v.to_le_bytes()),
        Cell::Double(v) => crc(crc(c, &[VT_DOUBLE]), &v.to_bits().to_le_bytes()),
        Cell::Bool(v) => crc(crc(c, &[VT_BOOLEAN]), &[*v as u8]),
        Cell::Str(s) => crc_bytes_value(c, VT_STRING, s.as_bytes()),
        Cell::Blob(b) => crc_bytes_value(c, VT_BLOB, b),
    }
}

fn crc_bytes_value(c: u8, vt: u8, bytes: &[u8]) -> u8 {
    let c = crc(c, &[vt]);
    let c = crc(c, &(bytes.len() as u32).to_le_bytes());
    crc(c, bytes)
}

/// Appends rows to a buffer that starts with the header.
pub struct Encoder {
    buf: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder::new()
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder {
            buf: HEADER.to_le_bytes().to_vec(),
        }
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn value(&mut self, value: &Cell) {
        self.buf.push(TAG_CELL_VALUE);
        match value {
            Cell::Int(v) => {
                self.u32(9);
                self.buf.push(VT_INTEGER);
                self.buf.extend_from_slice(&v.to_le_bytes());
            }
            Cell::Double(v) => {
                self.u32(9);
                self.buf.push(VT_DOUBLE);
                self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            Cell::Bool(v) => {
                self.u32(2);
                self.buf.push(VT_BOOLEAN);
                self.buf.push(*v as u8);
            }
            Cell::Str(s) => self.bytes_value(VT_STRING, s.as_bytes()),
            Cell::Blob(b) => self.bytes_value(VT_BLOB, b),
        }
    }

    fn bytes_value(&mut self, vt: u8, bytes: &[u8]) {
        self.u32(5 + bytes.len() as u32);
        self.buf.push(vt);
        self.u32(bytes.len() as u32);
        self.buf.extend_from_slice(bytes);
    }

    /// One cell; returns its checksum. `op` is a delete op (no value then).
    fn cell(&mut self, name: &str, value: Option<&Cell>, op: Option<u8>) -> u8 {
        self.buf.push(TAG_CELL);
        self.buf.push(TAG_CELL_NAME);
        self.u32(name.len() as u32);
        self.buf.extend_from_slice(name.as_bytes());
        let mut c = crc(0, name.as_bytes());
        if let Some(v) = value {
            self.value(v);
            c = crc_value(c, v);
        }
        if let Some(op) = op {
            self.buf.push(TAG_CELL_TYPE);
            self.buf.push(op);
            c = crc(c, &[op]);
        }
        self.buf.push(TAG_CELL_CHECKSUM);
        self.buf.push(c);
        c
    }

    /// A row for PutRow / UpdateRow: the primary key, then the attribute cells (`None` =
    /// delete all versions of the column, UpdateRow only).
    pub fn row(&mut self, primary_key: &[(&str, &Cell)], attributes: &[(&str, Option<&Cell>)]) {
        self.buf.push(TAG_ROW_PK);
        let mut row = 0u8;
        for (name, value) in primary_key {
            let c = self.cell(name, Some(value), None);
            row = crc(row, &[c]);
        }
        if !attributes.is_empty() {
            self.buf.push(TAG_ROW_DATA);
            for (name, value) in attributes {
                let op = value.is_none().then_some(DELETE_ALL_VERSION);
                let c = self.cell(name, *value, op);
                row = crc(row, &[c]);
            }
        }
        row = crc(row, &[0]);
        self.buf.push(TAG_ROW_CHECKSUM);
        self.buf.push(row);
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// One row in its own buffer (what a BatchWriteRow row's `row_change` holds).
pub fn encode_row(primary_key: &[(&str, &Cell)], attributes: &[(&str, Option<&Cell>)]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.row(primary_key, attributes);
    e.finish()
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError::Truncated(self.pos))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn expect(&mut self, tag: u8) -> Result<(), DecodeError> {
        let at = self.pos;
        let found = self.byte()?;
        if found != tag {
            return Err(DecodeError::Tag {
                expected: tag,
                found,
                at,
            });
        }
        Ok(())
    }
    fn string(&mut self, n: usize) -> Result<String, DecodeError> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| DecodeError::Utf8)
    }

    fn value(&mut self) -> Result<Cell, DecodeError> {
        let declared = self.u32()?;
        let start = self.pos;
        let vt = self.byte()?;
        let value = match vt {
            VT_INTEGER => Cell::Int(self.i64()?),
            VT_DOUBLE => Cell::Double(f64::from_bits(self.i64()? as u64)),
            VT_BOOLEAN => match self.byte()? {
                b @ (0 | 1) => Cell::Bool(b == 1),
                other => return Err(DecodeError::Bool(other)),
            },
            VT_STRING => {
                let n = self.u32()? as usize;
                Cell::Str(self.string(n)?)
            }
            VT_BLOB => {
                let n = self.u32()? as usize;
                Cell::Blob(self.take(n)?.to_vec())
            }
            other => return Err(DecodeError::ValueType(other)),
        };
        let actual = self.pos - start;
        if declared as usize != actual {
            return Err(DecodeError::Length { declared, actual });
        }
        Ok(value)
    }

    /// One cell (after its `TAG_CELL`); returns it and its verified checksum.
    fn cell(&mut self) -> Result<(Attribute, u8), DecodeError> {
        self.expect(TAG_CELL_NAME)?;
        let n = self.u32()? as usize;
        let name = self.string(n)?;
        let mut c = crc(0, name.as_bytes());
        let mut cell = Attribute {
            name,
            value: None,
            op: None,
            timestamp: None,
        };
        if self.peek() == Some(TAG_CELL_VALUE) {
            self.pos += 1;
            let v = self.value()?;
            c = crc_value(c, &v);
            cell.value = Some(v);
        }
        if self.peek() == Some(TAG_CELL_TYPE) {
            self.pos += 1;
            cell.op = Some(self.byte()?);
        }
        if self.peek() == Some(TAG_CELL_TIMESTAMP) {
            self.pos += 1;
            let ts = self.i64()?;
            c = crc(c, &ts.to_le_bytes());
            cell.timestamp = Some(ts);
        }
        if let Some(op) = cell.op {
            c = crc(c, &[op]);
        }
        self.expect(TAG_CELL_CHECKSUM)?;
        let found = self.byte()?;
        if found != c {
            return Err(DecodeError::Checksum {
                what: "cell",
                found,
                computed: c,
            });
        }
        Ok((cell, c))
    }

    fn row(&mut self) -> Result<Row, DecodeError> {
        self.expect(TAG_ROW_PK)?;
        let mut row_crc = 0u8;
        let mut row = Row {
            primary_key: Vec::new(),
            attributes: Vec::new(),
            delete_marker: false,
        };
        while self.peek() == Some(TAG_CELL) {
            self.pos += 1;
            let (cell, c) = self.cell()?;
            let value = cell.value.ok_or(DecodeError::Tag {
                expected: TAG_CELL_VALUE,
                found: TAG_CELL_CHECKSUM,
                at: self.pos,
            })?;
            row.primary_key.push((cell.name, value));
            row_crc = crc(row_crc, &[c]);
        }
        if self.peek() == Some(TAG_ROW_DATA) {
            self.pos += 1;
            while self.peek() == Some(TAG_CELL) {
                self.pos += 1;
                let (cell, c) = self.cell()?;
                row.attributes.push(cell);
                row_crc = crc(row_crc, &[c]);
            }
        }
        if self.peek() == Some(TAG_DELETE_ROW_MARKER) {
            self.pos += 1;
            row.delete_marker = true;
        }
        row_crc = crc(row_crc, &[row.delete_marker as u8]);
        self.expect(TAG_ROW_CHECKSUM)?;
        let found = self.byte()?;
        if found != row_crc {
            return Err(DecodeError::Checksum {
                what: "row",
                found,
                computed: row_crc,
            });
        }
        Ok(row)
    }
}

/// Every row of a buffer (header, then rows to the end), checksums verified.
pub fn decode_rows(buf: &[u8]) -> Result<Vec<Row>, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let header = r.u32()?;
    if header != HEADER {
        return Err(DecodeError::Header(header));
    }
    let mut rows = Vec::new();
    while r.pos < buf.len() {
        rows.push(r.row()?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc8_is_polynomial_0x07() {
        // The table the official SDKs carry starts 0x00, 0x07, 0x0e, 0x09 and ends 0xf3.
        assert_eq!(&CRC8[..4], &[0x00, 0x07, 0x0e, 0x09]);
        assert_eq!(CRC8[255], 0xf3);
        // CRC-8/SMBUS check value.
        assert_eq!(crc(0, b"123456789"), 0xf4);
    }

    #[test]
    fn rows_round_trip_and_a_flipped_byte_is_caught() {
        let pk = [("id", &Cell::Int(-7)), ("k", &Cell::Str("é".into()))];
        let d = Cell::Double(1.5);
        let b = Cell::Bool(true);
        let blob = Cell::Blob(vec![0, 1, 2]);
        let attrs = [
            ("d", Some(&d)),
            ("b", Some(&b)),
            ("x", Some(&blob)),
            ("gone", None),
        ];
        let buf = encode_row(&pk, &attrs);
        let rows = decode_rows(&buf).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].primary_key[1],
            ("k".to_string(), Cell::Str("é".into()))
        );
        assert_eq!(rows[0].attributes[0].value, Some(Cell::Double(1.5)));
        assert_eq!(rows[0].attributes[3].op, Some(DELETE_ALL_VERSION));
        assert!(!rows[0].delete_marker);
        for i in 4..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(
                decode_rows(&bad).is_err() || decode_rows(&bad).unwrap() != rows,
                "{i}"
            );
        }
        assert_eq!(
            decode_rows(&buf[..buf.len() - 1]),
            Err(DecodeError::Truncated(buf.len() - 1))
        );
    }
}
