//! Debian package versions and dependency relations, as dpkg defines them
//! (deb-version(7), deb-control(5), Debian Policy §5.6.12 and §7.1).
//!
//! Owns: parsing `[epoch:]upstream[-revision]` and ordering versions exactly as
//! `dpkg --compare-versions` does; parsing relation fields (`Depends`, `Pre-Depends`,
//! `Provides`) into alternatives of `name[:arch] [(op version)] [[arches]]`.
//! Build profiles (`<...>`) only matter for source packages and are skipped.
//!
//! Invariants: a `Version` borrows its parts from the input; equality is dpkg
//! equality (`1.0` == `1.00`, `1.0` == `1.0-0`), so `Version` implements `Ord` but not
//! `Hash`.

use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum VersionError {
    #[error("version {0:?}: empty")]
    Empty(String),
    #[error("version {0:?}: epoch is not a number")]
    BadEpoch(String),
    #[error("version {0:?}: upstream version is empty")]
    EmptyUpstream(String),
    #[error("version {0:?}: revision is empty")]
    EmptyRevision(String),
    #[error("version {version:?}: invalid character {ch:?}")]
    BadChar { version: String, ch: char },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum RelationError {
    #[error("relation {relation:?}: missing package name")]
    MissingName { relation: String },
    #[error("relation {relation:?}: invalid package name {name:?}")]
    BadName { relation: String, name: String },
    #[error("relation {relation:?}: unknown operator {op:?} (want <<, <=, =, >=, >>)")]
    BadOperator { relation: String, op: String },
    #[error("relation {relation:?}: unbalanced {bracket:?}")]
    Unbalanced { relation: String, bracket: char },
    #[error("relation {relation:?}: unexpected text {text:?}")]
    Trailing { relation: String, text: String },
    #[error("relation {relation:?}: {source}")]
    Version {
        relation: String,
        #[source]
        source: VersionError,
    },
    #[error("provides {relation:?}: only `=` may version a Provides entry")]
    ProvidesOperator { relation: String },
    #[error("provides {relation:?}: alternatives (`|`) are not allowed")]
    ProvidesAlternative { relation: String },
}

/// A parsed `[epoch:]upstream[-revision]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Version<'a> {
    pub(crate) epoch: u64,
    pub(crate) upstream: &'a str,
    /// Empty when the version has no `-`; dpkg orders that like `0`.
    pub(crate) revision: &'a str,
}

impl<'a> Version<'a> {
    /// Parses as dpkg's `parseversion` does, strictly: the epoch is digits, upstream
    /// and revision are non-empty and use only the characters policy allows.
    pub(crate) fn parse(s: &'a str) -> Result<Self, VersionError> {
        let err_s = || s.to_string();
        let v = s.trim();
        if v.is_empty() {
            return Err(VersionError::Empty(err_s()));
        }
        let (epoch, rest) = match v.split_once(':') {
            Some((e, rest)) => {
                if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(VersionError::BadEpoch(err_s()));
                }
                let epoch = e.parse().map_err(|_| VersionError::BadEpoch(err_s()))?;
                (epoch, rest)
            }
            None => (0, v),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => {
                if r.is_empty() {
                    return Err(VersionError::EmptyRevision(err_s()));
                }
                (u, r)
            }
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(VersionError::EmptyUpstream(err_s()));
        }
        // Policy: upstream [A-Za-z0-9.+~-], revision [A-Za-z0-9.+~]. dpkg only warns
        // about a non-digit first character, so we accept it too (old archives).
        let ok_up = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | '-');
        let ok_rev = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~');
        if let Some(ch) = upstream.chars().find(|&c| !ok_up(c)) {
            return Err(VersionError::BadChar {
                version: err_s(),
                ch,
            });
        }
        if let Some(ch) = revision.chars().find(|&c| !ok_rev(c)) {
            return Err(VersionError::BadChar {
                version: err_s(),
                ch,
            });
        }
        Ok(Version {
            epoch,
            upstream,
            revision,
        })
    }
}

impl Ord for Version<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream, other.upstream))
            .then_with(|| verrevcmp(self.revision, other.revision))
    }
}

impl PartialOrd for Version<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version<'_> {}

impl fmt::Display for Version<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(self.upstream)?;
        if !self.revision.is_empty() {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

/// Compares two version strings as `dpkg --compare-versions` does.
#[cfg(test)]
pub(crate) fn compare(a: &str, b: &str) -> Result<Ordering, VersionError> {
    Ok(Version::parse(a)?.cmp(&Version::parse(b)?))
}

/// dpkg's character weight in the non-digit parts: `~` sorts before everything,
/// even the end of the part; letters sort before non-letters.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(b'~') => -1,
        Some(c) => c as i32 + 256,
    }
}

/// dpkg's `verrevcmp` (lib/dpkg/version.c): alternate non-digit runs (compared by
/// [`order`]) and digit runs (compared numerically, leading zeros ignored).
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let is_digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !is_digit(a, i)) || (j < b.len() && !is_digit(b, j)) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while is_digit(a, i) && is_digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if is_digit(a, i) {
            return Ordering::Greater;
        }
        if is_digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// A relation operator. dpkg still accepts the obsolete `<` and `>`, meaning `<=`
/// and `>=`; we map them the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<<" => Op::Lt,
            "<=" | "<" => Op::Le,
            "=" => Op::Eq,
            ">=" | ">" => Op::Ge,
            ">>" => Op::Gt,
            _ => return None,
        })
    }

    /// Whether `candidate OP wanted` holds.
    pub(crate) fn allows(self, candidate: &Version<'_>, wanted: &Version<'_>) -> bool {
        let ord = candidate.cmp(wanted);
        match self {
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
            Op::Eq => ord == Ordering::Equal,
            Op::Ge => ord != Ordering::Less,
            Op::Gt => ord == Ordering::Greater,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }
}

/// The architecture qualifier after `name:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArchQualifier<'a> {
    /// `name:any`: any architecture, if the target is `Multi-Arch: allowed`.
    Any,
    /// `name:native`.
    Native,
    /// `name:amd64` and the like.
    Arch(&'a str),
}

/// One `name[:arch] [(op version)] [[arch list]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Relation<'a> {
    pub(crate) name: &'a str,
    pub(crate) arch: Option<ArchQualifier<'a>>,
    pub(crate) constraint: Option<(Op, Version<'a>)>,
    /// Architecture restriction list (`[amd64 !i386]`), raw between the brackets.
    /// Binary packages never carry one, but source-style fields do.
    pub(crate) arches: Option<&'a str>,
}

impl Relation<'_> {
    /// Whether the `[...]` restriction (if any) includes `arch`, as dpkg evaluates it:
    /// a list of negated entries excludes, a list of plain entries includes.
    pub(crate) fn applies_to(&self, arch: &str) -> bool {
        let Some(list) = self.arches else {
            return true;
        };
        let mut any_positive = false;
        for entry in list.split_whitespace() {
            match entry.strip_prefix('!') {
                Some(neg) => {
                    if arch_matches(neg, arch) {
                        return false;
                    }
                }
                None => {
                    any_positive = true;
                    if arch_matches(entry, arch) {
                        return true;
                    }
                }
            }
        }
        !any_positive
    }
}

/// Matches an architecture or a Linux wildcard (`any`, `linux-any`, `any-<cpu>`).
/// locker only builds Linux images, so the OS part of a wildcard is always `linux`.
fn arch_matches(pattern: &str, arch: &str) -> bool {
    pattern == arch
        || pattern == "any"
        || pattern == "linux-any"
        || pattern.strip_prefix("any-") == Some(arch)
        || pattern.strip_prefix("linux-") == Some(arch)
}

impl fmt::Display for Relation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        match self.arch {
            Some(ArchQualifier::Any) => f.write_str(":any")?,
            Some(ArchQualifier::Native) => f.write_str(":native")?,
            Some(ArchQualifier::Arch(a)) => write!(f, ":{a}")?,
            None => {}
        }
        if let Some((op, v)) = &self.constraint {
            write!(f, " ({} {v})", op.as_str())?;
        }
        if let Some(a) = self.arches {
            write!(f, " [{a}]")?;
        }
        Ok(())
    }
}

/// One comma-separated entry of a relation field: alternatives separated by `|`.
pub(crate) type Alternatives<'a> = Vec<Relation<'a>>;

/// Parses a `Depends`-style field: `a (>= 1.0) | b, c:any, d [amd64] <!nocheck>`.
/// Empty entries (a trailing comma, folded lines) are skipped, as dpkg does.
pub(crate) fn parse_relations(field: &str) -> Result<Vec<Alternatives<'_>>, RelationError> {
    let mut out = Vec::new();
    for entry in field.split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        let alts = entry
            .split('|')
            .map(parse_relation)
            .collect::<Result<Vec<_>, _>>()?;
        out.push(alts);
    }
    Ok(out)
}

/// Parses a `Provides` field: no alternatives, and a version only with `=`
/// (dpkg ≥ 1.17.11 honours such versioned provides).
pub(crate) fn parse_provides(field: &str) -> Result<Vec<Relation<'_>>, RelationError> {
    let mut out = Vec::new();
    for mut alts in parse_relations(field)? {
        if alts.len() != 1 {
            return Err(RelationError::ProvidesAlternative {
                relation: alts
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" | "),
            });
        }
        let rel = alts.pop().expect("one alternative");
        if matches!(rel.constraint, Some((op, _)) if op != Op::Eq) {
            return Err(RelationError::ProvidesOperator {
                relation: rel.to_string(),
            });
        }
        out.push(rel);
    }
    Ok(out)
}

/// Parses one relation, `name[:arch] [(op version)] [[arches]] [<profiles>...]`.
fn parse_relation(text: &str) -> Result<Relation<'_>, RelationError> {
    let whole = || text.trim().to_string();
    let mut rest = text.trim_start();
    let name_end = rest
        .find(|c: char| c.is_whitespace() || matches!(c, '(' | '[' | '<'))
        .unwrap_or(rest.len());
    let full_name = &rest[..name_end];
    rest = rest[name_end..].trim_start();
    if full_name.is_empty() {
        return Err(RelationError::MissingName { relation: whole() });
    }
    let (name, arch) = match full_name.split_once(':') {
        Some((n, "any")) => (n, Some(ArchQualifier::Any)),
        Some((n, "native")) => (n, Some(ArchQualifier::Native)),
        Some((n, a)) => (n, Some(ArchQualifier::Arch(a))),
        None => (full_name, None),
    };
    // dpkg's pkg_name_is_illegal: an alphanumeric, then alphanumerics and `+-.`.
    // (Policy §5.6.1 is stricter — lowercase, two characters — but dpkg is what
    // decides whether an archive installs.)
    let name_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let arch_ok = match arch {
        Some(ArchQualifier::Arch(a)) => {
            !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        }
        _ => true,
    };
    if !name_ok || !arch_ok {
        return Err(RelationError::BadName {
            relation: whole(),
            name: full_name.to_string(),
        });
    }

    let mut constraint = None;
    if let Some(inner) = rest.strip_prefix('(') {
        let close = inner.find(')').ok_or_else(|| RelationError::Unbalanced {
            relation: whole(),
            bracket: '(',
        })?;
        let body = inner[..close].trim();
        rest = inner[close + 1..].trim_start();
        let op_len = body
            .find(|c: char| !matches!(c, '<' | '>' | '='))
            .unwrap_or(body.len());
        let op_text = &body[..op_len];
        let op = Op::parse(op_text).ok_or_else(|| RelationError::BadOperator {
            relation: whole(),
            op: op_text.to_string(),
        })?;
        let version =
            Version::parse(body[op_len..].trim()).map_err(|source| RelationError::Version {
                relation: whole(),
                source,
            })?;
        constraint = Some((op, version));
    }

    let mut arches = None;
    if let Some(inner) = rest.strip_prefix('[') {
        let close = inner.find(']').ok_or_else(|| RelationError::Unbalanced {
            relation: whole(),
            bracket: '[',
        })?;
        arches = Some(inner[..close].trim());
        rest = inner[close + 1..].trim_start();
    }

    // Build profiles: any number of `<...>` groups, ignored for binary packages.
    while let Some(inner) = rest.strip_prefix('<') {
        let close = inner.find('>').ok_or_else(|| RelationError::Unbalanced {
            relation: whole(),
            bracket: '<',
        })?;
        rest = inner[close + 1..].trim_start();
    }

    if !rest.is_empty() {
        return Err(RelationError::Trailing {
            relation: whole(),
            text: rest.to_string(),
        });
    }
    Ok(Relation {
        name,
        arch,
        constraint,
        arches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::{Equal, Greater, Less};

    fn cmp(a: &str, b: &str) -> Ordering {
        compare(a, b).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Cases after dpkg's t/version.t and lib/dpkg/t/t-version.c semantics.
    #[test]
    fn compares_like_dpkg() {
        let cases = [
            ("1.0~rc1", "1.0", Less),
            ("1:0.1", "2.0", Greater),
            ("1.0-1", "1.0-1.1", Less),
            ("1.0+b1", "1.0", Greater),
            ("2.0", "2.0a", Less),
            ("1.0a", "1.0b", Less),
            ("1.0", "1.0", Equal),
            ("1.0", "1.00", Equal),
            ("1.0", "1.0-0", Equal),
            ("0:1.0", "1.0", Equal),
            ("1.0-1", "1.0-2", Less),
            ("1.2.3", "1.2.10", Less),
            ("1.10", "1.9", Greater),
            ("1.001", "1.1", Equal),
            ("1.0", "1.0.0", Less),
            ("1.0a", "1.0.", Less), // letters sort before non-letters
            ("1.0+", "1.0.", Less), // '+' (43) before '.' (46)
            ("1.0~", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0~~a", "1.0~", Less),
            ("1.0~~", "1.0~~a", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0~beta", "1.0~rc", Less),
            ("2:1.0", "1:9.9", Greater),
            ("10:1", "9:1", Greater),
            ("1.0-1ubuntu1", "1.0-1", Greater),
            ("1.0-1~bpo1", "1.0-1", Less),
            ("1.0-1+deb12u1", "1.0-1", Greater),
            ("1.2-3-4", "1.2-3", Greater), // upstream "1.2-3" with revision "4"
            ("a", "b", Less),
            ("7.6p2-4", "7.6-0", Greater),
            ("1:1.0", "1:1.0", Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(cmp(a, b), want, "{a} vs {b}");
            assert_eq!(cmp(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn tilde_orders_before_end_within_parts() {
        // ~~ < ~~a < ~ < (empty), in upstream and in revision.
        let ordered = ["1.0~~", "1.0~~a", "1.0~", "1.0"];
        for w in ordered.windows(2) {
            assert_eq!(cmp(w[0], w[1]), Less, "{} < {}", w[0], w[1]);
        }
        let revs = ["1-~~", "1-~~a", "1-~", "1-0"];
        for w in revs.windows(2) {
            assert_eq!(cmp(w[0], w[1]), Less, "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn sorting_is_a_total_order() {
        let mut vs: Vec<_> = ["1.0", "1.0~rc1", "1:0.1", "0.9", "1.0-1", "1.0+b1", "1.0a"]
            .iter()
            .map(|s| Version::parse(s).unwrap())
            .collect();
        vs.sort();
        let shown: Vec<_> = vs.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["0.9", "1.0~rc1", "1.0", "1.0-1", "1.0a", "1.0+b1", "1:0.1"]
        );
    }

    #[test]
    fn parses_parts() {
        let v = Version::parse("2:1.2-3-4ubuntu1").unwrap();
        assert_eq!((v.epoch, v.upstream, v.revision), (2, "1.2-3", "4ubuntu1"));
        let v = Version::parse(" 1.0 ").unwrap();
        assert_eq!((v.epoch, v.upstream, v.revision), (0, "1.0", ""));
        assert_eq!(Version::parse("1:2.0-1").unwrap().to_string(), "1:2.0-1");
    }

    #[test]
    fn rejects_bad_versions() {
        assert!(matches!(Version::parse(""), Err(VersionError::Empty(_))));
        assert!(matches!(
            Version::parse("a:1"),
            Err(VersionError::BadEpoch(_))
        ));
        assert!(matches!(
            Version::parse(":1"),
            Err(VersionError::BadEpoch(_))
        ));
        assert!(matches!(
            Version::parse("99999999999999999999:1"),
            Err(VersionError::BadEpoch(_))
        ));
        assert!(matches!(
            Version::parse("1:"),
            Err(VersionError::EmptyUpstream(_))
        ));
        assert!(matches!(
            Version::parse("-1"),
            Err(VersionError::EmptyUpstream(_))
        ));
        assert!(matches!(
            Version::parse("1.0-"),
            Err(VersionError::EmptyRevision(_))
        ));
        assert!(matches!(
            Version::parse("1.0 beta"),
            Err(VersionError::BadChar { ch: ' ', .. })
        ));
        assert!(matches!(
            Version::parse("1.0-a_b"),
            Err(VersionError::BadChar { ch: '_', .. })
        ));
        assert!(matches!(
            Version::parse("1:2:3"),
            Err(VersionError::BadChar { ch: ':', .. })
        ));
    }

    #[test]
    fn parses_relations_with_alternatives_and_qualifiers() {
        let rels = parse_relations("a (>= 1.0) | b, c:any, d [amd64]").unwrap();
        assert_eq!(rels.len(), 3);
        assert_eq!(rels[0].len(), 2);
        assert_eq!(rels[0][0].name, "a");
        let (op, v) = rels[0][0].constraint.unwrap();
        assert_eq!((op, v.to_string()), (Op::Ge, "1.0".to_string()));
        assert_eq!(rels[0][1].name, "b");
        assert_eq!(rels[0][1].constraint, None);
        assert_eq!(rels[1][0].name, "c");
        assert_eq!(rels[1][0].arch, Some(ArchQualifier::Any));
        assert_eq!(rels[2][0].name, "d");
        assert_eq!(rels[2][0].arches, Some("amd64"));
    }

    #[test]
    fn parses_all_operators_and_spacing_variants() {
        let rels =
            parse_relations("a (<< 1), b (<=1), c(= 1), d ( >= 1 ), e (>> 1), f (< 1), g (> 1)")
                .unwrap();
        let ops: Vec<_> = rels.iter().map(|r| r[0].constraint.unwrap().0).collect();
        assert_eq!(
            ops,
            [Op::Lt, Op::Le, Op::Eq, Op::Ge, Op::Gt, Op::Le, Op::Ge]
        );
        assert_eq!(rels[2][0].name, "c");
    }

    #[test]
    fn skips_build_profiles_and_empty_entries() {
        let rels = parse_relations(
            "debhelper-compat (= 13), libfoo-dev <!nocheck> <!cross>,\n po-debconf [!hurd-any] <!stage1>,",
        )
        .unwrap();
        assert_eq!(rels.len(), 3);
        assert_eq!(rels[1][0].name, "libfoo-dev");
        assert_eq!(rels[2][0].arches, Some("!hurd-any"));
        assert!(parse_relations("").unwrap().is_empty());
        assert!(parse_relations(" , ,").unwrap().is_empty());
    }

    #[test]
    fn arch_qualifiers() {
        let rels = parse_relations("a:native, b:amd64, libc6:i386 (>= 2)").unwrap();
        assert_eq!(rels[0][0].arch, Some(ArchQualifier::Native));
        assert_eq!(rels[1][0].arch, Some(ArchQualifier::Arch("amd64")));
        assert_eq!(rels[2][0].arch, Some(ArchQualifier::Arch("i386")));
        assert_eq!(rels[2][0].to_string(), "libc6:i386 (>= 2)");
    }

    #[test]
    fn arch_restrictions_apply_like_dpkg() {
        let rel = |s: &'static str| parse_relations(s).unwrap().remove(0).remove(0);
        assert!(rel("d [amd64]").applies_to("amd64"));
        assert!(!rel("d [amd64]").applies_to("arm64"));
        assert!(rel("d [amd64 arm64]").applies_to("arm64"));
        assert!(!rel("d [!amd64]").applies_to("amd64"));
        assert!(rel("d [!amd64]").applies_to("arm64"));
        assert!(rel("d [linux-any]").applies_to("arm64"));
        assert!(rel("d [any-amd64]").applies_to("amd64"));
        assert!(!rel("d [!linux-any]").applies_to("amd64"));
        assert!(rel("d").applies_to("anything"));
    }

    #[test]
    fn op_allows() {
        let v = |s| Version::parse(s).unwrap();
        assert!(Op::Ge.allows(&v("1.0"), &v("1.0")));
        assert!(Op::Ge.allows(&v("1.0+b1"), &v("1.0")));
        assert!(!Op::Ge.allows(&v("1.0~rc1"), &v("1.0")));
        assert!(Op::Lt.allows(&v("1.0~rc1"), &v("1.0")));
        assert!(!Op::Lt.allows(&v("1.0"), &v("1.0")));
        assert!(Op::Le.allows(&v("1.0"), &v("1.00")));
        assert!(Op::Eq.allows(&v("0:1.0-0"), &v("1.0")));
        assert!(Op::Gt.allows(&v("1:0"), &v("9")));
        assert!(!Op::Gt.allows(&v("1.0"), &v("1.0")));
    }

    #[test]
    fn rejects_malformed_relations() {
        assert!(matches!(
            parse_relations("a (>= 1.0"),
            Err(RelationError::Unbalanced { bracket: '(', .. })
        ));
        assert!(matches!(
            parse_relations("a [amd64"),
            Err(RelationError::Unbalanced { bracket: '[', .. })
        ));
        assert!(matches!(
            parse_relations("a <!nocheck"),
            Err(RelationError::Unbalanced { bracket: '<', .. })
        ));
        assert!(matches!(
            parse_relations("a (=> 1.0)"),
            Err(RelationError::BadOperator { .. })
        ));
        assert!(matches!(
            parse_relations("a (~= 1.0)"),
            Err(RelationError::BadOperator { .. })
        ));
        assert!(matches!(
            parse_relations("a (>= )"),
            Err(RelationError::Version { .. })
        ));
        assert!(matches!(
            parse_relations("a | , b"),
            Err(RelationError::MissingName { .. })
        ));
        assert!(matches!(
            parse_relations("-foo"),
            Err(RelationError::BadName { .. })
        ));
        assert!(matches!(
            parse_relations("foo_bar"),
            Err(RelationError::BadName { .. })
        ));
        assert!(matches!(
            parse_relations("a b"),
            Err(RelationError::Trailing { .. })
        ));
        let e = parse_relations("libc6 (>= 2.x_y)").unwrap_err();
        assert!(e.to_string().contains("libc6 (>= 2.x_y)"), "{e}");
    }

    #[test]
    fn parses_provides() {
        let p = parse_provides("awk, mail-transport-agent, libfoo-abi-2 (= 2.1)").unwrap();
        let names: Vec<_> = p.iter().map(|r| r.name).collect();
        assert_eq!(names, ["awk", "mail-transport-agent", "libfoo-abi-2"]);
        assert_eq!(p[2].constraint.unwrap().0, Op::Eq);
        assert!(matches!(
            parse_provides("a (>= 1)"),
            Err(RelationError::ProvidesOperator { .. })
        ));
        assert!(matches!(
            parse_provides("a | b"),
            Err(RelationError::ProvidesAlternative { .. })
        ));
    }
}
