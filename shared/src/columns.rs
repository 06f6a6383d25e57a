//! A column read as one Arrow type (`i64`, `f64` or text), for the types the
//! stages meet, without `arrow::compute::cast`.
//!
//! `cast` takes the target type at run time, so a call to it links code for
//! every pair of Arrow types: about a megabyte of each zipped stage that
//! used it. These functions cover what curate and profile read (the types a
//! contract maps to, their narrower and unsigned relatives, and dictionaries
//! of them) with the values `cast` gives (its default, "safe" options: a value
//! that does not fit becomes null), and name the type they cannot read.

use arrow::array::{
    Array, AsArray, Float64Array, Int64Array, PrimitiveArray, StringArray, StringBuilder,
};
use arrow::compute::kernels::cast::single_decimal_to_float_lossy;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, Decimal128Type, Decimal256Type,
    Decimal32Type, Decimal64Type, DurationMicrosecondType, DurationMillisecondType,
    DurationNanosecondType, DurationSecondType, Float16Type, Float32Type, Float64Type, Int16Type,
    Int32Type, Int64Type, Int8Type, Time32MillisecondType, Time32SecondType, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow::error::ArrowError;
use num_traits::ToPrimitive;

fn unsupported(array: &dyn Array, to: &str) -> ArrowError {
    ArrowError::CastError(format!(
        "cannot read a {} column as {to}",
        array.data_type()
    ))
}

/// `f` applied to each value of a primitive column, nulls kept.
fn map<T: ArrowPrimitiveType, O: ArrowPrimitiveType>(
    array: &dyn Array,
    f: impl Fn(T::Native) -> O::Native,
) -> PrimitiveArray<O> {
    array.as_primitive::<T>().unary::<_, O>(f)
}

/// `f` applied to each value; `None` (a value that does not fit) is null.
fn map_opt<T: ArrowPrimitiveType, O: ArrowPrimitiveType>(
    array: &dyn Array,
    f: impl Fn(T::Native) -> Option<O::Native>,
) -> PrimitiveArray<O> {
    array
        .as_primitive::<T>()
        .iter()
        .map(|v| v.and_then(&f))
        .collect()
}

/// A dictionary column's values, converted by `convert` and looked up by key.
fn through_dictionary<A: Array + 'static>(
    array: &dyn Array,
    convert: impl Fn(&dyn Array) -> Result<A, ArrowError>,
    gather: impl Fn(&A, &[Option<usize>]) -> A,
) -> Option<Result<A, ArrowError>> {
    let dict = array.as_any_dictionary_opt()?;
    let values = match convert(dict.values().as_ref()) {
        Ok(v) => v,
        Err(e) => return Some(Err(e)),
    };
    let keys = dict.keys();
    let at: Vec<Option<usize>> = dict
        .normalized_keys()
        .into_iter()
        .enumerate()
        .map(|(i, k)| keys.is_valid(i).then_some(k))
        .collect();
    Some(Ok(gather(&values, &at)))
}

fn gather_primitive<T: ArrowPrimitiveType>(
    values: &PrimitiveArray<T>,
    at: &[Option<usize>],
) -> PrimitiveArray<T> {
    at.iter()
        .map(|k| k.and_then(|k| values.is_valid(k).then(|| values.value(k))))
        .collect()
}

/// Integers, timestamps, dates, times and durations as `i64`: a temporal
/// value as its count of its own unit (days for `Date32`), a `u64` above
/// `i64::MAX` as null.
pub fn to_i64(array: &dyn Array) -> Result<Int64Array, ArrowError> {
    use DataType as D;
    Ok(match array.data_type() {
        D::Int64 => array.as_primitive::<Int64Type>().clone(),
        D::Int8 => map::<Int8Type, Int64Type>(array, i64::from),
        D::Int16 => map::<Int16Type, Int64Type>(array, i64::from),
        D::Int32 => map::<Int32Type, Int64Type>(array, i64::from),
        D::UInt8 => map::<UInt8Type, Int64Type>(array, i64::from),
        D::UInt16 => map::<UInt16Type, Int64Type>(array, i64::from),
        D::UInt32 => map::<UInt32Type, Int64Type>(array, i64::from),
        D::UInt64 => map_opt::<UInt64Type, Int64Type>(array, |v| i64::try_from(v).ok()),
        D::Date32 => map::<Date32Type, Int64Type>(array, i64::from),
        D::Date64 => map::<Date64Type, Int64Type>(array, |v| v),
        D::Time32(TimeUnit::Second) => map::<Time32SecondType, Int64Type>(array, i64::from),
        D::Time32(_) => map::<Time32MillisecondType, Int64Type>(array, i64::from),
        D::Time64(TimeUnit::Microsecond) => map::<Time64MicrosecondType, Int64Type>(array, |v| v),
        D::Time64(_) => map::<Time64NanosecondType, Int64Type>(array, |v| v),
        D::Timestamp(unit, _) => match unit {
            TimeUnit::Second => map::<TimestampSecondType, Int64Type>(array, |v| v),
            TimeUnit::Millisecond => map::<TimestampMillisecondType, Int64Type>(array, |v| v),
            TimeUnit::Microsecond => map::<TimestampMicrosecondType, Int64Type>(array, |v| v),
            TimeUnit::Nanosecond => map::<TimestampNanosecondType, Int64Type>(array, |v| v),
        },
        D::Duration(unit) => match unit {
            TimeUnit::Second => map::<DurationSecondType, Int64Type>(array, |v| v),
            TimeUnit::Millisecond => map::<DurationMillisecondType, Int64Type>(array, |v| v),
            TimeUnit::Microsecond => map::<DurationMicrosecondType, Int64Type>(array, |v| v),
            TimeUnit::Nanosecond => map::<DurationNanosecondType, Int64Type>(array, |v| v),
        },
        D::Null => Int64Array::new_null(array.len()),
        D::Dictionary(_, _) => {
            return through_dictionary(array, to_i64, gather_primitive)
                .unwrap_or_else(|| Err(unsupported(array, "int64")))
        }
        _ => return Err(unsupported(array, "int64")),
    })
}

/// Numbers as `f64`: integers and floats converted, decimals divided by
/// 10^scale (rounded once, as `cast` does).
pub fn to_f64(array: &dyn Array) -> Result<Float64Array, ArrowError> {
    use DataType as D;
    Ok(match array.data_type() {
        D::Float64 => array.as_primitive::<Float64Type>().clone(),
        D::Float32 => map::<Float32Type, Float64Type>(array, f64::from),
        D::Float16 => map::<Float16Type, Float64Type>(array, |v| v.to_f64()),
        D::Int8 => map::<Int8Type, Float64Type>(array, f64::from),
        D::Int16 => map::<Int16Type, Float64Type>(array, f64::from),
        D::Int32 => map::<Int32Type, Float64Type>(array, f64::from),
        D::Int64 => map::<Int64Type, Float64Type>(array, |v| v as f64),
        D::UInt8 => map::<UInt8Type, Float64Type>(array, f64::from),
        D::UInt16 => map::<UInt16Type, Float64Type>(array, f64::from),
        D::UInt32 => map::<UInt32Type, Float64Type>(array, f64::from),
        D::UInt64 => map::<UInt64Type, Float64Type>(array, |v| v as f64),
        D::Decimal32(_, scale) => {
            let s = i32::from(*scale);
            map::<Decimal32Type, Float64Type>(array, |x| {
                single_decimal_to_float_lossy::<Decimal32Type, _>(&|x: i32| f64::from(x), x, s)
            })
        }
        D::Decimal64(_, scale) => {
            let s = i32::from(*scale);
            map::<Decimal64Type, Float64Type>(array, |x| {
                single_decimal_to_float_lossy::<Decimal64Type, _>(&|x: i64| x as f64, x, s)
            })
        }
        D::Decimal128(_, scale) => {
            let s = i32::from(*scale);
            map::<Decimal128Type, Float64Type>(array, |x| {
                single_decimal_to_float_lossy::<Decimal128Type, _>(&|x: i128| x as f64, x, s)
            })
        }
        D::Decimal256(_, scale) => {
            let s = i32::from(*scale);
            map::<Decimal256Type, Float64Type>(array, |x| {
                single_decimal_to_float_lossy::<Decimal256Type, _>(
                    &|x: arrow::datatypes::i256| x.to_f64().unwrap_or(f64::NAN),
                    x,
                    s,
                )
            })
        }
        D::Null => Float64Array::new_null(array.len()),
        D::Dictionary(_, _) => {
            return through_dictionary(array, to_f64, gather_primitive)
                .unwrap_or_else(|| Err(unsupported(array, "float64")))
        }
        _ => return Err(unsupported(array, "float64")),
    })
}

fn gather_text(values: &StringArray, at: &[Option<usize>]) -> StringArray {
    at.iter()
        .map(|k| k.and_then(|k| values.is_valid(k).then(|| values.value(k))))
        .collect()
}

/// Text columns (`Utf8`, `LargeUtf8`, `Utf8View`, and dictionaries of them)
/// as `Utf8`, and integers as their decimal digits.
pub fn to_utf8(array: &dyn Array) -> Result<StringArray, ArrowError> {
    use DataType as D;
    fn digits(ints: &Int64Array) -> StringArray {
        let mut out = StringBuilder::with_capacity(ints.len(), ints.len() * 8);
        for v in ints.iter() {
            out.append_option(v.map(|v| v.to_string()));
        }
        out.finish()
    }
    Ok(match array.data_type() {
        D::Utf8 => array.as_string::<i32>().clone(),
        D::LargeUtf8 => array.as_string::<i64>().iter().collect(),
        D::Utf8View => array.as_string_view().iter().collect(),
        D::Null => StringArray::new_null(array.len()),
        D::Dictionary(_, _) => {
            return through_dictionary(array, to_utf8, gather_text)
                .unwrap_or_else(|| Err(unsupported(array, "text")))
        }
        D::UInt64 => array
            .as_primitive::<UInt64Type>()
            .iter()
            .map(|v| v.map(|v| v.to_string()))
            .collect(),
        t if t.is_integer() => digits(&to_i64(array)?),
        _ => return Err(unsupported(array, "text")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::ArrayRef;
    use arrow::array::{
        Date32Array, Decimal128Array, DictionaryArray, Float32Array, Int32Array, Int8Array,
        LargeStringArray, TimestampMillisecondArray, UInt64Array,
    };
    use arrow::compute::cast;
    use arrow::datatypes::Int32Type as K;
    use std::sync::Arc;

    /// Every conversion gives what `cast` gives (the reference; this test
    /// is the only place that still calls it).
    fn same_as_cast(a: ArrayRef) {
        let t = a.data_type().clone();
        let i = to_i64(a.as_ref());
        if let Ok(i) = &i {
            let c = cast(&a, &DataType::Int64).unwrap();
            assert_eq!(i, c.as_primitive::<Int64Type>(), "{t} as int64");
        }
        if let Ok(f) = to_f64(a.as_ref()) {
            let c = cast(&a, &DataType::Float64).unwrap();
            let c = c.as_primitive::<Float64Type>();
            assert_eq!(f.len(), c.len());
            for r in 0..f.len() {
                assert_eq!(f.is_valid(r), c.is_valid(r), "{t} as float64, row {r}");
                if c.is_valid(r) {
                    assert_eq!(f.value(r).to_bits(), c.value(r).to_bits(), "{t}, row {r}");
                }
            }
        }
        if let Ok(s) = to_utf8(a.as_ref()) {
            let c = cast(&a, &DataType::Utf8).unwrap();
            assert_eq!(&s, c.as_string::<i32>(), "{t} as text");
        }
    }

    #[test]
    fn conversions_agree_with_cast() {
        let cases: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![Some(1), None, Some(i64::MIN)])),
            Arc::new(Int32Array::from(vec![Some(-7), None, Some(i32::MAX)])),
            Arc::new(Int8Array::from(vec![Some(-1), Some(2)])),
            Arc::new(UInt64Array::from(vec![Some(u64::MAX), Some(3), None])),
            Arc::new(Float32Array::from(vec![Some(0.1), None, Some(-2.5)])),
            Arc::new(Float64Array::from(vec![Some(0.1), None, Some(f64::MAX)])),
            Arc::new(
                Decimal128Array::from(vec![Some(1234), None, Some(-5), Some(i128::MAX)])
                    .with_precision_and_scale(38, 2)
                    .unwrap(),
            ),
            Arc::new(
                Decimal128Array::from(vec![Some(1), Some(-99_999)])
                    .with_precision_and_scale(10, 0)
                    .unwrap(),
            ),
            Arc::new(Date32Array::from(vec![Some(19_000), None])),
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(1_700_000_000_000),
                None,
            ])),
            Arc::new(StringArray::from(vec![Some("a"), None, Some("ü")])),
            Arc::new(LargeStringArray::from(vec![Some("x"), None])),
            Arc::new(
                vec![Some("b"), None, Some("a"), Some("b")]
                    .into_iter()
                    .collect::<DictionaryArray<K>>(),
            ),
            Arc::new(DictionaryArray::<K>::new(
                Int32Array::from(vec![Some(1), None, Some(0)]),
                Arc::new(Int64Array::from(vec![Some(10), None])),
            )),
        ];
        for a in cases {
            same_as_cast(a);
        }
    }

    #[test]
    fn a_type_it_cannot_read_is_named() {
        let b: ArrayRef = Arc::new(arrow::array::BooleanArray::from(vec![true]));
        let e = to_i64(b.as_ref()).unwrap_err().to_string();
        assert!(e.contains("Boolean") && e.contains("int64"), "{e}");
        let s: ArrayRef = Arc::new(StringArray::from(vec!["1"]));
        assert!(to_f64(s.as_ref()).is_err());
        let f: ArrayRef = Arc::new(Float64Array::from(vec![1.5]));
        assert!(to_utf8(f.as_ref())
            .unwrap_err()
            .to_string()
            .contains("text"));
    }
}
