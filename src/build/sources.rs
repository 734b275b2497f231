//! The host's apt sources, as a source of mirrors for `locker build`.
//!
//! Owns reading `/etc/apt/sources.list` and `/etc/apt/sources.list.d/*.{list,sources}`
//! in both formats of sources.list(5) (one-line and deb822), and choosing a mirror
//! for a suite. Archive host names are configuration: locker never carries one, so
//! without `--mirror` or a catalog entry the host's own apt configuration is where a
//! mirror comes from.
//!
//! Invariants: entries keep file order (files by name, as apt reads them), so the
//! same configuration always picks the same mirror. `Trusted: yes` / `[trusted=yes]`
//! is deliberately not read: locker verifies every archive, whatever apt is told.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::build::deb822::{self, Deb822Error, Syntax};

#[derive(Debug, thiserror::Error)]
pub(crate) enum SourcesError {
    #[error("read apt sources {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("apt sources {path}: {source}")]
    Syntax {
        path: PathBuf,
        #[source]
        source: Deb822Error,
    },
    #[error("apt sources {path}:{line}: missing field {field}")]
    MissingField {
        path: PathBuf,
        line: usize,
        field: &'static str,
    },
    #[error("apt sources {path}:{line}: {reason}")]
    BadEntry {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// The keys an entry must be signed with (sources.list(5), `Signed-By`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignedBy {
    /// Absolute keyring paths and/or fingerprints selecting keys from them.
    Keys {
        keyrings: Vec<PathBuf>,
        fingerprints: Vec<String>,
    },
    /// An ASCII-armored key block embedded in a `.sources` file.
    Inline(String),
}

impl SignedBy {
    fn parse(value: &str) -> SignedBy {
        if value.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
            // deb822 folding: each line indented, an empty line written as " .".
            let armored = value
                .lines()
                .map(|l| match l.trim() {
                    "." => "",
                    t => t,
                })
                .collect::<Vec<_>>()
                .join("\n");
            return SignedBy::Inline(armored.trim().to_string() + "\n");
        }
        let mut keyrings = Vec::new();
        let mut fingerprints = Vec::new();
        for item in value
            .split([',', ' ', '\t', '\n'])
            .filter(|s| !s.is_empty())
        {
            if item.starts_with('/') {
                keyrings.push(PathBuf::from(item));
            } else {
                fingerprints.push(item.to_string());
            }
        }
        SignedBy::Keys {
            keyrings,
            fingerprints,
        }
    }

    fn has_keyring(&self, path: &Path) -> bool {
        matches!(self, SignedBy::Keys { keyrings, .. } if keyrings.iter().any(|k| k == path))
    }
}

/// One source entry: every (type, URI, suite) combination it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceEntry {
    /// `deb` and/or `deb-src`.
    pub(crate) types: Vec<String>,
    pub(crate) uris: Vec<String>,
    pub(crate) suites: Vec<String>,
    /// Empty for a flat repository (suite ending in `/`).
    pub(crate) components: Vec<String>,
    pub(crate) architectures: Vec<String>,
    pub(crate) signed_by: Option<SignedBy>,
    /// `file:line`, for messages.
    pub(crate) origin: String,
}

impl SourceEntry {
    fn is_binary(&self) -> bool {
        self.types.iter().any(|t| t == "deb")
    }
}

fn words(v: &str) -> Vec<String> {
    v.split_whitespace().map(String::from).collect()
}

/// Parses a deb822-style `.sources` file. Paragraphs with `Enabled: no` are skipped.
pub(crate) fn parse_deb822(text: &str, path: &Path) -> Result<Vec<SourceEntry>, SourcesError> {
    let paras = deb822::parse(text, Syntax::Sources).map_err(|source| SourcesError::Syntax {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for p in paras {
        let line = p.line();
        let missing = |field| SourcesError::MissingField {
            path: path.to_path_buf(),
            line,
            field,
        };
        let bad = |reason: String| SourcesError::BadEntry {
            path: path.to_path_buf(),
            line,
            reason,
        };
        match p.get("Enabled").map(str::to_ascii_lowercase).as_deref() {
            None | Some("yes") => {}
            Some("no") => continue,
            Some(v) => return Err(bad(format!("Enabled: {v:?} is not yes or no"))),
        }
        let types = words(p.get("Types").ok_or_else(|| missing("Types"))?);
        if let Some(t) = types.iter().find(|t| *t != "deb" && *t != "deb-src") {
            return Err(bad(format!("unknown type {t:?} (want deb or deb-src)")));
        }
        let uris: Vec<String> = words(p.get("URIs").ok_or_else(|| missing("URIs"))?)
            .into_iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect();
        let suites = words(p.get("Suites").ok_or_else(|| missing("Suites"))?);
        let components = p.get("Components").map(words).unwrap_or_default();
        if types.is_empty() || uris.is_empty() || suites.is_empty() {
            return Err(bad("Types, URIs and Suites must not be empty".into()));
        }
        let flat = suites.iter().all(|s| s.ends_with('/'));
        if components.is_empty() && !flat {
            return Err(missing("Components"));
        }
        if !components.is_empty() && suites.iter().any(|s| s.ends_with('/')) {
            return Err(bad(
                "a suite ending in / (flat repository) takes no Components".into(),
            ));
        }
        out.push(SourceEntry {
            types,
            uris,
            suites,
            components,
            architectures: p.get("Architectures").map(words).unwrap_or_default(),
            signed_by: p.get("Signed-By").map(SignedBy::parse),
            origin: format!("{}:{line}", path.display()),
        });
    }
    Ok(out)
}

/// Parses a one-line-style `sources.list`:
/// `deb [ arch=amd64 signed-by=/path ] URI SUITE [COMPONENT...]`. `#` starts a
/// comment anywhere on a line, as apt treats it.
pub(crate) fn parse_one_line(text: &str, path: &Path) -> Result<Vec<SourceEntry>, SourcesError> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let bad = |reason: String| SourcesError::BadEntry {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let (kind, mut rest) = content
            .split_once(char::is_whitespace)
            .unwrap_or((content, ""));
        if kind != "deb" && kind != "deb-src" {
            return Err(bad(format!("unknown type {kind:?} (want deb or deb-src)")));
        }
        rest = rest.trim_start();
        let mut architectures = Vec::new();
        let mut signed_by = None;
        if let Some(opts) = rest.strip_prefix('[') {
            let close = opts
                .find(']')
                .ok_or_else(|| bad("unterminated [ options ]".into()))?;
            for opt in opts[..close].split_whitespace() {
                let (key, value) = opt
                    .split_once('=')
                    .ok_or_else(|| bad(format!("option {opt:?} is not key=value")))?;
                match key {
                    "arch" => architectures = value.split(',').map(String::from).collect(),
                    "signed-by" => signed_by = Some(SignedBy::parse(value)),
                    // Other options (lang, target, trusted, …) do not affect where
                    // locker downloads from or how it verifies.
                    _ => {}
                }
            }
            rest = &opts[close + 1..];
        }
        let mut fields = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (fields.next(), fields.next()) else {
            return Err(bad("expected URI and suite".into()));
        };
        let components: Vec<String> = fields.map(String::from).collect();
        if components.is_empty() != suite.ends_with('/') {
            return Err(bad(if components.is_empty() {
                format!("suite {suite:?} needs components (or end in / for a flat repository)")
            } else {
                format!("flat repository suite {suite:?} takes no components")
            }));
        }
        out.push(SourceEntry {
            types: vec![kind.to_string()],
            uris: vec![uri.trim_end_matches('/').to_string()],
            suites: vec![suite.to_string()],
            components,
            architectures,
            signed_by,
            origin: format!("{}:{line}", path.display()),
        });
    }
    Ok(out)
}

/// Reads every source apt would read under `etc_apt` (normally `/etc/apt`):
/// `sources.list`, then `sources.list.d/*.list` and `*.sources` by file name. Files
/// with other names (`.save`, `.disabled`, …) are ignored, as apt ignores them.
/// Missing files and directories are not errors: a host may have no apt at all.
pub(crate) fn read_sources(etc_apt: &Path) -> Result<Vec<SourceEntry>, SourcesError> {
    let read = |path: &Path| -> Result<Option<String>, SourcesError> {
        match fs::read_to_string(path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SourcesError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    };
    let mut out = Vec::new();
    let main = etc_apt.join("sources.list");
    if let Some(text) = read(&main)? {
        out.extend(parse_one_line(&text, &main)?);
    }
    let dir = etc_apt.join("sources.list.d");
    let mut names: Vec<String> = match fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(SourcesError::Read { path: dir, source }),
    };
    names.sort();
    for name in names {
        // apt's rule for parts files: only [A-Za-z0-9_.-] in the name.
        let valid = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        let path = dir.join(&name);
        let parse: fn(&str, &Path) -> Result<Vec<SourceEntry>, SourcesError> =
            if valid && name.ends_with(".list") {
                parse_one_line
            } else if valid && name.ends_with(".sources") {
                parse_deb822
            } else {
                continue;
            };
        if let Some(text) = read(&path)? {
            out.extend(parse(&text, &path)?);
        }
    }
    Ok(out)
}

/// The host's sources, from `/etc/apt`.
pub(crate) fn host_sources() -> Result<Vec<SourceEntry>, SourcesError> {
    read_sources(Path::new("/etc/apt"))
}

/// Where to bootstrap `suite` from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mirror {
    /// Archive root, without a trailing `/`.
    pub(crate) uri: String,
    pub(crate) suite: String,
    pub(crate) components: Vec<String>,
    pub(crate) signed_by: Option<SignedBy>,
    /// The entry it came from (`file:line`).
    pub(crate) origin: String,
}

/// `-security`, `-updates`, `-backports`… or `""` for a release suite: archives keep
/// these in different places (Debian's security suites live in a separate archive).
fn pocket(suite: &str) -> &str {
    suite.rfind('-').map_or("", |i| &suite[i..])
}

/// Picks a mirror for `suite` among binary (`deb`) entries with an http, https or
/// file URI:
/// 1. the first entry that lists `suite` itself;
/// 2. otherwise, when the image's `keyring` is known, the first entry signed by that
///    same keyring (the same archive, so the same distribution) that serves a suite
///    of the same pocket (a release suite for a release suite, `-security` for
///    `-security`), with the entry's components.
///
/// `None` means the host's configuration does not say; the caller asks for `--mirror`.
pub(crate) fn pick_mirror(
    entries: &[SourceEntry],
    suite: &str,
    keyring: Option<&Path>,
) -> Option<Mirror> {
    let usable = |e: &&SourceEntry| {
        e.is_binary() && !e.components.is_empty() && e.uris.iter().any(|u| usable_uri(u))
    };
    let mirror = |e: &SourceEntry| Mirror {
        uri: e
            .uris
            .iter()
            .find(|u| usable_uri(u))
            .expect("usable")
            .clone(),
        suite: suite.to_string(),
        components: e.components.clone(),
        signed_by: e.signed_by.clone(),
        origin: e.origin.clone(),
    };
    if let Some(e) = entries
        .iter()
        .filter(usable)
        .find(|e| e.suites.iter().any(|s| s == suite))
    {
        return Some(mirror(e));
    }
    let keyring = keyring?;
    entries
        .iter()
        .filter(usable)
        .filter(|e| e.signed_by.as_ref().is_some_and(|s| s.has_keyring(keyring)))
        .find(|e| e.suites.iter().any(|s| pocket(s) == pocket(suite)))
        .map(mirror)
}

fn usable_uri(uri: &str) -> bool {
    ["http://", "https://", "file:/"]
        .iter()
        .any(|scheme| uri.starts_with(scheme))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEB822: &str = "\
# Written by hand.
Types: deb deb-src
# the main archive
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
Architectures: amd64 arm64
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Enabled: no
Types: deb
URIs: http://disabled.example/debian
Suites: sid
Components: main
";

    const ONE_LINE: &str = "\
# comment
deb http://archive.example/ubuntu jammy main restricted # trailing comment
deb [arch=amd64,i386 signed-by=/usr/share/keyrings/ubuntu-archive-keyring.gpg] http://archive.example/ubuntu/ jammy-updates main
deb-src http://archive.example/ubuntu jammy main
deb [ signed-by=/k.gpg ] file:/srv/repo ./
   
";

    fn p() -> &'static Path {
        Path::new("/etc/apt/test")
    }

    #[test]
    fn parses_deb822_sources() {
        let es = parse_deb822(DEB822, p()).unwrap();
        assert_eq!(es.len(), 2, "the disabled entry is skipped");
        let e = &es[0];
        assert_eq!(e.types, ["deb", "deb-src"]);
        assert_eq!(e.uris, ["http://mirror.example/debian"]);
        assert_eq!(e.suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(e.components, ["main", "contrib"]);
        assert_eq!(
            e.signed_by,
            Some(SignedBy::Keys {
                keyrings: vec!["/usr/share/keyrings/debian-archive-keyring.gpg".into()],
                fingerprints: vec![],
            })
        );
        assert_eq!(e.origin, "/etc/apt/test:2");
        assert_eq!(es[1].architectures, ["amd64", "arm64"]);
        assert_eq!(es[1].origin, "/etc/apt/test:9");
    }

    #[test]
    fn parses_inline_keys_and_fingerprints() {
        let text = "Types: deb\nURIs: http://m.example/x\nSuites: s\nComponents: main\n\
                    Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBF\n =abcd\n -----END PGP PUBLIC KEY BLOCK-----\n\n\
                    Types: deb\nURIs: http://m.example/y\nSuites: s\nComponents: main\n\
                    Signed-By: /a.gpg, 0123ABCD 4567EF01\n";
        let es = parse_deb822(text, p()).unwrap();
        assert_eq!(
            es[0].signed_by,
            Some(SignedBy::Inline(
                "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBF\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n"
                    .into()
            ))
        );
        assert_eq!(
            es[1].signed_by,
            Some(SignedBy::Keys {
                keyrings: vec!["/a.gpg".into()],
                fingerprints: vec!["0123ABCD".into(), "4567EF01".into()],
            })
        );
    }

    #[test]
    fn deb822_errors_name_file_line_and_field() {
        let e = parse_deb822("Types: deb\nSuites: s\nComponents: main\n", p()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "apt sources /etc/apt/test:1: missing field URIs"
        );
        let e = parse_deb822("Types: deb\nURIs: http://x\nSuites: s\n", p()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "apt sources /etc/apt/test:1: missing field Components"
        );
        let e = parse_deb822(
            "Types: rpm\nURIs: http://x\nSuites: s\nComponents: c\n",
            p(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown type \"rpm\""), "{e}");
        let e = parse_deb822(
            "Types: deb\nURIs: http://x\nSuites: s\nComponents: c\nEnabled: maybe\n",
            p(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("Enabled"), "{e}");
        let e = parse_deb822("Types: deb\nbroken line\n", p()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("apt sources /etc/apt/test: line 2:"),
            "{e}"
        );
        // A flat repository needs no components.
        let es = parse_deb822("Types: deb\nURIs: file:/srv/r\nSuites: ./\n", p()).unwrap();
        assert!(es[0].components.is_empty());
    }

    #[test]
    fn parses_one_line_sources() {
        let es = parse_one_line(ONE_LINE, p()).unwrap();
        assert_eq!(es.len(), 4);
        assert_eq!(es[0].types, ["deb"]);
        assert_eq!(es[0].uris, ["http://archive.example/ubuntu"]);
        assert_eq!(es[0].suites, ["jammy"]);
        assert_eq!(es[0].components, ["main", "restricted"]);
        assert_eq!(es[0].signed_by, None);
        assert_eq!(es[0].origin, "/etc/apt/test:2");
        assert_eq!(es[1].architectures, ["amd64", "i386"]);
        assert_eq!(es[1].uris, ["http://archive.example/ubuntu"]);
        assert!(es[1]
            .signed_by
            .as_ref()
            .unwrap()
            .has_keyring(Path::new("/usr/share/keyrings/ubuntu-archive-keyring.gpg")));
        assert_eq!(es[2].types, ["deb-src"]);
        assert_eq!(es[3].suites, ["./"]);
        assert!(es[3].components.is_empty());
        assert!(es[3]
            .signed_by
            .as_ref()
            .unwrap()
            .has_keyring(Path::new("/k.gpg")));
    }

    #[test]
    fn one_line_errors_name_the_line() {
        for (text, want) in [
            ("deb http://x\n", "expected URI and suite"),
            ("deb http://x jammy\n", "needs components"),
            ("deb http://x ./ main\n", "takes no components"),
            ("rpm http://x s main\n", "unknown type"),
            ("deb [arch=amd64 http://x s main\n", "unterminated"),
            ("deb [trusted] http://x s main\n", "not key=value"),
        ] {
            let e = parse_one_line(&format!("# first\n{text}"), p()).unwrap_err();
            let s = e.to_string();
            assert!(s.starts_with("apt sources /etc/apt/test:2: "), "{s}");
            assert!(s.contains(want), "{s} lacks {want}");
        }
    }

    #[test]
    fn reads_a_tree_like_apt() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path();
        fs::write(etc.join("sources.list"), ONE_LINE).unwrap();
        let d = etc.join("sources.list.d");
        fs::create_dir(&d).unwrap();
        fs::write(d.join("b.sources"), DEB822).unwrap();
        fs::write(d.join("a.list"), "deb http://a.example/a s main\n").unwrap();
        fs::write(d.join("c.list.disabled"), "garbage\n").unwrap();
        fs::write(d.join("d.sources.save"), "garbage\n").unwrap();
        fs::write(d.join("bad name.list"), "garbage\n").unwrap();
        let es = read_sources(etc).unwrap();
        let uris: Vec<_> = es.iter().map(|e| e.uris[0].as_str()).collect();
        assert_eq!(
            uris,
            [
                "http://archive.example/ubuntu",
                "http://archive.example/ubuntu",
                "http://archive.example/ubuntu",
                "file:/srv/repo",
                "http://a.example/a",
                "http://mirror.example/debian",
                "http://security.example/debian-security",
            ]
        );
        assert!(es[4].origin.ends_with("sources.list.d/a.list:1"));

        // A missing tree is empty, not an error.
        assert!(read_sources(&etc.join("nope")).unwrap().is_empty());
        // A broken file is an error naming it.
        fs::write(d.join("z.list"), "deb\n").unwrap();
        let e = read_sources(etc).unwrap_err().to_string();
        assert!(e.contains("z.list:1"), "{e}");
    }

    #[test]
    fn picks_mirrors() {
        let mut es = parse_deb822(DEB822, p()).unwrap();
        es.extend(parse_one_line(ONE_LINE, p()).unwrap());
        let debian = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");

        // Exact suite.
        let m = pick_mirror(&es, "bookworm", None).unwrap();
        assert_eq!(m.uri, "http://mirror.example/debian");
        assert_eq!(m.suite, "bookworm");
        assert_eq!(m.components, ["main", "contrib"]);
        assert_eq!(m.origin, "/etc/apt/test:2");
        let m = pick_mirror(&es, "bookworm-security", None).unwrap();
        assert_eq!(m.uri, "http://security.example/debian-security");
        let m = pick_mirror(&es, "jammy-updates", None).unwrap();
        assert_eq!(m.uri, "http://archive.example/ubuntu");

        // Another release of the same archive, found by keyring and pocket.
        let m = pick_mirror(&es, "trixie", Some(debian)).unwrap();
        assert_eq!(m.uri, "http://mirror.example/debian");
        assert_eq!(m.suite, "trixie");
        let m = pick_mirror(&es, "trixie-security", Some(debian)).unwrap();
        assert_eq!(m.uri, "http://security.example/debian-security");
        let m = pick_mirror(&es, "trixie-updates", Some(debian)).unwrap();
        assert_eq!(m.uri, "http://mirror.example/debian");

        // Unknown without a keyring; unknown for another archive's keyring.
        assert_eq!(pick_mirror(&es, "trixie", None), None);
        assert_eq!(
            pick_mirror(&es, "noble", Some(Path::new("/other.gpg"))),
            None
        );
        // deb-src-only and disabled entries are never picked.
        assert_eq!(pick_mirror(&es, "sid", None), None);
        let src_only = parse_one_line("deb-src http://x.example/d s main\n", p()).unwrap();
        assert_eq!(pick_mirror(&src_only, "s", None), None);
        // Unsupported schemes are skipped.
        let odd = parse_one_line(
            "deb cdrom:[Disc]/ s main\ndeb https://y.example/d s main\n",
            p(),
        )
        .unwrap();
        assert_eq!(
            pick_mirror(&odd, "s", None).unwrap().uri,
            "https://y.example/d"
        );
    }

    /// The real host configuration must parse; tests that need a real mirror take it
    /// from here. Prints counts only: host names stay out of logs and code.
    #[test]
    fn host_sources_parse() {
        match host_sources() {
            Ok(es) => println!(
                "host apt sources: {} entries, {} binary",
                es.len(),
                es.iter().filter(|e| e.is_binary()).count()
            ),
            Err(e) => panic!("host apt sources do not parse: {e}"),
        }
    }
}
