//! Column buffers for validated rows: plain typed vectors, turned into Arrow
//! arrays without copying at the end of a batch.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use arrow::buffer::{BooleanBuffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use sluice::contract::{FieldType, Value};

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

    /// A Utf8 column (record ids, lineage).
    pub fn utf8(capacity: usize) -> Self {
        Column::new(&FieldType::String, false, capacity)
    }

    /// A non-null Int64 column.
    pub fn int(capacity: usize) -> Self {
        Column::new(&FieldType::Int, false, capacity)
    }

    /// Append a parsed value (already checked against the field's type).
    pub fn push(&mut self, v: &Value) {
        let valid = !matches!(v, Value::Null);
        match (&mut self.values, v) {
            (Values::Int(c), Value::Int(x)) => c.push(*x),
            (Values::Float(c), Value::Float(x)) => c.push(*x),
            (Values::Bool(c), Value::Bool(x)) => c.push(*x),
            (Values::Ts(c), Value::Timestamp(x)) => c.push(*x),
            (Values::Date(c), Value::Date(x)) => c.push(*x),
            (Values::Dec(c, _, _), Value::Decimal(x)) => c.push(*x),
            (Values::Str(off, data), Value::Str(s)) => {
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
        }
        self.valid.push(valid);
    }

    /// Append a 128-bit id as 32 lower-case hex digits (for Utf8 columns),
    /// without going through `fmt`.
    pub fn push_hex128(&mut self, id: u128) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        if let Values::Str(off, data) = &mut self.values {
            let mut digits = [0u8; 32];
            for (i, d) in digits.iter_mut().enumerate() {
                *d = HEX[((id >> (124 - 4 * i)) & 0xf) as usize];
            }
            data.extend_from_slice(&digits);
            off.push(data.len() as i32);
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
    fn hex_ids_match_the_formatter() {
        let ids = [
            0u128,
            1,
            0xdead_beef,
            u128::MAX,
            0x0123_4567_89ab_cdef_0fed_cba9_8765_4321,
        ];
        let mut col = Column::utf8(4);
        for id in ids {
            col.push_hex128(id);
        }
        let arr = col.take_array();
        let arr = arr.as_any().downcast_ref::<StringArray>().unwrap();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(arr.value(i), format!("{id:032x}"));
        }
    }
}
