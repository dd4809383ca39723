//! The bytes of an environment file → text fit for the YAML parser, or
//! diagnostics with a position and a plain word: the file is too big, is not
//! UTF-8 (Latin-1, UTF-16), or holds characters that look like spaces but are
//! not (a non-breaking space in the indentation).

use crate::diag::Loc;

/// An environment file is a few kilobytes; anything past this is a wrong file
/// (or an attack on the parser) and is refused before parsing.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// One problem found before parsing.
#[derive(Debug)]
pub struct TextError {
    pub loc: Loc,
    pub message: String,
    pub hint: String,
}

fn at(line: u32, col: u32) -> Loc {
    Loc { line, col, len: 1 }
}

fn size_error(len: usize) -> TextError {
    TextError {
        loc: at(1, 1),
        message: format!(
            "the file is {} bytes; an environment file is at most {} bytes (1 MiB)",
            len, MAX_FILE_BYTES
        ),
        hint: "is this the right file? environment files are a few kilobytes".into(),
    }
}

/// Bytes → text: refuses huge files, UTF-16/UTF-32 and invalid UTF-8 (with the
/// line and column of the first bad byte); drops a UTF-8 byte order mark.
pub fn decode(bytes: &[u8]) -> Result<String, TextError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(size_error(bytes.len()));
    }
    let utf16 = bytes.starts_with(&[0xFF, 0xFE])
        || bytes.starts_with(&[0xFE, 0xFF])
        // No byte order mark: ASCII text in UTF-16 has a NUL in every other byte.
        || (bytes.len() >= 4 && (bytes[1] == 0 && bytes[3] == 0 || bytes[0] == 0 && bytes[2] == 0));
    if utf16 {
        return Err(TextError {
            loc: at(1, 1),
            message: "the file is UTF-16 encoded; fabrs reads environment files as UTF-8".into(),
            hint: "save the file as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8 in.yaml > out.yaml`)".into(),
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            // The prefix is valid UTF-8 by construction.
            let good = std::str::from_utf8(good).unwrap_or_default();
            let line = good.matches('\n').count() as u32 + 1;
            let col = good.rsplit('\n').next().unwrap_or("").chars().count() as u32 + 1;
            let byte = bytes[e.valid_up_to()];
            Err(TextError {
                loc: at(line, col),
                message: format!(
                    "byte 0x{byte:02X} is not valid UTF-8; fabrs reads environment files as UTF-8 \
                     (this one looks Latin-1 or Windows-1252 encoded)"
                ),
                hint: "save the file as UTF-8 (e.g. `iconv -f latin1 -t UTF-8 in.yaml > out.yaml`)".into(),
            })
        }
    }
}

/// Characters that look like a space but are not one to YAML.
fn space_lookalike(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{00A0}' => "a non-breaking space (U+00A0)",
        '\u{2007}' => "a figure space (U+2007)",
        '\u{202F}' => "a narrow non-breaking space (U+202F)",
        '\u{2000}'..='\u{200A}' => "a typographic space (U+2000–U+200A)",
        '\u{200B}' => "a zero-width space (U+200B)",
        '\u{3000}' => "an ideographic space (U+3000)",
        '\u{FEFF}' => "a zero-width no-break space (U+FEFF)",
        _ => return None,
    })
}

/// Checks on the text before parsing: its size, control characters, and
/// look-alike spaces where YAML needs real ones (indentation, after `:`/`-`),
/// which would otherwise surface as confusing errors lines away.
pub fn check(source: &str) -> Vec<TextError> {
    if source.len() > MAX_FILE_BYTES {
        return vec![size_error(source.len())];
    }
    let mut out = Vec::new();
    for (i, line) in source.split('\n').enumerate() {
        let line_no = i as u32 + 1;
        let mut indent = true;
        let mut prev: Option<char> = None;
        let mut dash_item = false;
        for (j, c) in line.chars().enumerate() {
            let col = j as u32 + 1;
            if c.is_control() && !matches!(c, '\t' | '\r') {
                out.push(TextError {
                    loc: at(line_no, col),
                    message: format!("control character U+{:04X} in the file", c as u32),
                    hint: "environment files are plain text; remove the character".into(),
                });
                break;
            }
            let separator = indent || prev == Some(':') || (prev == Some('-') && dash_item);
            if let (true, Some(what)) = (separator, space_lookalike(c)) {
                out.push(TextError {
                    loc: at(line_no, col),
                    message: format!(
                        "{what} {} where YAML needs a plain space",
                        if indent {
                            "in the indentation"
                        } else {
                            "after `:` or `-`"
                        }
                    ),
                    hint: "retype it as an ordinary space (often pasted from a web page or a word processor)".into(),
                });
                break;
            }
            dash_item = indent && c == '-';
            if c != ' ' && c != '\t' && space_lookalike(c).is_none() {
                indent = false;
            }
            prev = Some(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_is_placed() {
        let e = decode(b"a: 1\nname: Caf\xe9\n").unwrap_err();
        assert_eq!((e.loc.line, e.loc.col), (2, 10));
        assert!(e.message.contains("UTF-8"), "{}", e.message);
    }

    #[test]
    fn utf16_is_named() {
        let bytes: Vec<u8> = "a: 1\n".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        assert!(decode(&bytes).unwrap_err().message.contains("UTF-16"));
        let mut bom = vec![0xFF, 0xFE];
        bom.extend(&bytes);
        assert!(decode(&bom).unwrap_err().message.contains("UTF-16"));
    }

    #[test]
    fn bom_is_dropped_and_size_capped() {
        assert_eq!(decode(b"\xEF\xBB\xBFa: 1\n").unwrap(), "a: 1\n");
        assert!(decode(&vec![b'a'; MAX_FILE_BYTES + 1]).is_err());
    }

    #[test]
    fn lookalike_spaces() {
        let e = check("a:\n\u{a0}\u{a0}b: 1\n");
        assert_eq!((e[0].loc.line, e[0].loc.col), (2, 1));
        let e = check("a:\u{a0}1\n");
        assert_eq!((e[0].loc.line, e[0].loc.col), (1, 3));
        // Inside a value, a non-breaking space is just a character.
        assert!(check("tags: { team: R&D\u{a0}photos }\n").is_empty());
    }
}
