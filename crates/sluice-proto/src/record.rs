//! The protocol-neutral record: what every codec (JSON, protobuf, batch) converts to and from,
//! owned ([`Record`]) or borrowed from a stored batch ([`RecordRef`]).

use crate::value::{Value, ValueRef};

/// The payload of a record: a row of typed values (TUPLE topics) or opaque bytes (BLOB topics).
#[derive(Debug, Clone, PartialEq)]
pub enum RecordData {
    Tuple(Vec<Value>),
    Blob(Vec<u8>),
}

/// One record with its user attributes (order kept as received).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub data: RecordData,
    pub attributes: Vec<(String, String)>,
}

/// A record's payload, borrowed: values that borrow their text (`'a`) in a slice (`'r`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DataRef<'r, 'a> {
    Tuple(&'r [ValueRef<'a>]),
    Blob(&'a [u8]),
}

/// A record borrowed from a stored batch ([`crate::batch::visit_records`]) or from a
/// [`Record`] ([`Record::parts`]), with the schema version it was written under.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordRef<'r, 'a> {
    pub schema_version: i32,
    pub data: DataRef<'r, 'a>,
    pub attributes: &'r [(&'a str, &'a str)],
}

/// What a [`RecordRef`] of an owned [`Record`] points into (see [`Record::parts`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordParts<'a> {
    values: Vec<ValueRef<'a>>,
    blob: Option<&'a [u8]>,
    attributes: Vec<(&'a str, &'a str)>,
}

impl<'a> RecordParts<'a> {
    /// The record as a [`RecordRef`] of `schema_version`.
    pub fn as_record_ref(&self, schema_version: i32) -> RecordRef<'_, 'a> {
        RecordRef {
            schema_version,
            data: match self.blob {
                Some(b) => DataRef::Blob(b),
                None => DataRef::Tuple(&self.values),
            },
            attributes: &self.attributes,
        }
    }
}

impl Record {
    /// The borrowed form's parts (allocates two small vectors: for tests and rare paths).
    pub fn parts(&self) -> RecordParts<'_> {
        let (values, blob) = match &self.data {
            RecordData::Tuple(values) => (values.iter().map(Value::as_value_ref).collect(), None),
            RecordData::Blob(b) => (Vec::new(), Some(&b[..])),
        };
        RecordParts {
            values,
            blob,
            attributes: self
                .attributes
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        }
    }

    /// Makes this record equal to `r` (its values and attributes; the schema version is not
    /// part of a [`Record`]), reusing this record's allocations: the values vector, the text of
    /// each value that stays text, the attribute strings. A reader that refills the records it
    /// delivered last time allocates nothing in the steady state.
    pub fn assign_from(&mut self, r: &RecordRef<'_, '_>) {
        match (&mut self.data, r.data) {
            (RecordData::Tuple(values), DataRef::Tuple(refs)) => {
                values.truncate(refs.len());
                for (value, v) in values.iter_mut().zip(refs) {
                    value.assign(*v);
                }
                let have = values.len();
                values.extend(refs[have..].iter().map(|v| v.to_value()));
            }
            (RecordData::Blob(bytes), DataRef::Blob(b)) => {
                bytes.clear();
                bytes.extend_from_slice(b);
            }
            (data, DataRef::Tuple(refs)) => {
                *data = RecordData::Tuple(refs.iter().map(|v| v.to_value()).collect())
            }
            (data, DataRef::Blob(b)) => *data = RecordData::Blob(b.to_vec()),
        }
        let attributes = &mut self.attributes;
        attributes.truncate(r.attributes.len());
        for ((key, value), (k, v)) in attributes.iter_mut().zip(r.attributes) {
            key.clear();
            key.push_str(k);
            value.clear();
            value.push_str(v);
        }
        let have = attributes.len();
        attributes.extend(
            r.attributes[have..]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
    }

    /// A new record equal to `r`.
    pub fn from_ref(r: &RecordRef<'_, '_>) -> Record {
        let mut record = Record {
            data: RecordData::Tuple(Vec::new()),
            attributes: Vec::new(),
        };
        record.assign_from(r);
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(values: Vec<Value>, attributes: &[(&str, &str)]) -> Record {
        Record {
            data: RecordData::Tuple(values),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn assign_from_makes_any_record_equal_to_the_view() {
        let records = [
            tuple(
                vec![Value::Str("a long text".into()), Value::Int(3), Value::Null],
                &[("k", "v")],
            ),
            tuple(
                vec![Value::Decimal("1.5".into()), Value::Str("x".into())],
                &[],
            ),
            tuple(vec![], &[("a", "1"), ("b", "2"), ("c", "3")]),
            Record {
                data: RecordData::Blob(vec![1, 2, 3]),
                attributes: vec![],
            },
            Record {
                data: RecordData::Blob(vec![]),
                attributes: vec![("x".into(), "y".into())],
            },
        ];
        for target in &records {
            let parts = target.parts();
            assert_eq!(Record::from_ref(&parts.as_record_ref(0)), *target);
            for start in &records {
                let mut r = start.clone();
                r.assign_from(&parts.as_record_ref(0));
                assert_eq!(r, *target, "from {start:?}");
            }
        }
    }

    #[test]
    fn assign_from_keeps_text_allocations() {
        let mut r = tuple(
            vec![Value::Str(String::with_capacity(64)), Value::Int(1)],
            &[("key", "value")],
        );
        let text_ptr = |r: &Record| match &r.data {
            RecordData::Tuple(v) => match &v[0] {
                Value::Str(s) => s.as_ptr(),
                other => panic!("{other:?}"),
            },
            RecordData::Blob(_) => panic!("blob"),
        };
        let before = (text_ptr(&r), r.attributes[0].0.as_ptr());
        let target = tuple(
            vec![Value::Str("new text".into()), Value::Int(2)],
            &[("k2", "v2")],
        );
        r.assign_from(&target.parts().as_record_ref(0));
        assert_eq!(r, target);
        assert_eq!((text_ptr(&r), r.attributes[0].0.as_ptr()), before);
    }
}
