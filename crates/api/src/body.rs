//! Reading request bodies: one JSON object of the route's type, and the line breaks the
//! vendors' own shell recipes put into PEM and base64 fields.
//!
//! Redis Enterprise's documentation escapes a PEM file for `update_cert` with
//! `sed -z 's/\n/\\\n/g'`, which leaves a backslash followed by a real line break inside the
//! JSON string; Kyma's clients send a CSR as `"$(base64 renewal.csr)"`, which GNU base64
//! wraps with real line breaks. Neither is JSON. Inside the string values of the fields a
//! request type names ([`RequestBody::TEXT_FIELDS`]) — and nowhere else — a backslash
//! followed by a line break, or a bare line break, is read as the escape `\n`; so is the
//! lone backslash `KEY=$(sed …)` leaves before the closing quote.
use serde::de::DeserializeOwned;

/// A request body type, and which of its string fields may hold raw line breaks.
pub trait RequestBody: DeserializeOwned {
    /// Top-level or nested object keys whose string values are PEM or base64 text.
    const TEXT_FIELDS: &'static [&'static str] = &[];
}

/// Parses one JSON object of type `T`, tolerating line breaks in `T`'s text fields. serde
/// would also read a struct from an array of its fields (`[null,null]`), which is never what
/// a client means, so anything but an object is refused.
pub fn parse_object<T: RequestBody>(bytes: &[u8]) -> Result<T, String> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err("request body must be a JSON object ({…})".into());
    }
    let bytes = tolerate_line_breaks(bytes, T::TEXT_FIELDS);
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("request body is not the expected JSON: {e}"))
}

/// `body` with each raw line break (`\n`, `\r\n`), and each backslash directly before one,
/// inside the string value of a key in `fields` turned into the JSON escape `\n`. Anything
/// else, malformed or not, is left as it is for the JSON parser to judge.
pub fn tolerate_line_breaks<'a>(body: &'a [u8], fields: &[&str]) -> std::borrow::Cow<'a, [u8]> {
    let forgivable =
        body.iter().any(|b| *b == b'\n' || *b == b'\r') || body.windows(2).any(|w| w == b"\\\"");
    if fields.is_empty() || !forgivable {
        return std::borrow::Cow::Borrowed(body);
    }
    let mut out = Vec::with_capacity(body.len() + 64);
    // Whether the next string in the current object is a key, the last key read, and the
    // containers open (true: object).
    let mut containers: Vec<bool> = Vec::new();
    let mut expect_key = false;
    let mut key: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        match b {
            b'{' => {
                containers.push(true);
                expect_key = true;
            }
            b'[' => {
                containers.push(false);
                expect_key = false;
            }
            b'}' | b']' => {
                containers.pop();
                expect_key = false;
            }
            b',' => expect_key = containers.last() == Some(&true),
            b':' => expect_key = false,
            b'"' => {
                let is_key = expect_key;
                let lenient = !is_key
                    && containers.last() == Some(&true)
                    && fields.iter().any(|f| f.as_bytes() == key.as_slice());
                out.push(b'"');
                i += 1;
                let start = out.len();
                while i < body.len() && body[i] != b'"' {
                    let c = body[i];
                    let line_break = |at: usize| match body.get(at) {
                        Some(b'\n') => Some(1),
                        Some(b'\r') if body.get(at + 1) == Some(&b'\n') => Some(2),
                        _ => None,
                    };
                    if lenient
                        && c == b'\\'
                        && let Some(n) = line_break(i + 1)
                    {
                        out.extend_from_slice(b"\\n");
                        i += 1 + n;
                        continue;
                    }
                    // `KEY=$(sed -z … key.pem)` drops the last line break and leaves the
                    // backslash before it next to the closing quote; PEM and base64 never
                    // hold a quote, so there it ends the string.
                    if lenient
                        && c == b'\\'
                        && body.get(i + 1) == Some(&b'"')
                        && ends_value(body, i + 2)
                    {
                        out.extend_from_slice(b"\\n");
                        i += 1;
                        continue;
                    }
                    if lenient && let Some(n) = line_break(i) {
                        out.extend_from_slice(b"\\n");
                        i += n;
                        continue;
                    }
                    if c == b'\\' && i + 1 < body.len() {
                        out.extend_from_slice(&body[i..i + 2]);
                        i += 2;
                        continue;
                    }
                    out.push(c);
                    i += 1;
                }
                if is_key {
                    key = out[start..].to_vec();
                }
                if i < body.len() {
                    out.push(b'"');
                    i += 1;
                }
                continue;
            }
            _ => {}
        }
        out.push(b);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// Whether what follows `at`, past whitespace, closes a value (`,` or `}`).
fn ends_value(body: &[u8], at: usize) -> bool {
    let next = body[at.min(body.len())..]
        .iter()
        .find(|b| !b.is_ascii_whitespace());
    matches!(next, Some(b',' | b'}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Upload {
        name: String,
        key: String,
    }
    impl RequestBody for Upload {
        const TEXT_FIELDS: &'static [&'static str] = &["key"];
    }

    #[test]
    fn the_vendors_recipes_are_read_as_they_mean() {
        // Redis' sed recipe: a backslash before each real line break.
        let redis = b"{\"name\":\"proxy\",\"key\":\"-----BEGIN\\\nabc\\\n-----END\\\n\"}";
        let upload: Upload = parse_object(redis).unwrap();
        assert_eq!(upload.key, "-----BEGIN\nabc\n-----END\n");
        // The same through `$(…)`, which drops the last line break.
        let substituted = b"{\"name\":\"proxy\",\"key\":\"-----BEGIN\\\nabc\\\"}";
        assert_eq!(
            parse_object::<Upload>(substituted).unwrap().key,
            "-----BEGIN\nabc\n"
        );
        let first = b"{\"key\":\"abc\\\" , \"name\":\"x\"}";
        assert_eq!(parse_object::<Upload>(first).unwrap().key, "abc\n");
        // Real line breaks, CRLF too.
        let raw = b"{\"name\":\"proxy\",\"key\":\"a\r\nb\nc\"}";
        assert_eq!(parse_object::<Upload>(raw).unwrap().key, "a\nb\nc");
        // Proper JSON is untouched.
        let json = br#"{"name":"proxy","key":"a\nb"}"#;
        assert_eq!(parse_object::<Upload>(json).unwrap().key, "a\nb");
    }

    #[test]
    fn nowhere_else_is_a_line_break_forgiven() {
        let name = b"{\"name\":\"pro\nxy\",\"key\":\"k\"}";
        assert!(
            parse_object::<Upload>(name)
                .unwrap_err()
                .contains("control character")
        );
        let key_named = b"{\"na\nme\":\"x\",\"key\":\"k\"}";
        assert!(parse_object::<Upload>(key_named).is_err());
        assert!(parse_object::<Upload>(b"[\"key\",\"a\nb\"]").is_err());
        assert!(
            parse_object::<Upload>(b"{\"name\":\"x\",\"key\":\"a\\\nb\",\"extra\":1}").is_err()
        );
        // An escaped quote elsewhere is still an escaped quote.
        let quoted = b"{\"name\":\"a\\\"b\",\"key\":\"k\\\"x\"}";
        assert!(parse_object::<Upload>(quoted).is_ok_and(|u| u.name == "a\"b"));
        // A line break between tokens is whitespace, as ever.
        assert!(parse_object::<Upload>(b"{\n\"name\":\"x\",\n\"key\":\"k\"\n}").is_ok());
    }
}
