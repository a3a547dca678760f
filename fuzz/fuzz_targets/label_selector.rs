#![no_main]
//! Label selector parsing and printing over arbitrary strings.

use k3rs::apiserver::selector::LabelSelector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(sel) = LabelSelector::parse(s) {
        // What a selector prints must parse back to the same selector.
        let again = LabelSelector::parse(&sel.to_string());
        assert_eq!(again.as_ref(), Ok(&sel));
        let labels = std::collections::BTreeMap::from([("a".to_string(), "b".to_string())]);
        let _ = sel.matches(&labels);
    }
});
