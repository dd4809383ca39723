//! Mutated environment files: loading never panics, whatever the bytes, and
//! every refusal carries a position inside the file and a short message.
//! (A bounded property test; the render-side fuzz target lives elsewhere.)

use std::path::Path;

use proptest::prelude::*;

fn base() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join("environments/staging.yaml")).unwrap()
}

/// Characters that YAML, the decoder or a later format treats specially.
const SPECIAL: [&str; 24] = [
    ":",
    "-",
    " ",
    "\t",
    "\n",
    "\r\n",
    "#",
    "&a",
    "*a",
    "<<: *a",
    "!!str",
    "'",
    "\"",
    "{",
    "}",
    "[",
    "]",
    "\u{a0}",
    "\u{0}",
    "99999999999999999999",
    "-1",
    "0s",
    "é",
    "---\n",
];

fn mutate(text: &str, edits: &[(usize, usize, usize)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for &(at, what, kind) in edits {
        let at = at % (chars.len() + 1);
        match kind % 3 {
            0 => {
                let s: Vec<char> = SPECIAL[what % SPECIAL.len()].chars().collect();
                chars.splice(at..at, s);
            }
            1 if at < chars.len() => {
                chars.remove(at);
            }
            _ => {
                // Duplicate a slice of lines elsewhere (keys repeated, sections moved).
                let from = what % (chars.len() + 1);
                let to = (from + 40).min(chars.len());
                let piece: Vec<char> = chars[from..to].to_vec();
                chars.splice(at..at, piece);
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn loading_a_mutated_file_never_panics(edits in proptest::collection::vec((0usize..10_000, 0usize..10_000, 0usize..3), 1..6)) {
        let text = mutate(&base(), &edits);
        let lines = text.split('\n').count() as u32;
        let result = fabrs_config::load_str(&text, Path::new("mutated.yaml"), Path::new("/nonexistent-project"));
        if let Err(d) = result {
            // A refusal names a reason, not the catch-all for a decoder that gave up silently.
            prop_assert!(
                d.diagnostics.iter().any(|x| x.message != "the file could not be read as an environment"),
                "refused without a reason"
            );
            for x in &d.diagnostics {
                prop_assert!(x.loc.line >= 1 && x.loc.line <= lines.max(1), "line {} of {lines}: {}", x.loc.line, x.short());
                prop_assert!(x.loc.col >= 1, "{}", x.short());
                prop_assert!(x.short().len() < 1000, "{}", x.short());
            }
            let _ = d.render();
        }
    }
}
