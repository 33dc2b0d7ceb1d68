//! The import parser on arbitrary bytes read as JSONL: no panic, every row on a line of the input
//! (counted from 1), every rejection with a reason.
#![no_main]

use envshare::import::{Format, Records, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(data, Format::Jsonl));

fn check(data: &[u8], format: Format) {
    let lines = data.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let first_row = if format == Format::Csv { 2 } else { 1 };
    match Records::new(data, format) {
        Err(e) => assert!(!e.to_string().trim().is_empty()),
        Ok(records) => {
            let mut last = 0;
            for record in records {
                let Ok(record) = record else { break };
                assert!((first_row..=lines).contains(&record.line) && record.line >= last);
                last = record.line;
                match record.pairs {
                    Ok(pairs) => assert!(!pairs.is_empty()),
                    Err(reason) => assert!(!reason.trim().is_empty()),
                }
            }
        }
    }
    if let Ok(v) = validate(data, format, 10, 20) {
        assert_eq!(v.rows, v.valid_rows + v.invalid_rows);
    }
}
