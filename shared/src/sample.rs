//! Sample data: a deterministic generator of NYC-yellow-taxi-style trip
//! records that match `contracts/trips.toml`, for demos, tests and
//! benchmarks.
//!
//! [`write_trips`] writes CSV or JSON Lines. The same [`TripsOptions`] always
//! give byte-identical output (a seeded [`StdRng`], no clock). The values are
//! plausible rather than uniform: pickups follow a daily and weekly cycle,
//! distances are log-normal with an airport tail, durations follow an urban
//! speed, fares follow the meter, tips depend on the payment type and the
//! sparse nulls come together in the same rows, as in real TLC files.
//!
//! On request, a share of rows carries exactly one defect ([`BadKind`]) that
//! makes the row fail the contract, and a share of good rows repeats an
//! earlier good row exactly. [`GenStats`] counts both, so tests and
//! benchmarks know what a correct pipeline must quarantine and deduplicate.

use std::collections::BTreeMap;
use std::io::{self, Write};

use chrono::{Datelike, Days, Weekday};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Re-exported so callers (the CLI) can name the type of
/// [`TripsOptions::start`] without depending on `chrono` themselves.
pub use chrono::NaiveDate;

/// The 19 columns of the trips contract, in contract order.
pub const TRIPS_COLUMNS: [&str; 19] = [
    "VendorID",
    "tpep_pickup_datetime",
    "tpep_dropoff_datetime",
    "passenger_count",
    "trip_distance",
    "RatecodeID",
    "store_and_fwd_flag",
    "PULocationID",
    "DOLocationID",
    "payment_type",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    "total_amount",
    "congestion_surcharge",
    "Airport_fee",
];

/// Output format of [`write_trips`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Comma-separated values: a header line, then one line per row, `\n`
    /// line endings, fields quoted only when needed, empty fields for nulls.
    #[default]
    Csv,
    /// JSON Lines: one object per line with the 19 keys; numbers as JSON
    /// numbers, timestamps and flags as strings, nulls as `null`.
    Jsonl,
}

/// What [`write_trips`] generates.
#[derive(Debug, Clone, PartialEq)]
pub struct TripsOptions {
    /// Data rows to write (the CSV header is extra).
    pub rows: u64,
    /// Seed of the random generator: same options, same bytes.
    pub seed: u64,
    /// Probability (0..=1) that a row carries exactly one defect.
    pub bad_ratio: f64,
    /// CSV or JSON Lines.
    pub format: Format,
    /// The first pickup day (default 2024-01-01).
    pub start: NaiveDate,
    /// Pickups are spread over this many days from `start` (default 31).
    pub days: u32,
    /// Probability (0..=1) that a good row repeats a recent good row exactly
    /// (same natural key, same values). Default 0.
    pub duplicate_ratio: f64,
}

impl TripsOptions {
    /// Check the options: ratios within 0..=1, `days` at least 1, and
    /// pickups within the contract's range (2000-01-01 to 2035-12-31).
    /// [`write_trips`] checks them too; the error kind is
    /// [`io::ErrorKind::InvalidInput`].
    pub fn validate(&self) -> io::Result<()> {
        for (name, r) in [
            ("bad_ratio", self.bad_ratio),
            ("duplicate_ratio", self.duplicate_ratio),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(invalid(format!("{name} {r} is not within 0..=1")));
            }
        }
        if self.days == 0 {
            return Err(invalid("days must be at least 1".into()));
        }
        let first = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default();
        let last_allowed = NaiveDate::from_ymd_opt(2035, 12, 31).unwrap_or_default();
        let last = self
            .start
            .checked_add_days(Days::new(u64::from(self.days) - 1));
        if self.start < first || last.is_none_or(|d| d > last_allowed) {
            return Err(invalid(format!(
                "pickups from {} over {} days fall outside the contract's range {first} to {last_allowed}",
                self.start, self.days
            )));
        }
        Ok(())
    }
}

impl Default for TripsOptions {
    fn default() -> Self {
        TripsOptions {
            rows: 1000,
            seed: 42,
            bad_ratio: 0.0,
            format: Format::Csv,
            start: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default(),
            days: 31,
            duplicate_ratio: 0.0,
        }
    }
}

/// The defect a bad row carries. Each one makes the row invalid against the
/// trips contract in exactly one way.
///
/// In JSON Lines the equivalents are: `MissingField` omits a non-nullable
/// key; `ExtraField` (an extra key is not a defect in JSON) writes a
/// truncated line, with an extra key and no closing brace, which is not valid
/// JSON; `UnparseableNumber`, `MalformedTimestamp` and
/// `QuotedDelimiterInNumber` give the value as a JSON string; `InvalidUtf8`
/// puts the raw bytes inside a JSON string, so the line is not valid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BadKind {
    /// A numeric field holds text such as `abc` or `1..2`.
    UnparseableNumber,
    /// The row has one field fewer than the header (CSV), or lacks a
    /// non-nullable key (JSON).
    MissingField,
    /// The row has one field more than the header (CSV), or is truncated
    /// JSON (see the type's documentation).
    ExtraField,
    /// `fare_amount` is negative.
    NegativeFare,
    /// `tpep_dropoff_datetime` is before `tpep_pickup_datetime`.
    DropoffBeforePickup,
    /// A timestamp is not a valid `%Y-%m-%d %H:%M:%S`, e.g.
    /// `2024-13-45 25:61:00` or `01/15/2024 10:00`.
    MalformedTimestamp,
    /// `PULocationID` or `DOLocationID` is 0 or above 265.
    OutOfRangeId,
    /// A value outside its allowed set: `payment_type` 9,
    /// `store_and_fwd_flag` `X`, `VendorID` 3 or `RatecodeID` 7.
    InvalidEnum,
    /// The bytes 0xFF 0xFE inside `store_and_fwd_flag` or a numeric field.
    InvalidUtf8,
    /// A quoted numeric field containing a comma and/or a newline, e.g.
    /// `"1,5"` or `"12\n.50"`: the CSV stays well-formed but the value is
    /// invalid.
    QuotedDelimiterInNumber,
}

impl BadKind {
    /// Every kind, in declaration order.
    pub const ALL: [BadKind; 10] = [
        BadKind::UnparseableNumber,
        BadKind::MissingField,
        BadKind::ExtraField,
        BadKind::NegativeFare,
        BadKind::DropoffBeforePickup,
        BadKind::MalformedTimestamp,
        BadKind::OutOfRangeId,
        BadKind::InvalidEnum,
        BadKind::InvalidUtf8,
        BadKind::QuotedDelimiterInNumber,
    ];

    /// A stable snake_case name, for summaries and metrics.
    pub fn name(self) -> &'static str {
        match self {
            BadKind::UnparseableNumber => "unparseable_number",
            BadKind::MissingField => "missing_field",
            BadKind::ExtraField => "extra_field",
            BadKind::NegativeFare => "negative_fare",
            BadKind::DropoffBeforePickup => "dropoff_before_pickup",
            BadKind::MalformedTimestamp => "malformed_timestamp",
            BadKind::OutOfRangeId => "out_of_range_id",
            BadKind::InvalidEnum => "invalid_enum",
            BadKind::InvalidUtf8 => "invalid_utf8",
            BadKind::QuotedDelimiterInNumber => "quoted_delimiter_in_number",
        }
    }
}

impl std::fmt::Display for BadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What [`write_trips`] wrote.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GenStats {
    /// Data rows written, excluding the header.
    pub rows: u64,
    /// Rows that satisfy the contract (duplicates included).
    pub good: u64,
    /// Rows with a defect.
    pub bad: u64,
    /// Good rows that repeat an earlier good row exactly.
    pub duplicates: u64,
    /// Bad rows by defect.
    pub bad_by_kind: BTreeMap<BadKind, u64>,
    /// Uncompressed bytes written, header included.
    pub bytes: u64,
}

/// How often `progress` is called, in rows.
const PROGRESS_EVERY: u64 = 65_536;
/// Output is handed to the writer in chunks of about this size.
const CHUNK: usize = 128 * 1024;
/// How many recent good rows a duplicate may repeat.
const RECENT: usize = 4096;

/// Write `opts.rows` trip records to `out` (unbuffered writers are fine: the
/// output is written in large chunks), calling `progress` with the rows
/// written so far every 65 536 rows and once at the end.
///
/// Fails with [`io::ErrorKind::InvalidInput`] when the options are invalid
/// (see [`TripsOptions::validate`]); otherwise only when `out` fails.
pub fn write_trips<W: Write>(
    mut out: W,
    opts: &TripsOptions,
    progress: &mut dyn FnMut(u64),
) -> io::Result<GenStats> {
    let mut g = Generator::new(opts)?;
    let json = opts.format == Format::Jsonl;
    let mut stats = GenStats::default();
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK + 4096);
    let mut scratch: Vec<u8> = Vec::with_capacity(64);
    let mut recent: Vec<Trip> = Vec::with_capacity(RECENT);
    let mut recent_next = 0usize;
    let mut bad_counts = [0u64; BadKind::ALL.len()];

    if !json {
        for (i, name) in TRIPS_COLUMNS.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(name.as_bytes());
        }
        buf.push(b'\n');
    }

    for n in 1..=opts.rows {
        if opts.bad_ratio > 0.0 && g.rng.random_bool(opts.bad_ratio) {
            let k = g.rng.random_range(0..BadKind::ALL.len());
            let kind = BadKind::ALL[k];
            let mut t = g.trip();
            scratch.clear();
            let patch = g.spoil(kind, &mut t, json, &mut scratch);
            g.write_row(&mut buf, &t, patch, &scratch, json);
            bad_counts[k] += 1;
            stats.bad += 1;
        } else {
            let dup = opts.duplicate_ratio > 0.0
                && !recent.is_empty()
                && g.rng.random_bool(opts.duplicate_ratio);
            let t = if dup {
                stats.duplicates += 1;
                recent[g.rng.random_range(0..recent.len())]
            } else {
                let t = g.trip();
                if recent.len() < RECENT {
                    recent.push(t);
                } else {
                    recent[recent_next] = t;
                    recent_next = (recent_next + 1) % RECENT;
                }
                t
            };
            g.write_row(&mut buf, &t, Patch::None, &scratch, json);
            stats.good += 1;
        }
        stats.rows = n;
        if buf.len() >= CHUNK {
            out.write_all(&buf)?;
            stats.bytes += buf.len() as u64;
            buf.clear();
        }
        if n.is_multiple_of(PROGRESS_EVERY) {
            progress(n);
        }
    }
    out.write_all(&buf)?;
    stats.bytes += buf.len() as u64;
    out.flush()?;
    if !opts.rows.is_multiple_of(PROGRESS_EVERY) || opts.rows == 0 {
        progress(opts.rows);
    }
    for (kind, count) in BadKind::ALL.iter().zip(bad_counts) {
        if count > 0 {
            stats.bad_by_kind.insert(*kind, count);
        }
    }
    Ok(stats)
}

/// One trip. Times are seconds since midnight of `start`; money is in cents;
/// the distance is in hundredths of a mile.
#[derive(Debug, Clone, Copy)]
struct Trip {
    vendor: u16,
    pickup: i64,
    dropoff: i64,
    passengers: Option<u8>,
    distance: i64,
    ratecode: Option<u8>,
    flag: Option<u8>,
    pu: u16,
    dropoff_zone: u16,
    payment: u8,
    fare: i64,
    extra: i64,
    mta: i64,
    tip: i64,
    tolls: i64,
    improvement: i64,
    total: i64,
    congestion: Option<i64>,
    airport: Option<i64>,
}

/// How a bad row departs from the normal rendering of its trip. Replacement
/// values live in a scratch buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Patch {
    None,
    /// Leave field `i` out.
    Omit(usize),
    /// Add a field (CSV) or truncate after an extra key (JSON).
    Extra,
    /// Field `i` is the scratch bytes: bare in CSV, a string in JSON.
    Raw(usize),
    /// Field `i` is the scratch bytes, quoted in CSV, a string in JSON.
    Quoted(usize),
}

// Indices into TRIPS_COLUMNS.
const PICKUP: usize = 1;
const DROPOFF: usize = 2;
const FLAG: usize = 6;

/// Fields that hold numbers.
const NUMERIC: [usize; 16] = [0, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18];
/// Fields the contract does not allow to be null or missing.
const NON_NULLABLE: [usize; 9] = [0, 1, 2, 4, 7, 8, 9, 10, 16];
/// Decimal fields that are never null, for comma/newline defects.
const AMOUNTS: [usize; 4] = [4, 10, 13, 16];

/// Relative pickup volume by hour, Monday to Friday and at weekends.
const WEEKDAY_HOURS: [u32; 24] = [
    18, 10, 6, 4, 5, 10, 25, 42, 52, 50, 48, 50, 53, 55, 60, 62, 62, 68, 72, 66, 58, 56, 52, 36,
];
const WEEKEND_HOURS: [u32; 24] = [
    45, 36, 26, 18, 10, 8, 10, 16, 24, 34, 44, 50, 55, 56, 57, 57, 57, 58, 60, 56, 50, 50, 50, 46,
];

/// TLC taxi zones in Manhattan.
const MANHATTAN: [u16; 69] = [
    4, 12, 13, 24, 41, 42, 43, 45, 48, 50, 68, 74, 75, 79, 87, 88, 90, 100, 103, 104, 105, 107,
    113, 114, 116, 120, 125, 127, 128, 137, 140, 141, 142, 143, 144, 148, 151, 152, 153, 158, 161,
    162, 163, 164, 166, 170, 186, 194, 202, 209, 211, 224, 229, 230, 231, 232, 233, 234, 236, 237,
    238, 239, 243, 244, 246, 249, 261, 262, 263,
];
/// The busiest zones (Midtown, Upper East Side, the Village...).
const HOT: [u16; 24] = [
    237, 236, 161, 162, 186, 230, 170, 142, 239, 163, 234, 48, 68, 79, 107, 141, 140, 263, 262,
    249, 113, 164, 100, 238,
];
const JFK: u16 = 132;
const LGA: u16 = 138;
const EWR: u16 = 1;

struct Generator {
    rng: StdRng,
    /// `YYYY-MM-DD` of day `k - 1` relative to `start` (index 0 is the day
    /// before `start`, the last is `days + 1`, enough for late dropoffs and
    /// for dropoffs moved before their pickup).
    dates: Vec<[u8; 10]>,
    /// Whether day `k` (relative to `start`) is a Saturday or Sunday.
    weekend: Vec<bool>,
    day_cum: Vec<u32>,
    weekday_hour_cum: Vec<u32>,
    weekend_hour_cum: Vec<u32>,
    /// Cumulative pickup/dropoff weights of zones 1..=265.
    zone_cum: Vec<u32>,
    manhattan: [bool; 266],
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn cumulative(weights: impl IntoIterator<Item = u32>) -> Vec<u32> {
    let mut sum = 0u32;
    weights
        .into_iter()
        .map(|w| {
            sum += w.max(1);
            sum
        })
        .collect()
}

/// An index into `cum` drawn with probability proportional to its weight.
fn pick(rng: &mut StdRng, cum: &[u32]) -> usize {
    match cum.last() {
        Some(&total) if total > 0 => {
            let r = rng.random_range(0..total);
            cum.partition_point(|&c| c <= r)
        }
        _ => 0,
    }
}

/// A standard normal deviate (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn cents(x: f64) -> i64 {
    (x * 100.0).round() as i64
}

impl Generator {
    fn new(opts: &TripsOptions) -> io::Result<Self> {
        opts.validate()?;
        let mut dates = Vec::with_capacity(opts.days as usize + 3);
        let mut weekend = Vec::with_capacity(opts.days as usize + 2);
        let mut day_weights = Vec::with_capacity(opts.days as usize);
        let mut day = opts.start.pred_opt().unwrap_or(opts.start);
        for k in 0..opts.days as usize + 3 {
            let text = day.format("%Y-%m-%d").to_string();
            let bytes: [u8; 10] = text
                .as_bytes()
                .try_into()
                .map_err(|_| invalid(format!("date {text} is not YYYY-MM-DD")))?;
            dates.push(bytes);
            if k >= 1 {
                let wd = day.weekday();
                weekend.push(matches!(wd, Weekday::Sat | Weekday::Sun));
                if k <= opts.days as usize {
                    day_weights.push(match wd {
                        Weekday::Mon => 95,
                        Weekday::Tue => 100,
                        Weekday::Wed => 104,
                        Weekday::Thu => 108,
                        Weekday::Fri => 106,
                        Weekday::Sat => 100,
                        Weekday::Sun => 86,
                    });
                }
            }
            day = day.succ_opt().unwrap_or(day);
        }
        let mut manhattan = [false; 266];
        for &z in &MANHATTAN {
            manhattan[z as usize] = true;
        }
        let zone_cum = cumulative((1..=265u16).map(|z| {
            if HOT.contains(&z) {
                60
            } else if manhattan[z as usize] {
                18
            } else if z >= 264 || z == JFK || z == LGA {
                3
            } else {
                1
            }
        }));
        Ok(Generator {
            rng: StdRng::seed_from_u64(opts.seed),
            dates,
            weekend,
            day_cum: cumulative(day_weights),
            weekday_hour_cum: cumulative(WEEKDAY_HOURS),
            weekend_hour_cum: cumulative(WEEKEND_HOURS),
            zone_cum,
            manhattan,
        })
    }

    fn zone(&mut self) -> u16 {
        pick(&mut self.rng, &self.zone_cum) as u16 + 1
    }

    fn is_manhattan(&self, zone: u16) -> bool {
        self.manhattan.get(zone as usize).copied().unwrap_or(false)
    }

    /// A fresh, valid trip.
    fn trip(&mut self) -> Trip {
        let day = pick(&mut self.rng, &self.day_cum);
        let weekend = self.weekend.get(day).copied().unwrap_or(false);
        let hour = pick(
            &mut self.rng,
            if weekend {
                &self.weekend_hour_cum
            } else {
                &self.weekday_hour_cum
            },
        ) as i64;
        let pickup = day as i64 * 86_400 + hour * 3600 + self.rng.random_range(0..3600i64);

        // Where: mostly within Manhattan; ~6 % airport runs.
        let u: f64 = self.rng.random();
        let (pu, dropoff_zone, miles, airport_run) = if u < 0.062 {
            let (airport, mean, sd) = if u < 0.035 {
                (JFK, 17.5, 3.5)
            } else if u < 0.059 {
                (LGA, 10.0, 2.5)
            } else {
                (EWR, 18.5, 3.0)
            };
            let other = self.zone();
            let miles = (mean + sd * normal(&mut self.rng)).clamp(mean * 0.5, mean * 2.2);
            // Newark pickups are not yellow-cab business.
            if airport != EWR && self.rng.random_bool(0.5) {
                (airport, other, miles, Some(airport))
            } else {
                (other, airport, miles, Some(airport))
            }
        } else {
            let pu = self.zone();
            let dz = if self.rng.random_bool(0.08) {
                pu
            } else {
                self.zone()
            };
            let miles = if self.rng.random_bool(0.012) {
                0.0
            } else {
                // Log-normal: median 1.8 mi, long tail.
                1.8 * (0.8 * normal(&mut self.rng)).exp()
            };
            (pu, dz, miles, None)
        };
        let distance = cents(miles).clamp(0, 9_999);
        let miles = distance as f64 / 100.0;

        // How long: an urban speed, slower at rush hour, faster at night
        // and on the highways to the airports.
        let rush = !weekend && matches!(hour, 7..=9 | 15..=18);
        let night = matches!(hour, 0..=5 | 22..=23);
        let mut mph = 11.0 * (0.3 * normal(&mut self.rng)).exp();
        if rush {
            mph *= 0.8;
        }
        if night {
            mph *= 1.35;
        }
        if airport_run.is_some() {
            mph *= 1.5;
        }
        let mph = mph.clamp(3.0, 45.0);
        let secs = if distance == 0 {
            self.rng.random_range(0..600i64)
        } else {
            (miles / mph * 3600.0) as i64 + self.rng.random_range(30..240i64)
        };
        let secs = secs.min(4 * 3600);
        let dropoff = pickup + secs;

        // The flex-fare rows of real TLC data: these five columns are null
        // together and payment_type is 0.
        let sparse = self.rng.random_bool(0.02);

        let v: f64 = self.rng.random();
        let vendor = if v < 0.265 {
            1
        } else if v < 0.995 {
            2
        } else if v < 0.998 {
            6
        } else {
            7
        };
        let passengers = if sparse {
            None
        } else {
            const CUM: [u32; 7] = [15, 745, 885, 920, 940, 975, 1000];
            Some(pick(&mut self.rng, &CUM) as u8)
        };
        let manhattan_end = self.is_manhattan(pu) || self.is_manhattan(dropoff_zone);
        let ratecode = if sparse {
            None
        } else {
            Some(match airport_run {
                Some(JFK) if manhattan_end && self.rng.random_bool(0.85) => 2,
                Some(EWR) => 3,
                _ => {
                    let r = self.rng.random_range(0..10_000u32);
                    match r {
                        0..9_800 => 1,
                        9_800..9_920 => 5,
                        9_920..9_940 => 4,
                        9_940..9_942 => 6,
                        _ => 99,
                    }
                }
            })
        };
        let flag = if sparse {
            None
        } else if self.rng.random_bool(0.005) {
            Some(b'Y')
        } else {
            Some(b'N')
        };
        let payment = if sparse {
            0
        } else {
            const CUM: [u32; 4] = [770, 960, 972, 1000];
            pick(&mut self.rng, &CUM) as u8 + 1
        };

        // The meter: $3.00 + $2.50/mi + $0.70 per minute in slow traffic
        // (about half the trip).
        let minutes = secs as f64 / 60.0;
        let fare = match ratecode {
            Some(2) => 7_000,
            Some(5) => self.rng.random_range(4..=24i64) * 500,
            _ => cents(3.0 + 2.5 * miles + 0.7 * minutes * 0.5).max(300),
        };
        let extra = if night || hour >= 20 {
            100
        } else if !weekend && (16..20).contains(&hour) {
            250
        } else {
            0
        };
        let tolls = if (miles > 8.0 && self.rng.random_bool(0.45)) || self.rng.random_bool(0.01) {
            694
        } else {
            0
        };
        let tips = match payment {
            1 => self.rng.random_bool(0.85),
            0 => self.rng.random_bool(0.3),
            _ => false,
        };
        let tip = if tips {
            let pct = if self.rng.random_bool(0.1) {
                0.30
            } else {
                self.rng.random_range(0.15..0.25)
            };
            (fare as f64 * pct).round() as i64
        } else {
            0
        };
        let (mta, improvement) = (50, 100);
        let congestion = (!sparse).then_some(if manhattan_end { 250 } else { 0 });
        let airport = (!sparse).then_some(if pu == JFK || pu == LGA { 175 } else { 0 });
        let total = fare
            + extra
            + mta
            + tip
            + tolls
            + improvement
            + congestion.unwrap_or(0)
            + airport.unwrap_or(0);
        Trip {
            vendor,
            pickup,
            dropoff,
            passengers,
            distance,
            ratecode,
            flag,
            pu,
            dropoff_zone,
            payment,
            fare,
            extra,
            mta,
            tip,
            tolls,
            improvement,
            total,
            congestion,
            airport,
        }
    }

    /// Give the row one defect of `kind`: change the trip, or return a patch
    /// whose replacement bytes are in `scratch`.
    fn spoil(&mut self, kind: BadKind, t: &mut Trip, json: bool, scratch: &mut Vec<u8>) -> Patch {
        match kind {
            BadKind::UnparseableNumber => {
                const TEXTS: [&str; 7] = ["abc", "1..2", "12.3.4", "7a", "--5", "one", "#VALUE!"];
                let i = NUMERIC[self.rng.random_range(0..NUMERIC.len())];
                scratch.extend_from_slice(TEXTS[self.rng.random_range(0..TEXTS.len())].as_bytes());
                Patch::Raw(i)
            }
            BadKind::MissingField => {
                let i = if json {
                    NON_NULLABLE[self.rng.random_range(0..NON_NULLABLE.len())]
                } else {
                    self.rng.random_range(0..TRIPS_COLUMNS.len())
                };
                Patch::Omit(i)
            }
            BadKind::ExtraField => Patch::Extra,
            BadKind::NegativeFare => {
                t.fare = -t.fare.max(1);
                Patch::None
            }
            BadKind::DropoffBeforePickup => {
                t.dropoff = t.pickup - self.rng.random_range(60..=1800i64);
                Patch::None
            }
            BadKind::MalformedTimestamp => {
                let i = if self.rng.random_bool(0.5) {
                    PICKUP
                } else {
                    DROPOFF
                };
                let secs = if i == PICKUP { t.pickup } else { t.dropoff };
                let date = self.date(secs);
                let sod = secs.rem_euclid(86_400);
                let (y, m, d) = (&date[0..4], &date[5..7], &date[8..10]);
                match self.rng.random_range(0..4u8) {
                    0 => {
                        // Month 13, day 45, hour 25, minute 61.
                        scratch.extend_from_slice(y);
                        scratch.extend_from_slice(b"-13-45 25:61:00");
                    }
                    1 => {
                        // US style, no seconds.
                        scratch.extend_from_slice(m);
                        scratch.push(b'/');
                        scratch.extend_from_slice(d);
                        scratch.push(b'/');
                        scratch.extend_from_slice(y);
                        scratch.push(b' ');
                        push2(scratch, sod / 3600);
                        scratch.push(b':');
                        push2(scratch, sod / 60 % 60);
                    }
                    2 => {
                        // February 30th.
                        scratch.extend_from_slice(y);
                        scratch.extend_from_slice(b"-02-30 ");
                        push_hms(scratch, sod);
                    }
                    _ => {
                        // ISO 8601 with a T and a zone: not the contract's format.
                        scratch.extend_from_slice(&date);
                        scratch.push(b'T');
                        push_hms(scratch, sod);
                        scratch.push(b'Z');
                    }
                }
                Patch::Raw(i)
            }
            BadKind::OutOfRangeId => {
                let id = if self.rng.random_bool(0.5) {
                    0
                } else {
                    self.rng.random_range(266..=999u16)
                };
                if self.rng.random_bool(0.5) {
                    t.pu = id;
                } else {
                    t.dropoff_zone = id;
                }
                Patch::None
            }
            BadKind::InvalidEnum => {
                match self.rng.random_range(0..4u8) {
                    0 => t.payment = 9,
                    1 => t.flag = Some(b'X'),
                    2 => t.vendor = 3,
                    _ => t.ratecode = Some(7),
                }
                Patch::None
            }
            BadKind::InvalidUtf8 => {
                const FIELDS: [usize; 5] = [FLAG, 4, 10, 13, 16];
                let i = FIELDS[self.rng.random_range(0..FIELDS.len())];
                self.push_value(scratch, t, i, false);
                let at = scratch.len() / 2;
                scratch.insert(at, 0xFE);
                scratch.insert(at, 0xFF);
                Patch::Raw(i)
            }
            BadKind::QuotedDelimiterInNumber => {
                let i = AMOUNTS[self.rng.random_range(0..AMOUNTS.len())];
                self.push_value(scratch, t, i, false);
                let dot = scratch
                    .iter()
                    .position(|&b| b == b'.')
                    .unwrap_or(scratch.len());
                match self.rng.random_range(0..3u8) {
                    // A decimal comma: "12,50".
                    0 if dot < scratch.len() => scratch[dot] = b',',
                    // A line break inside the number: "12\n.50".
                    1 => scratch.insert(dot, b'\n'),
                    // Both: "12,\n50".
                    _ if dot < scratch.len() => {
                        scratch[dot] = b',';
                        scratch.insert(dot + 1, b'\n');
                    }
                    _ => scratch.extend_from_slice(b",5"),
                }
                Patch::Quoted(i)
            }
        }
    }

    fn date(&self, secs: i64) -> [u8; 10] {
        // Index 0 is the day before `start`; trips never reach further out
        // than the table (pickups within `days`, trips at most 4 hours,
        // dropoffs moved back at most 30 minutes).
        let k = (secs.div_euclid(86_400) + 1).clamp(0, self.dates.len() as i64 - 1) as usize;
        self.dates[k]
    }

    fn push_ts(&self, buf: &mut Vec<u8>, secs: i64) {
        buf.extend_from_slice(&self.date(secs));
        buf.push(b' ');
        push_hms(buf, secs.rem_euclid(86_400));
    }

    /// Field `i` of `t` as text: empty (CSV) or `null` (JSON) when null;
    /// timestamps and the flag are quoted in JSON.
    fn push_value(&self, buf: &mut Vec<u8>, t: &Trip, i: usize, json: bool) {
        let opt_int = |buf: &mut Vec<u8>, v: Option<u8>| match v {
            Some(v) => push_u64(buf, u64::from(v)),
            None if json => buf.extend_from_slice(b"null"),
            None => {}
        };
        let opt_cents = |buf: &mut Vec<u8>, v: Option<i64>| match v {
            Some(v) => push_cents(buf, v),
            None if json => buf.extend_from_slice(b"null"),
            None => {}
        };
        match i {
            0 => push_u64(buf, u64::from(t.vendor)),
            1 | 2 => {
                if json {
                    buf.push(b'"');
                }
                self.push_ts(buf, if i == 1 { t.pickup } else { t.dropoff });
                if json {
                    buf.push(b'"');
                }
            }
            3 => opt_int(buf, t.passengers),
            4 => push_cents(buf, t.distance),
            5 => opt_int(buf, t.ratecode),
            6 => match t.flag {
                Some(f) if json => buf.extend_from_slice(&[b'"', f, b'"']),
                Some(f) => buf.push(f),
                None if json => buf.extend_from_slice(b"null"),
                None => {}
            },
            7 => push_u64(buf, u64::from(t.pu)),
            8 => push_u64(buf, u64::from(t.dropoff_zone)),
            9 => push_u64(buf, u64::from(t.payment)),
            10 => push_cents(buf, t.fare),
            11 => push_cents(buf, t.extra),
            12 => push_cents(buf, t.mta),
            13 => push_cents(buf, t.tip),
            14 => push_cents(buf, t.tolls),
            15 => push_cents(buf, t.improvement),
            16 => push_cents(buf, t.total),
            17 => opt_cents(buf, t.congestion),
            _ => opt_cents(buf, t.airport),
        }
    }

    fn write_row(&self, buf: &mut Vec<u8>, t: &Trip, patch: Patch, scratch: &[u8], json: bool) {
        if json {
            buf.push(b'{');
        }
        let mut first = true;
        for (i, name) in TRIPS_COLUMNS.iter().enumerate() {
            if patch == Patch::Omit(i) {
                continue;
            }
            if !first {
                buf.push(b',');
            }
            first = false;
            if json {
                buf.push(b'"');
                buf.extend_from_slice(name.as_bytes());
                buf.extend_from_slice(b"\":");
            }
            match patch {
                Patch::Raw(j) | Patch::Quoted(j) if j == i && json => {
                    push_json_string(buf, scratch)
                }
                Patch::Raw(j) if j == i => buf.extend_from_slice(scratch),
                Patch::Quoted(j) if j == i => {
                    buf.push(b'"');
                    for &b in scratch {
                        if b == b'"' {
                            buf.push(b'"');
                        }
                        buf.push(b);
                    }
                    buf.push(b'"');
                }
                _ => self.push_value(buf, t, i, json),
            }
        }
        if patch == Patch::Extra {
            if json {
                // An extra key, then the line ends: truncated JSON.
                buf.extend_from_slice(b",\"extra_field\":");
                push_cents(buf, t.extra);
            } else {
                buf.push(b',');
                push_cents(buf, t.extra);
            }
        } else if json {
            buf.push(b'}');
        }
        buf.push(b'\n');
    }
}

/// A JSON string of raw bytes: quotes, backslashes and control characters
/// escaped, other bytes (even invalid UTF-8) written as they are.
fn push_json_string(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.push(b'"');
    for &b in bytes {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0..0x20 => {
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 15)]);
            }
            _ => buf.push(b),
        }
    }
    buf.push(b'"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// Two digits, zero-padded (`v` < 100).
fn push2(buf: &mut Vec<u8>, v: i64) {
    let v = v.rem_euclid(100) as u8;
    buf.extend_from_slice(&[b'0' + v / 10, b'0' + v % 10]);
}

/// `HH:MM:SS` of a second of the day.
fn push_hms(buf: &mut Vec<u8>, sod: i64) {
    push2(buf, sod / 3600);
    buf.push(b':');
    push2(buf, sod / 60 % 60);
    buf.push(b':');
    push2(buf, sod % 60);
}

/// An amount in cents as a decimal with two places: `-3.05`, `0.00`.
fn push_cents(buf: &mut Vec<u8>, c: i64) {
    if c < 0 {
        buf.push(b'-');
    }
    let a = c.unsigned_abs();
    push_u64(buf, a / 100);
    buf.push(b'.');
    let f = (a % 100) as u8;
    buf.extend_from_slice(&[b'0' + f / 10, b'0' + f % 10]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formatting() {
        let mut b = Vec::new();
        push_cents(&mut b, 0);
        b.push(b' ');
        push_cents(&mut b, 5);
        b.push(b' ');
        push_cents(&mut b, -305);
        b.push(b' ');
        push_cents(&mut b, 123_456);
        b.push(b' ');
        push_u64(&mut b, 0);
        b.push(b' ');
        push_u64(&mut b, u64::MAX);
        b.push(b' ');
        push_hms(&mut b, 86_399);
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "0.00 0.05 -3.05 1234.56 0 18446744073709551615 23:59:59"
        );
    }

    #[test]
    fn json_strings_keep_raw_bytes_and_escape_controls() {
        let mut b = Vec::new();
        push_json_string(&mut b, b"a\"b\\c\nd\x01");
        assert_eq!(b, b"\"a\\\"b\\\\c\\nd\\u0001\"");
        b.clear();
        push_json_string(&mut b, &[b'N', 0xFF, 0xFE]);
        assert_eq!(b, [b'"', b'N', 0xFF, 0xFE, b'"']);
    }

    #[test]
    fn dates_cover_the_range_and_weekdays() {
        let opts = TripsOptions {
            start: NaiveDate::from_ymd_opt(2024, 2, 28).unwrap(),
            days: 3,
            ..TripsOptions::default()
        };
        let g = Generator::new(&opts).unwrap();
        assert_eq!(&g.date(-1), b"2024-02-27");
        assert_eq!(&g.date(0), b"2024-02-28");
        assert_eq!(&g.date(86_400), b"2024-02-29");
        assert_eq!(&g.date(3 * 86_400), b"2024-03-02");
        // Wednesday 2024-02-28 to Sunday 2024-03-03 (one day past the end,
        // for late dropoffs).
        assert_eq!(g.weekend, vec![false, false, false, true, true]);
    }

    #[test]
    fn options_are_validated() {
        let bad = [
            TripsOptions {
                bad_ratio: 1.5,
                ..TripsOptions::default()
            },
            TripsOptions {
                duplicate_ratio: -0.1,
                ..TripsOptions::default()
            },
            TripsOptions {
                bad_ratio: f64::NAN,
                ..TripsOptions::default()
            },
            TripsOptions {
                days: 0,
                ..TripsOptions::default()
            },
            TripsOptions {
                start: NaiveDate::from_ymd_opt(1999, 12, 31).unwrap(),
                ..TripsOptions::default()
            },
            TripsOptions {
                start: NaiveDate::from_ymd_opt(2035, 12, 31).unwrap(),
                days: 2,
                ..TripsOptions::default()
            },
        ];
        for opts in bad {
            let err = write_trips(Vec::new(), &opts, &mut |_| {}).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{opts:?}");
        }
        let edge = TripsOptions {
            start: NaiveDate::from_ymd_opt(2035, 12, 31).unwrap(),
            days: 1,
            rows: 10,
            ..TripsOptions::default()
        };
        assert_eq!(
            write_trips(Vec::new(), &edge, &mut |_| {}).unwrap().rows,
            10
        );
    }
}
