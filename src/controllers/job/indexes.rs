//! Completion indexes of an Indexed Job as sets, and upstream's compressed text form of
//! them (`status.completedIndexes`, `status.failedIndexes`, a success rule's
//! `succeededIndexes`): ascending intervals joined by commas, `3-5` for a run of three or
//! more and `1,2` for a run of two.

use std::collections::BTreeSet;

/// A set of completion indexes.
pub type Indexes = BTreeSet<i32>;

/// The indexes below `completions` that `text` names; malformed parts and indexes out of
/// range are left out, as upstream's parser skips them.
pub fn parse(text: &str, completions: i32) -> Indexes {
    let mut out = Indexes::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<i32>(), b.trim().parse::<i32>()) {
                (Ok(a), Ok(b)) => (a, b),
                _ => continue,
            },
            None => match part.parse::<i32>() {
                Ok(v) => (v, v),
                Err(_) => continue,
            },
        };
        if first < 0 || last < first {
            continue;
        }
        out.extend(first..=last.min(completions - 1));
    }
    out
}

/// The compressed text of `set`.
pub fn format(set: &Indexes) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        parts.push(match last - first {
            0 => first.to_string(),
            1 => format!("{first},{last}"),
            _ => format!("{first}-{last}"),
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_round_trip_as_upstream_writes_them() {
        let cases: &[(&str, i32, &[i32], &str)] = &[
            ("", 5, &[], ""),
            ("0", 5, &[0], "0"),
            ("1,3-5", 10, &[1, 3, 4, 5], "1,3-5"),
            ("1-2", 10, &[1, 2], "1,2"),
            ("0-2,4,6-9", 10, &[0, 1, 2, 4, 6, 7, 8, 9], "0-2,4,6-9"),
            // Out of range and malformed parts are dropped.
            ("3-7,x,9", 5, &[3, 4], "3,4"),
            ("5-3,-1", 10, &[], ""),
        ];
        for (text, completions, want, formatted) in cases {
            let set = parse(text, *completions);
            assert_eq!(set.iter().copied().collect::<Vec<_>>(), *want, "{text}");
            assert_eq!(format(&set), *formatted, "{text}");
        }
    }
}
