//! deb822 control data: the paragraph format of Packages indices, Release files and
//! apt's `.sources` files (deb822(5)).
//!
//! Owns only the syntax: paragraphs separated by blank lines, `Name: value` fields
//! whose names compare ASCII-case-insensitively, continuation lines (starting with a
//! space or tab) that fold into the preceding field. What a field means belongs to the
//! caller (release.rs, resolve.rs, sources.rs).
//!
//! Invariants: values borrow from the input (a Packages file is ~60 MB; copying every
//! field would dominate `locker build`). The only copy is made when a `#` comment line
//! sits between the continuation lines of one value, which deb822(5) allows in
//! `.sources` files and never occurs in archive indices. A paragraph never holds the
//! same field twice (dpkg rejects that too), so a lookup has exactly one answer.

use std::borrow::Cow;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum Deb822Error {
    #[error("line {line}: continuation line with no field before it")]
    OrphanContinuation { line: usize },
    #[error("line {line}: expected `Name: value`, found {text:?}")]
    NotAField { line: usize, text: String },
    #[error("line {line}: field {name:?} appears twice in one paragraph")]
    DuplicateField { line: usize, name: String },
}

/// Whether `#` at the start of a line is a comment. deb822(5) allows comments in
/// `.sources` files; in archive indices (Packages, Release) a line starting with `#`
/// is simply malformed, so it is reported rather than silently dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// Packages, Release: no comments.
    Control,
    /// apt `.sources` files: lines starting with `#` are ignored anywhere.
    Sources,
}

/// One `Name: value` field. `value` has the first line's leading blanks and the
/// value's trailing blanks removed; continuation lines keep their `\n` and leading
/// blank so that callers can tell where lines were folded (a multi-line field such as
/// Release's `SHA256` starts with `\n` when its first line is empty). Use
/// `str::lines` or `split_whitespace` on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field<'a> {
    pub(crate) name: &'a str,
    pub(crate) value: Cow<'a, str>,
}

/// One paragraph, fields in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Paragraph<'a> {
    fields: Vec<Field<'a>>,
    /// 1-based line of the paragraph's first field, for error messages.
    line: usize,
}

impl<'a> Paragraph<'a> {
    /// The value of field `name` (ASCII case-insensitive), if present.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value.as_ref())
    }

    /// Like [`get`](Self::get), but the value borrows from the input text rather than
    /// from `self`, when it can (always for Packages/Release content).
    pub(crate) fn get_borrowed(&self, name: &str) -> Option<Cow<'a, str>> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value.clone())
    }

    /// The value as a slice of the input text, for [`Syntax::Control`] paragraphs
    /// (Packages, Release), whose values are always borrowed.
    ///
    /// # Panics
    /// On a copied value, which only a `Syntax::Sources` paragraph can hold.
    pub(crate) fn get_str(&self, name: &str) -> Option<&'a str> {
        self.get_borrowed(name).map(|v| match v {
            Cow::Borrowed(s) => s,
            Cow::Owned(_) => panic!("get_str on a Syntax::Sources value {name:?}"),
        })
    }

    /// The fields in file order.
    #[cfg(test)]
    pub(crate) fn fields(&self) -> &[Field<'a>] {
        &self.fields
    }

    /// 1-based line number of the paragraph's first field.
    pub(crate) fn line(&self) -> usize {
        self.line
    }
}

/// Iterates over the paragraphs of `text`. Lazy: a 60 MB Packages file is never held
/// as a whole vector of paragraphs unless the caller collects it.
pub(crate) fn paragraphs(text: &str, syntax: Syntax) -> Paragraphs<'_> {
    Paragraphs {
        text,
        pos: 0,
        line: 0,
        syntax,
        failed: false,
    }
}

/// Parses all of `text`, failing on the first malformed line.
pub(crate) fn parse(text: &str, syntax: Syntax) -> Result<Vec<Paragraph<'_>>, Deb822Error> {
    paragraphs(text, syntax).collect()
}

pub(crate) struct Paragraphs<'a> {
    text: &'a str,
    /// Byte offset of the next unread line.
    pos: usize,
    /// Lines consumed so far.
    line: usize,
    syntax: Syntax,
    /// After an error the iterator is fused: resynchronising would only produce
    /// misleading follow-up errors.
    failed: bool,
}

/// One line of the input: its text (without `\n` and a trailing `\r`) and the byte
/// range it occupies, so that folded values can be re-sliced from the input.
#[derive(Clone, Copy)]
struct Line<'a> {
    text: &'a str,
    start: usize,
    /// Offset just past `text` (before any `\r\n`).
    end: usize,
    /// Offset of the following line.
    next: usize,
}

impl<'a> Paragraphs<'a> {
    fn peek_line(&self) -> Option<Line<'a>> {
        if self.pos >= self.text.len() {
            return None;
        }
        let rest = &self.text[self.pos..];
        let (len, next) = match rest.find('\n') {
            Some(i) => (i, self.pos + i + 1),
            None => (rest.len(), self.text.len()),
        };
        let raw = &rest[..len];
        let text = raw.strip_suffix('\r').unwrap_or(raw);
        Some(Line {
            text,
            start: self.pos,
            end: self.pos + text.len(),
            next,
        })
    }

    fn next_line(&mut self) -> Option<Line<'a>> {
        let l = self.peek_line()?;
        self.pos = l.next;
        self.line += 1;
        Some(l)
    }

    fn is_comment(&self, line: &str) -> bool {
        self.syntax == Syntax::Sources && line.starts_with('#')
    }

    fn parse_paragraph(&mut self) -> Result<Option<Paragraph<'a>>, Deb822Error> {
        // Skip blank lines (and comments) between paragraphs.
        let first = loop {
            match self.next_line() {
                None => return Ok(None),
                Some(l) if is_blank(l.text) || self.is_comment(l.text) => continue,
                Some(l) => break l,
            }
        };
        let start_line = self.line;
        let mut fields: Vec<Field<'a>> = Vec::with_capacity(16);
        let mut current = Some(first);
        while let Some(line) = current {
            let text = line.text;
            if text.starts_with([' ', '\t']) {
                return Err(Deb822Error::OrphanContinuation { line: self.line });
            }
            let name = match text.find(':') {
                Some(colon) if colon > 0 && !text[..colon].contains([' ', '\t']) => &text[..colon],
                _ => {
                    return Err(Deb822Error::NotAField {
                        line: self.line,
                        text: text.to_string(),
                    })
                }
            };
            if fields.iter().any(|f| f.name.eq_ignore_ascii_case(name)) {
                return Err(Deb822Error::DuplicateField {
                    line: self.line,
                    name: name.to_string(),
                });
            }
            let value = self.take_value(line.start + name.len() + 1, line.end);
            fields.push(Field { name, value });
            // Next field line, or the end of the paragraph.
            current = loop {
                match self.peek_line() {
                    None => break None,
                    Some(l) if is_blank(l.text) => break None,
                    Some(l) if self.is_comment(l.text) => {
                        self.next_line();
                    }
                    Some(_) => break self.next_line(),
                }
            };
        }
        Ok(Some(Paragraph {
            fields,
            line: start_line,
        }))
    }

    /// The value whose first line is `text[start..end]` (just after the colon),
    /// extended over any continuation lines. One slice of the input unless a comment
    /// line interrupts it.
    fn take_value(&mut self, start: usize, mut end: usize) -> Cow<'a, str> {
        let text = self.text;
        let mut owned: Option<String> = None;
        while let Some(next) = self.peek_line() {
            if self.is_comment(next.text) {
                // Dropped only if a continuation follows; otherwise the comment ends
                // the field and the paragraph loop skips it.
                let continues = text[next.next..]
                    .split('\n')
                    .find(|l| !l.starts_with('#'))
                    .is_some_and(|l| l.starts_with([' ', '\t']) && !is_blank(l));
                if !continues {
                    break;
                }
                self.next_line();
                owned.get_or_insert_with(|| text[start..end].to_string());
                continue;
            }
            // A whitespace-only line separates paragraphs (deb822(5)); it is not an
            // empty continuation.
            if !next.text.starts_with([' ', '\t']) || is_blank(next.text) {
                break;
            }
            self.next_line();
            match owned.as_mut() {
                Some(s) => {
                    s.push('\n');
                    s.push_str(next.text);
                }
                None => end = next.end,
            }
        }
        match owned {
            Some(s) => Cow::Owned(s.trim_matches(BLANKS).to_string()),
            None => Cow::Borrowed(text[start..end].trim_matches(BLANKS)),
        }
    }
}

/// Leading blanks of the first line and trailing blanks of the last are not part of
/// a value; a `\r` can only remain inside a folded CRLF value, which we leave alone.
const BLANKS: &[char] = &[' ', '\t'];

fn is_blank(line: &str) -> bool {
    line.bytes().all(|b| b == b' ' || b == b'\t')
}

impl<'a> Iterator for Paragraphs<'a> {
    type Item = Result<Paragraph<'a>, Deb822Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.parse_paragraph() {
            Ok(p) => p.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_case_insensitively() {
        let ps = parse(
            "Package: foo\nVERSION: 1.0\nmulti-arch: same\n",
            Syntax::Control,
        )
        .unwrap();
        assert_eq!(ps.len(), 1);
        let p = &ps[0];
        assert_eq!(p.get("package"), Some("foo"));
        assert_eq!(p.get("Version"), Some("1.0"));
        assert_eq!(p.get("Multi-Arch"), Some("same"));
        assert_eq!(p.get("Depends"), None);
        assert_eq!(p.fields()[1].name, "VERSION", "names keep their spelling");
        assert_eq!(p.line(), 1);
    }

    #[test]
    fn splits_paragraphs_on_blank_lines_including_whitespace_only() {
        let text = "\n\nA: 1\n\nA: 2\n \t\nA: 3\n\n\n";
        let ps = parse(text, Syntax::Control).unwrap();
        let values: Vec<_> = ps.iter().map(|p| p.get("a").unwrap()).collect();
        assert_eq!(values, ["1", "2", "3"]);
        assert_eq!(ps[0].line(), 3);
        assert_eq!(ps[1].line(), 5);
        assert_eq!(ps[2].line(), 7);
    }

    #[test]
    fn folds_continuation_lines_without_copying() {
        let text = "Description: short\n long line one\n .\n\tline two\nB: x\n";
        let ps = parse(text, Syntax::Control).unwrap();
        let d = ps[0].get_borrowed("description").unwrap();
        assert!(matches!(d, Cow::Borrowed(_)));
        assert_eq!(ps[0].get_str("Description"), Some(d.as_ref()));
        assert_eq!(d, "short\n long line one\n .\n\tline two");
        assert_eq!(ps[0].get("b"), Some("x"));
    }

    #[test]
    fn multiline_value_with_empty_first_line() {
        let text = "SHA256:\n aa 1 main/x\n bb 2 main/y\nSuite: s\n";
        let ps = parse(text, Syntax::Control).unwrap();
        let v = ps[0].get("sha256").unwrap();
        let lines: Vec<_> = v.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert_eq!(lines, ["aa 1 main/x", "bb 2 main/y"]);
    }

    #[test]
    fn trims_value_blanks_and_handles_crlf_and_missing_final_newline() {
        let ps = parse("A:   spaced  \r\nB:\t\ttab\r\n\r\nC: end", Syntax::Control).unwrap();
        assert_eq!(ps[0].get("a"), Some("spaced"));
        assert_eq!(ps[0].get("b"), Some("tab"));
        assert_eq!(ps[1].get("c"), Some("end"));
    }

    #[test]
    fn value_may_contain_colons_and_be_empty() {
        let ps = parse(
            "URIs: http://h/x\nEmpty:\nVersion: 1:2.0-1\n",
            Syntax::Control,
        )
        .unwrap();
        assert_eq!(ps[0].get("uris"), Some("http://h/x"));
        assert_eq!(ps[0].get("empty"), Some(""));
        assert_eq!(ps[0].get("version"), Some("1:2.0-1"));
    }

    #[test]
    fn sources_syntax_skips_comments_everywhere() {
        let text = "# leading\nTypes: deb\n# inside a paragraph\nURIs: http://h/d\n\
                    Suites: a\n# between continuation lines\n b\n#trailing\n\n# only comment\n\n\
                    Types: deb-src\n";
        let ps = parse(text, Syntax::Sources).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("types"), Some("deb"));
        assert_eq!(ps[0].get("uris"), Some("http://h/d"));
        let suites: Vec<_> = ps[0].get("suites").unwrap().split_whitespace().collect();
        assert_eq!(suites, ["a", "b"]);
        assert_eq!(ps[1].get("types"), Some("deb-src"));
    }

    #[test]
    fn consecutive_comments_inside_a_folded_value() {
        let text = "Suites: a\n# one\n#two\n b\n#three\n\n";
        let ps = parse(text, Syntax::Sources).unwrap();
        assert_eq!(ps[0].get("suites"), Some("a\n b"));
        let ps = parse("A: x\n# c\n \t\nB: y\n", Syntax::Sources).unwrap();
        assert_eq!(
            ps.len(),
            2,
            "a blank line after a comment still ends the paragraph"
        );
        assert!(matches!(ps[0].get_borrowed("a"), Some(Cow::Borrowed("x"))));
    }

    #[test]
    fn control_syntax_rejects_comment_lines() {
        let err = parse("A: 1\n# no comments here\n", Syntax::Control).unwrap_err();
        assert_eq!(
            err,
            Deb822Error::NotAField {
                line: 2,
                text: "# no comments here".into()
            }
        );
    }

    #[test]
    fn reports_malformed_lines_with_line_numbers() {
        assert_eq!(
            parse("A: 1\n\n continuation\n", Syntax::Control).unwrap_err(),
            Deb822Error::OrphanContinuation { line: 3 }
        );
        assert_eq!(
            parse("A: 1\nno colon\n", Syntax::Control).unwrap_err(),
            Deb822Error::NotAField {
                line: 2,
                text: "no colon".into()
            }
        );
        assert!(matches!(
            parse(": value\n", Syntax::Control).unwrap_err(),
            Deb822Error::NotAField { line: 1, .. }
        ));
        assert!(matches!(
            parse("Two words: value\n", Syntax::Control).unwrap_err(),
            Deb822Error::NotAField { line: 1, .. }
        ));
        assert_eq!(
            parse("A: 1\nB: 2\na: 3\n", Syntax::Control).unwrap_err(),
            Deb822Error::DuplicateField {
                line: 3,
                name: "a".into()
            }
        );
    }

    #[test]
    fn iterator_stops_after_first_error() {
        let mut it = paragraphs("A: 1\n\nbad\n\nA: 2\n", Syntax::Control);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn empty_and_blank_inputs_have_no_paragraphs() {
        assert!(parse("", Syntax::Control).unwrap().is_empty());
        assert!(parse("\n \n\t\n", Syntax::Control).unwrap().is_empty());
        assert!(parse("# c\n\n# d", Syntax::Sources).unwrap().is_empty());
    }

    /// A synthetic Packages file shaped like a real one (~1.2 KB per paragraph).
    pub(crate) fn synthetic_packages(n: usize) -> String {
        let mut s = String::with_capacity(n * 1300);
        for i in 0..n {
            s.push_str(&format!(
                "Package: pkg{i}\nSource: src{i}\nVersion: 1:{i}.2.3-4+deb12u1\n\
                 Installed-Size: {i}\nMaintainer: Someone <someone@example.invalid>\n\
                 Architecture: amd64\nMulti-Arch: same\n\
                 Depends: libc6 (>= 2.34), libfoo{i} (= 1.0), bar | baz (>> 2)\n\
                 Pre-Depends: dpkg (>= 1.15)\nProvides: virt{i} (= 1.0)\n\
                 Description: synthetic package {i}\n\
                 Description-md5: 0123456789abcdef0123456789abcdef\n\
                 Homepage: https://example.invalid/{i}\nTag: role::program, devel::lang:c\n\
                 Section: libs\nPriority: optional\n\
                 Filename: pool/main/p/pkg{i}/pkg{i}_{i}.2.3-4_amd64.deb\nSize: {i}000\n\
                 MD5sum: 0123456789abcdef0123456789abcdef\n\
                 SHA256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\n"
            ));
        }
        s
    }

    #[test]
    fn parse_time_of_50k_paragraphs() {
        let text = synthetic_packages(50_000);
        let start = std::time::Instant::now();
        let mut count = 0;
        let mut found = 0;
        for p in paragraphs(&text, Syntax::Control) {
            let p = p.unwrap();
            count += 1;
            found += p.get("sha256").is_some() as usize;
        }
        let elapsed = start.elapsed();
        assert_eq!(count, 50_000);
        assert_eq!(found, 50_000);
        println!(
            "deb822: parsed {count} paragraphs ({:.1} MB) in {elapsed:?}",
            text.len() as f64 / 1e6
        );
        // Generous bound so debug builds on a loaded machine pass; the target (< 300 ms)
        // is for release builds: `cargo test --release build::deb822 -- --nocapture`.
        assert!(elapsed.as_secs() < 20, "deb822 parse too slow: {elapsed:?}");
    }
}
