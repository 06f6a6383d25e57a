//! Record readers that hold at most a bounded number of bytes of one record:
//! CSV records (over `csv-core`) and JSON lines. A record longer than the
//! limit keeps only its start; the rest of it is read and thrown away, so an
//! unclosed quote, a file without a newline or a gigabyte-long line costs
//! the limit in memory, not the record's size.
//!
//! A record's size is its bytes as they appear in the (decompressed) input,
//! without the line terminator that ends it.

use std::io::{self, BufRead, Read};

use csv_core::ReadRecordResult;

/// The most bytes of a cut record's raw text kept for the quarantine.
pub const RAW_CAP: usize = 1024;

/// Fields of one CSV record held at most; a record with more is cut (it can
/// only be rejected: no contract is that wide, and a header that wide is
/// refused).
pub const MAX_HELD_FIELDS: usize = 16 * 1024;

/// Output space used while the rest of a cut record is skipped.
const SCRATCH_BYTES: usize = 64 * 1024;
const SCRATCH_ENDS: usize = 1024;

/// At most `cap` bytes of `raw`, cut before a UTF-8 character that would
/// not fit whole.
pub fn cap_raw(raw: &[u8], cap: usize) -> &[u8] {
    if raw.len() <= cap {
        return raw;
    }
    let mut end = cap;
    while end > 0 && cap - end < 3 && (raw[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    if (raw[end] & 0xC0) == 0x80 {
        end = cap; // not UTF-8 text anyway
    }
    &raw[..end]
}

/// CSV records read one at a time with RFC 4180 quoting (`""` escapes a
/// quote; CR, LF and CRLF end a record; blank lines are skipped), like the
/// `csv` crate's defaults.
pub struct CsvRecords<R> {
    input: R,
    core: csv_core::Reader,
    limit: usize,
    /// Field bytes of the current record (quotes removed).
    out: Vec<u8>,
    /// End of each held field in `out`.
    ends: Vec<usize>,
    /// Bytes between one field's end and the next one's start in `out`:
    /// 0 as csv-core writes fields, 1 for a plain line held whole.
    sep: usize,
    out_len: usize,
    ends_len: usize,
    /// Fields of the current record, held or not.
    fields: usize,
    /// Line the current record starts on (1-based).
    line: u64,
    /// Input bytes the current record took so far.
    bytes: u64,
    /// The record is longer than the limit.
    over: bool,
    /// The record is cut: only its start is held.
    cut: bool,
    /// Line of the quote still open when the input ended, if any.
    unclosed: Option<u64>,
    consumed: u64,
    /// The parser has seen input.
    started: bool,
    scratch: Vec<u8>,
    scratch_ends: Vec<usize>,
}

impl<R: BufRead> CsvRecords<R> {
    /// Records of `input`, each held up to `limit` bytes.
    pub fn new(input: R, limit: usize) -> Self {
        CsvRecords {
            input,
            core: csv_core::Reader::new(),
            limit,
            out: vec![0; 4096.min(limit + 1)],
            ends: vec![0; 64],
            sep: 0,
            out_len: 0,
            ends_len: 0,
            fields: 0,
            line: 1,
            bytes: 0,
            over: false,
            cut: false,
            unclosed: None,
            consumed: 0,
            started: false,
            scratch: Vec::new(),
            scratch_ends: Vec::new(),
        }
    }

    /// Read the next record; `false` at the end of the input.
    pub fn read(&mut self) -> io::Result<bool> {
        self.out_len = 0;
        self.ends_len = 0;
        self.sep = 0;
        self.fields = 0;
        self.bytes = 0;
        self.over = false;
        self.cut = false;
        self.unclosed = None;
        self.skip_blank_lines()?;
        self.line = self.core.line();
        if self.started && self.read_plain_line()? {
            return Ok(true);
        }
        // Output bytes of this record so far, and newlines in the output of
        // its last, unfinished field (while cut; else computed from `out`).
        let mut out_pos = 0usize;
        let mut open_newlines = 0u64;
        let mut probed = false;
        loop {
            let eof = self.input.fill_buf()?.is_empty();
            if eof && self.bytes > 0 && !probed {
                // The record ends at the end of the input: inside a quote?
                probed = true;
                let newlines = if self.cut {
                    open_newlines
                } else {
                    self.newlines_in_open_field()
                };
                let line = self.core.line();
                let ended = self.probe_with_newline();
                self.core.set_line(line);
                if ended {
                    return Ok(true);
                }
                self.unclosed = Some(line.saturating_sub(newlines));
                continue;
            }
            let buf = self.input.fill_buf()?;
            // Never take more than one byte past the limit while holding.
            let room = if self.cut {
                buf.len()
            } else {
                (self.limit + 1)
                    .saturating_sub(self.bytes as usize)
                    .max(1)
                    .min(buf.len())
            };
            let input = &buf[..room];
            if !self.started && input == b"\xEF\xBB\xBF" {
                // csv-core would strip the BOM and then take the empty
                // rest for the end of the input.
                self.input.consume(3);
                self.consumed += 3;
                continue;
            }
            self.started |= !input.is_empty();
            let (res, nin, nout, nend) = if self.cut {
                self.core
                    .read_record(input, &mut self.scratch, &mut self.scratch_ends)
            } else {
                self.core.read_record(
                    input,
                    &mut self.out[self.out_len..],
                    &mut self.ends[self.ends_len..],
                )
            };
            self.input.consume(nin);
            self.bytes += nin as u64;
            self.consumed += nin as u64;
            self.fields += nend;
            if self.cut {
                open_newlines = if nend > 0 {
                    let last = self.scratch_ends[nend - 1].saturating_sub(out_pos);
                    count_newlines(self.scratch.get(last..nout).unwrap_or_default())
                } else {
                    open_newlines + count_newlines(&self.scratch[..nout])
                };
            } else {
                self.out_len += nout;
                self.ends_len += nend;
            }
            out_pos += nout;
            let ended_by_terminator = res == ReadRecordResult::Record && nin > 0;
            let size = self.bytes - u64::from(ended_by_terminator);
            if size > self.limit as u64 && !self.over {
                self.over = true;
                if !self.cut {
                    open_newlines = self.newlines_in_open_field();
                    self.start_cutting();
                }
            }
            match res {
                ReadRecordResult::InputEmpty if eof => {
                    return Err(io::Error::other("the CSV reader stalled at the end"));
                }
                ReadRecordResult::Record => {
                    if self.unclosed.is_some() && !self.cut {
                        // The probing LF counted in csv-core's position.
                        if let Some(i) = self.ends_len.checked_sub(1) {
                            self.ends[i] = self.ends[i].min(self.out_len);
                        }
                    }
                    return Ok(true);
                }
                ReadRecordResult::End => return Ok(false),
                // Cut: the scratch space is simply reused.
                _ if self.cut => {}
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let n = (self.out.len() * 2).min(self.limit + 2);
                    self.out.resize(n.max(self.out.len() + 1), 0);
                }
                ReadRecordResult::OutputEndsFull if self.ends.len() >= MAX_HELD_FIELDS => {
                    open_newlines = self.newlines_in_open_field();
                    self.start_cutting();
                }
                ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
            }
        }
    }

    /// The common record, without csv-core's byte-at-a-time DFA: a whole
    /// line in the buffer, with no quote and no CR but one before its LF,
    /// within the limit. Its fields are the bytes between commas, which is
    /// what csv-core makes of such a line; anything else (`false`) is left
    /// to csv-core. Called at the start of a record, where csv-core's state
    /// is the start of a record too, so the line can be consumed past it.
    fn read_plain_line(&mut self) -> io::Result<bool> {
        let buf = self.input.fill_buf()?;
        let Some(nl) = memchr::memchr(b'\n', buf) else {
            return Ok(false);
        };
        let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
        if line.is_empty()
            || line.len() > self.limit
            || memchr::memchr2(b'"', b'\r', line).is_some()
        {
            return Ok(false);
        }
        // The line is held whole, commas and all; a field ends at its
        // comma (see `sep`).
        if self.out.len() < line.len() {
            self.out.resize(line.len(), 0);
        }
        self.out[..line.len()].copy_from_slice(line);
        let mut fields = 0;
        for (i, &b) in line.iter().enumerate() {
            if b == b',' {
                if fields + 1 >= MAX_HELD_FIELDS {
                    return Ok(false);
                }
                if fields == self.ends.len() {
                    self.ends.resize(fields * 2 + 1, 0);
                }
                self.ends[fields] = i;
                fields += 1;
            }
        }
        if fields == self.ends.len() {
            self.ends.resize(fields + 1, 0);
        }
        self.ends[fields] = line.len();
        let fields = fields + 1;
        let out = line.len();
        self.sep = 1;
        self.out_len = out;
        self.ends_len = fields;
        self.fields = fields;
        let taken = nl + 1;
        self.bytes = taken as u64;
        self.consumed += taken as u64;
        self.input.consume(taken);
        self.core.set_line(self.core.line() + 1);
        Ok(true)
    }

    /// Skip the terminators between records (CRLF's LF, blank lines)
    /// before a record starts, so that its line is the line it starts on.
    /// csv-core would skip them itself, but inside the record's read.
    fn skip_blank_lines(&mut self) -> io::Result<()> {
        loop {
            let buf = self.input.fill_buf()?;
            let n = buf
                .iter()
                .take_while(|&&b| b == b'\n' || b == b'\r')
                .count();
            if n == 0 {
                return Ok(());
            }
            let newlines = count_newlines(&buf[..n]);
            self.input.consume(n);
            self.consumed += n as u64;
            self.core.set_line(self.core.line() + newlines);
        }
    }

    /// Feed the parser one LF, as if the input went on. Outside a quote it
    /// ends the record (`true`), the same record the end of the input would
    /// end. Inside a quote it is field data, which is dropped (`false`); the
    /// quote is then open at the end of the input. (A clone of the parser
    /// cannot be probed instead: csv-core's DFA does not clone whole.)
    fn probe_with_newline(&mut self) -> bool {
        let (res, nend) = if self.cut {
            let (res, _, _, nend) =
                self.core
                    .read_record(b"\n", &mut self.scratch, &mut self.scratch_ends);
            (res, nend)
        } else {
            if self.out_len == self.out.len() {
                self.out.push(0);
            }
            if self.ends_len == self.ends.len() {
                self.ends.push(0);
            }
            let (res, _, _, nend) = self.core.read_record(
                b"\n",
                &mut self.out[self.out_len..],
                &mut self.ends[self.ends_len..],
            );
            self.ends_len += nend;
            (res, nend)
        };
        self.fields += nend;
        res == ReadRecordResult::Record
    }

    fn newlines_in_open_field(&self) -> u64 {
        let start = self.ends_len.checked_sub(1).map_or(0, |i| self.ends[i]);
        count_newlines(self.out.get(start..self.out_len).unwrap_or_default())
    }

    fn start_cutting(&mut self) {
        self.cut = true;
        if self.scratch.is_empty() {
            self.scratch = vec![0; SCRATCH_BYTES];
            self.scratch_ends = vec![0; SCRATCH_ENDS];
        }
    }

    /// Fields in the current record (all of them, held or not).
    pub fn len(&self) -> usize {
        self.fields
    }

    /// A held field of the current record.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        if i >= self.ends_len {
            return None;
        }
        let start = if i == 0 {
            0
        } else {
            self.ends[i - 1] + self.sep
        };
        self.out.get(start..self.ends[i])
    }

    /// The held fields, and the held start of an unfinished one when the
    /// record is cut.
    pub fn held(&self) -> impl Iterator<Item = &[u8]> {
        let whole = (0..self.ends_len).filter_map(|i| self.get(i));
        let start = self.ends_len.checked_sub(1).map_or(0, |i| self.ends[i]);
        let part = (self.cut && start < self.out_len)
            .then(|| self.out.get(start..self.out_len))
            .flatten();
        whole.chain(part)
    }

    /// Line the current record starts on (1-based, counting LFs).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Whether the current record is longer than the limit.
    pub fn over_limit(&self) -> bool {
        self.over
    }

    /// Whether only the start of the current record is held.
    pub fn is_cut(&self) -> bool {
        self.cut
    }

    /// The line of a quote the current record opened and never closed:
    /// the record ran to the end of the input.
    pub fn unclosed_quote(&self) -> Option<u64> {
        self.unclosed
    }

    /// Input bytes consumed so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }
}

fn count_newlines(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

/// JSON lines (any text lines) read one at a time, each held up to a limit.
pub struct Lines<R> {
    input: R,
    limit: usize,
    buf: Vec<u8>,
    line: u64,
    consumed: u64,
    over: bool,
}

impl<R: BufRead> Lines<R> {
    /// Lines of `input`, each held up to `limit` bytes.
    pub fn new(input: R, limit: usize) -> Self {
        Lines {
            input,
            limit,
            buf: Vec::new(),
            line: 0,
            consumed: 0,
            over: false,
        }
    }

    /// Read the next line; `false` at the end of the input.
    pub fn read(&mut self) -> io::Result<bool> {
        self.buf.clear();
        self.over = false;
        // Two bytes past the limit: a CRLF line of exactly the limit fits.
        let n = (&mut self.input)
            .take(self.limit as u64 + 2)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        self.consumed += n as u64;
        let mut size = n;
        if self.buf.last() == Some(&b'\n') {
            size -= 1;
        } else if n == self.limit + 2 {
            // Longer still: skip to the end of the line.
            self.consumed += self.input.skip_until(b'\n')? as u64;
        }
        if self.buf[..size].last() == Some(&b'\r') {
            size -= 1;
        }
        self.over = size > self.limit;
        Ok(true)
    }

    /// The current line as held: the whole line, or its first bytes when
    /// it is over the limit.
    pub fn text(&self) -> &[u8] {
        &self.buf
    }

    /// Whether the current line is longer than the limit.
    pub fn over_limit(&self) -> bool {
        self.over
    }

    /// Line number of the current line (1-based).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Input bytes consumed so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    /// A record as read: line, held fields, over the limit, cut, unclosed.
    type Got = (u64, Vec<String>, bool, bool, Option<u64>);

    /// Every record, reading through a buffer of `chunk` bytes.
    fn csv(data: &[u8], limit: usize, chunk: usize) -> Vec<Got> {
        let mut r = CsvRecords::new(BufReader::with_capacity(chunk, data), limit);
        let mut all = Vec::new();
        while r.read().unwrap() {
            let fields: Vec<String> = r
                .held()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            assert!(r.len() >= fields.len().saturating_sub(1));
            all.push((
                r.line(),
                fields,
                r.over_limit(),
                r.is_cut(),
                r.unclosed_quote(),
            ));
        }
        assert_eq!(r.consumed(), data.len() as u64, "every byte is consumed");
        all
    }

    fn fields(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_bom_alone_in_the_first_chunk_is_not_the_end() {
        let got = csv(b"\xEF\xBB\xBFa,b\n1,2\n", 100, 3);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].1, fields(&["a", "b"]));
    }

    #[test]
    fn parses_like_the_csv_crate_at_any_chunk_size() {
        // csv-core strips a BOM only when it sees all three bytes at once
        // (the stage strips it from the header itself, too).
        let bom = b"\xEF\xBB\xBFa,b\r\n\"x,\"\"y\"\"\",2\n\n\r\n\"multi\nline\",3\r4,5";
        for (data, chunk) in [
            (&bom[3..], 1),
            (&bom[3..], 2),
            (bom, 3),
            (bom, 7),
            (bom, 64),
            (bom, 8192),
        ] {
            let got = csv(data, 1000, chunk);
            let mut want = Vec::new();
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(data);
            for rec in rdr.byte_records() {
                let rec = rec.unwrap();
                want.push(
                    rec.iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect::<Vec<_>>(),
                );
            }
            let got_fields: Vec<Vec<String>> = got.iter().map(|r| r.1.clone()).collect();
            assert_eq!(got_fields, want, "chunk {chunk}");
            let lines: Vec<u64> = got.iter().map(|r| r.0).collect();
            // Blank lines and CRLF do not shift line numbers; a lone CR
            // ends a record but is not a line.
            assert_eq!(lines, vec![1, 2, 5, 6], "chunk {chunk}");
            assert!(got.iter().all(|r| !r.2 && !r.3 && r.4.is_none()));
        }
    }

    /// Plain lines take a path of their own (not csv-core's DFA), which a
    /// one-byte buffer never takes (it never holds a whole line): on random
    /// documents of quotes, commas, CRs, LFs and text, every record comes
    /// out the same through both, and as the csv crate reads it, at limits
    /// that cut some records.
    #[test]
    fn plain_lines_read_as_csv_core_reads_them() {
        let alphabet: &[u8] = b"ab ,,,\"\r\n\n\n\xc3\xa9";
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut plain = 0;
        for doc in 0..3000 {
            let len = (doc % 60) + 1;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            let data = [b"h1,h2\n".as_slice(), &data].concat();
            for limit in [4, 1000] {
                let slow = csv(&data, limit, 1);
                for chunk in [7, 64, 8192] {
                    assert_eq!(
                        csv(&data, limit, chunk),
                        slow,
                        "{data:?} limit {limit} chunk {chunk}"
                    );
                }
                if limit == 1000 {
                    let want: Vec<Vec<String>> = csv::ReaderBuilder::new()
                        .has_headers(false)
                        .flexible(true)
                        .from_reader(data.as_slice())
                        .byte_records()
                        .map(|r| {
                            r.unwrap()
                                .iter()
                                .map(|f| String::from_utf8_lossy(f).into_owned())
                                .collect()
                        })
                        .collect();
                    let got: Vec<Vec<String>> = slow.iter().map(|r| r.1.clone()).collect();
                    if slow.iter().all(|r| r.4.is_none()) {
                        assert_eq!(got, want, "{data:?}");
                    }
                }
            }
            plain += data
                .split(|&b| b == b'\n')
                .filter(|l| !l.contains(&b'"'))
                .count();
        }
        assert!(plain > 3000, "few plain lines: {plain}");
    }

    #[test]
    fn a_record_of_the_limit_is_whole_and_one_byte_more_is_cut() {
        for chunk in [1, 5, 4096] {
            for end in ["\n", "\r\n", "\r"] {
                let data = format!("1234567890{end}12345678901{end}123{end}");
                let got = csv(data.as_bytes(), 10, chunk);
                assert_eq!(got.len(), 3, "{chunk} {end:?}");
                assert_eq!(got[0].1, fields(&["1234567890"]));
                assert!(!got[0].2 && !got[0].3);
                assert!(got[1].2 && got[1].3, "{chunk} {end:?}: {got:?}");
                assert!(got[1].1[0].len() <= 11);
                assert_eq!(got[2].1, fields(&["123"]));
                assert_eq!(got[2].0, if end == "\r" { 1 } else { 3 });
            }
            // Ended by the end of the input instead of a terminator.
            let got = csv(b"1234567890", 10, chunk);
            assert!(!got[0].2 && !got[0].3, "{got:?}");
            let got = csv(b"12345678901", 10, chunk);
            assert!(got[0].2 && got[0].3, "{got:?}");
        }
    }

    #[test]
    fn a_long_record_is_skipped_in_bounded_space() {
        let long = "x".repeat(1 << 20);
        let data = format!("a,b\n\"{long}\n{long}\",c\nd,e\n");
        for chunk in [3, 4096] {
            let mut r = CsvRecords::new(BufReader::with_capacity(chunk, data.as_bytes()), 100);
            assert!(r.read().unwrap());
            assert!(r.read().unwrap());
            assert_eq!((r.line(), r.len(), r.over_limit()), (2, 2, true));
            assert!(r.unclosed_quote().is_none());
            assert!(r.out.len() <= 102, "held {} bytes", r.out.len());
            assert!(r.read().unwrap());
            assert_eq!(
                (r.line(), r.get(0), r.get(1)),
                (4, Some(&b"d"[..]), Some(&b"e"[..]))
            );
            assert!(!r.read().unwrap());
        }
    }

    #[test]
    fn an_unclosed_quote_names_the_line_it_opened_on() {
        // Small: the quote on line 3 swallows the rest.
        let got = csv(b"h\n1,2\n3,\"4\n5,6\n7,8\n", 1000, 4);
        assert_eq!(got.len(), 3);
        assert_eq!(got[2].0, 3);
        assert_eq!(got[2].4, Some(3));
        assert!(!got[2].2);
        // A closed multi-line field first: the record starts on line 2, the
        // open quote is on line 3; and the rest is long.
        let rest = "9,9\n".repeat(100);
        let data = format!("h\n\"a\nb\",\"c\n{rest}");
        for chunk in [1, 7, 4096] {
            let got = csv(data.as_bytes(), 50, chunk);
            assert_eq!(got.len(), 2, "{chunk}");
            assert_eq!(
                (got[1].0, got[1].4, got[1].2),
                (2, Some(3), true),
                "{chunk}"
            );
        }
        // A record ending at EOF without a newline is not unclosed.
        let got = csv(b"h\n\"a\nb\",c", 1000, 3);
        assert_eq!(got[1].4, None);
        let got = csv(b"h\n\"a\"\"", 1000, 3);
        assert_eq!(got[1].4, Some(2), "an escaped quote keeps it open");
        let got = csv(b"h\n\"a\"\"\"", 1000, 3);
        assert_eq!(got[1].4, None);
    }

    #[test]
    fn a_record_too_wide_to_hold_is_cut_and_counted() {
        let data = format!("{}\nok\n", ",".repeat(MAX_HELD_FIELDS + 10));
        let mut r = CsvRecords::new(BufReader::new(data.as_bytes()), 1 << 20);
        assert!(r.read().unwrap());
        assert_eq!(r.len(), MAX_HELD_FIELDS + 11);
        assert!(r.is_cut() && !r.over_limit());
        assert!(r.read().unwrap());
        assert_eq!((r.line(), r.get(0)), (2, Some(&b"ok"[..])));
    }

    #[test]
    fn lines_are_held_up_to_the_limit() {
        let long = "y".repeat(5000);
        let data = format!("0123456789\n01234567890\n0123456789\r\n{long}\n\nlast{long}");
        for chunk in [1, 3, 8192] {
            let mut r = Lines::new(BufReader::with_capacity(chunk, data.as_bytes()), 10);
            let mut got = Vec::new();
            while r.read().unwrap() {
                assert!(r.text().len() <= 12);
                got.push((r.line(), r.over_limit()));
            }
            assert_eq!(
                got,
                vec![
                    (1, false),
                    (2, true),
                    (3, false),
                    (4, true),
                    (5, false),
                    (6, true)
                ]
            );
            assert_eq!(r.consumed(), data.len() as u64);
        }
    }

    #[test]
    fn cap_raw_keeps_whole_characters() {
        assert_eq!(cap_raw(b"abc", 5), b"abc");
        assert_eq!(cap_raw("aé".as_bytes(), 2), b"a");
        assert_eq!(cap_raw("a€b".as_bytes(), 3), b"a");
        assert_eq!(cap_raw("a€b".as_bytes(), 4), "a€".as_bytes());
        assert_eq!(cap_raw(&[0x80; 8], 4).len(), 4);
    }
}
