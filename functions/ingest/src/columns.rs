//! Column buffers for validated rows: plain typed vectors, turned into Arrow
//! arrays without copying at the end of a batch.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, FixedSizeBinaryArray, Float64Array,
    Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::buffer::{BooleanBuffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use sluice::contract::{FieldType, ValueRef};

/// The values of one column for the rows of a batch.
#[derive(Debug)]
pub enum Values {
    /// Int64.
    Int(Vec<i64>),
    /// Float64.
    Float(Vec<f64>),
    /// Boolean.
    Bool(Vec<bool>),
    /// Timestamp (µs).
    Ts(Vec<i64>),
    /// Date32.
    Date(Vec<i32>),
    /// Decimal128 with precision and scale.
    Dec(Vec<i128>, u8, i8),
    /// Utf8: end offsets and bytes.
    Str(Vec<i32>, Vec<u8>),
    /// FixedSizeBinary(16): 128-bit ids, big-endian.
    Id(Vec<u8>),
}

/// One column: values plus validity.
#[derive(Debug)]
pub struct Column {
    values: Values,
    valid: Vec<bool>,
    nullable: bool,
}

impl Column {
    /// An empty column for a contract type.
    pub fn new(ty: &FieldType, nullable: bool, capacity: usize) -> Self {
        let values = match ty {
            FieldType::String => Values::Str(
                Vec::with_capacity(capacity),
                Vec::with_capacity(capacity * 4),
            ),
            FieldType::Int => Values::Int(Vec::with_capacity(capacity)),
            FieldType::Float => Values::Float(Vec::with_capacity(capacity)),
            FieldType::Bool => Values::Bool(Vec::with_capacity(capacity)),
            FieldType::Timestamp { .. } => Values::Ts(Vec::with_capacity(capacity)),
            FieldType::Date { .. } => Values::Date(Vec::with_capacity(capacity)),
            FieldType::Decimal { precision, scale } => {
                Values::Dec(Vec::with_capacity(capacity), *precision, *scale)
            }
        };
        Column {
            values,
            valid: Vec::with_capacity(capacity),
            nullable,
        }
    }

    /// A non-null FixedSizeBinary(16) column of 128-bit ids.
    pub fn id(capacity: usize) -> Self {
        Column {
            values: Values::Id(Vec::with_capacity(capacity * 16)),
            valid: Vec::with_capacity(capacity),
            nullable: false,
        }
    }

    /// A non-null Int64 column.
    pub fn int(capacity: usize) -> Self {
        Column::new(&FieldType::Int, false, capacity)
    }

    /// Append a parsed value (already checked against the field's type).
    pub fn push(&mut self, v: ValueRef<'_>) {
        let valid = !matches!(v, ValueRef::Null);
        match (&mut self.values, v) {
            (Values::Int(c), ValueRef::Int(x)) => c.push(x),
            (Values::Float(c), ValueRef::Float(x)) => c.push(x),
            (Values::Bool(c), ValueRef::Bool(x)) => c.push(x),
            (Values::Ts(c), ValueRef::Timestamp(x)) => c.push(x),
            (Values::Date(c), ValueRef::Date(x)) => c.push(x),
            (Values::Dec(c, _, _), ValueRef::Decimal(x)) => c.push(x),
            (Values::Str(off, data), ValueRef::Str(s)) => {
                data.extend_from_slice(s.as_bytes());
                off.push(data.len() as i32);
            }
            // Null (or, defensively, a mismatched type): a default slot.
            (Values::Int(c), _) | (Values::Ts(c), _) => c.push(0),
            (Values::Float(c), _) => c.push(0.0),
            (Values::Bool(c), _) => c.push(false),
            (Values::Date(c), _) => c.push(0),
            (Values::Dec(c, _, _), _) => c.push(0),
            (Values::Str(off, data), _) => off.push(data.len() as i32),
            (Values::Id(c), _) => c.extend_from_slice(&[0; 16]),
        }
        self.valid.push(valid);
    }

    /// Append a 128-bit id as 16 big-endian bytes (for id columns): the
    /// bytes read in order are the id's 32 hex digits.
    pub fn push_id(&mut self, id: u128) {
        if let Values::Id(c) = &mut self.values {
            c.extend_from_slice(&id.to_be_bytes());
            self.valid.push(true);
        }
    }

    /// Append an integer (for Int64 columns).
    pub fn push_int(&mut self, x: i64) {
        if let Values::Int(c) = &mut self.values {
            c.push(x);
            self.valid.push(true);
        }
    }

    /// Take the rows as an Arrow array, leaving the column empty.
    pub fn take_array(&mut self) -> ArrayRef {
        let valid = std::mem::take(&mut self.valid);
        let nulls = if self.nullable && valid.iter().any(|v| !v) {
            Some(NullBuffer::new(BooleanBuffer::from(valid)))
        } else {
            None
        };
        match &mut self.values {
            Values::Int(c) => Arc::new(Int64Array::new(
                ScalarBuffer::from(std::mem::take(c)),
                nulls,
            )),
            Values::Float(c) => Arc::new(Float64Array::new(
                ScalarBuffer::from(std::mem::take(c)),
                nulls,
            )),
            Values::Bool(c) => Arc::new(BooleanArray::new(
                BooleanBuffer::from(std::mem::take(c)),
                nulls,
            )),
            Values::Ts(c) => Arc::new(
                TimestampMicrosecondArray::new(ScalarBuffer::from(std::mem::take(c)), nulls)
                    .with_timezone("+00:00"),
            ),
            Values::Date(c) => Arc::new(Date32Array::new(
                ScalarBuffer::from(std::mem::take(c)),
                nulls,
            )),
            Values::Dec(c, p, s) => Arc::new(
                Decimal128Array::new(ScalarBuffer::from(std::mem::take(c)), nulls)
                    .with_precision_and_scale(*p, *s)
                    .unwrap_or_else(|_| Decimal128Array::from(Vec::<i128>::new())),
            ),
            Values::Id(c) => {
                let data = std::mem::take(c);
                match FixedSizeBinaryArray::try_new(16, data.into(), nulls) {
                    Ok(a) => Arc::new(a),
                    Err(_) => Arc::new(FixedSizeBinaryArray::new_null(16, 0)),
                }
            }
            Values::Str(off, data) => {
                let mut offsets = Vec::with_capacity(off.len() + 1);
                offsets.push(0i32);
                offsets.append(off);
                let data = std::mem::take(data);
                // Every value was pushed from a &str, so the bytes are valid UTF-8
                // and the offsets monotonic; the checked constructor re-verifies.
                match StringArray::try_new(
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    data.into(),
                    nulls,
                ) {
                    Ok(a) => Arc::new(a),
                    Err(_) => Arc::new(StringArray::from(Vec::<String>::new())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    #[test]
    fn ids_are_their_hex_digits_in_order() {
        let ids = [
            0u128,
            1,
            0xdead_beef,
            u128::MAX,
            0x0123_4567_89ab_cdef_0fed_cba9_8765_4321, // pragma: allowlist secret
        ];
        let mut col = Column::id(4);
        for id in ids {
            col.push_id(id);
        }
        let arr = col.take_array();
        let arr = arr.as_any().downcast_ref::<FixedSizeBinaryArray>().unwrap();
        assert_eq!(arr.len(), ids.len());
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(hex::encode(arr.value(i)), format!("{id:032x}"));
        }
    }
}
