//! Which packages a bootstrap installs, and in which order they are configured.
//!
//! Owns three steps, all pure:
//! - the *universe*: the candidate of each package in the Packages indices, for the
//!   native architecture and `all` (the highest version wins, as apt's candidate does
//!   without pinning), plus an index of who `Provides` what;
//! - *selection*: the seeds of a variant (mmdebstrap(1), VARIANTS) plus `--include`,
//!   closed over `Pre-Depends` and `Depends`. For each dependency, a package already
//!   selected that satisfies any alternative wins; otherwise the first satisfiable
//!   alternative, the real package before providers, providers ranked as apt ranks
//!   them (Essential, then Priority, then name). Conflicts,
//!   Breaks and Recommends are not considered (neither does debootstrap);
//! - the *configure order* debootstrap's second stage needs: dependencies before
//!   dependents, cycles broken deterministically, Pre-Depends kept whenever a cycle
//!   leaves a choice.
//!
//! Invariants: every output is sorted or ordered by rule, never by hash-map order, so
//! one Packages file always gives the same image. Packages borrow from the index text.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;

use crate::build::deb822::{self, Deb822Error, Paragraph, Syntax};
use crate::build::version::{
    parse_provides, parse_relations, Alternatives, ArchQualifier, Relation, RelationError, Version,
    VersionError,
};
use crate::store::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error("Packages index: {0}")]
    Syntax(#[from] Deb822Error),
    #[error("Packages index, paragraph at line {line}: missing field {field}")]
    MissingField { line: usize, field: &'static str },
    #[error("package {package}: bad {field} field: {reason}")]
    BadField {
        package: String,
        field: &'static str,
        reason: String,
    },
    #[error("package {package}: {field}: {source}")]
    BadVersion {
        package: String,
        field: &'static str,
        #[source]
        source: VersionError,
    },
    #[error("package {package}: {field}: {source}")]
    BadRelation {
        package: String,
        field: &'static str,
        #[source]
        source: RelationError,
    },
    #[error("unknown variant {0:?} (want essential, apt, required/minbase, buildd, important/debootstrap, standard, custom)")]
    UnknownVariant(String),
    #[error("no package {name} for {arch} (wanted by {wanted_by})")]
    UnknownPackage {
        name: String,
        arch: String,
        wanted_by: String,
    },
    #[error("unsatisfiable dependencies: {}", list(.0))]
    Unsatisfiable(Vec<Unmet>),
}

fn list(unmet: &[Unmet]) -> String {
    unmet
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A dependency no package in the universe satisfies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unmet {
    pub(crate) package: String,
    pub(crate) version: String,
    /// `Depends` or `Pre-Depends`.
    pub(crate) field: &'static str,
    /// The whole comma-separated entry, alternatives included.
    pub(crate) dependency: String,
}

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}: {}",
            self.package, self.version, self.field, self.dependency
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Priority {
    Required,
    Important,
    Standard,
    Optional,
    Extra,
    /// Missing or not one of the above.
    Unknown,
}

impl Priority {
    fn parse(s: Option<&str>) -> Priority {
        match s.map(str::to_ascii_lowercase).as_deref() {
            Some("required") => Priority::Required,
            Some("important") => Priority::Important,
            Some("standard") => Priority::Standard,
            Some("optional") => Priority::Optional,
            Some("extra") => Priority::Extra,
            _ => Priority::Unknown,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MultiArch {
    No,
    Same,
    Foreign,
    Allowed,
}

/// The package sets of mmdebstrap(1), section VARIANTS. Each also pulls in the
/// transitive hard dependencies (Pre-Depends, Depends) but not Recommends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Variant {
    /// `Essential: yes` packages.
    Essential,
    /// essential + apt.
    Apt,
    /// `required` and `minbase`: essential + `Priority: required` + apt.
    Required,
    /// minbase + build-essential.
    Buildd,
    /// `important`, `debootstrap`, `-`: required + `Priority: important`
    /// (debootstrap's default).
    Important,
    /// important + `Priority: standard`.
    Standard,
    /// Only what `--include` names.
    Custom,
}

impl FromStr for Variant {
    type Err = ResolveError;

    fn from_str(s: &str) -> Result<Self, ResolveError> {
        Ok(match s {
            "essential" => Variant::Essential,
            "apt" => Variant::Apt,
            "required" | "minbase" => Variant::Required,
            "buildd" => Variant::Buildd,
            "important" | "debootstrap" | "-" => Variant::Important,
            "standard" => Variant::Standard,
            "custom" => Variant::Custom,
            _ => return Err(ResolveError::UnknownVariant(s.to_string())),
        })
    }
}

impl Variant {
    /// Packages named explicitly (beyond the Essential/Priority sets).
    fn named(self) -> &'static [&'static str] {
        match self {
            Variant::Essential | Variant::Custom => &[],
            Variant::Apt | Variant::Required | Variant::Important | Variant::Standard => &["apt"],
            Variant::Buildd => &["apt", "build-essential"],
        }
    }

    fn wants(self, p: &Package<'_>) -> bool {
        let up_to = match self {
            Variant::Custom => return false,
            Variant::Essential | Variant::Apt => None,
            Variant::Required | Variant::Buildd => Some(Priority::Required),
            Variant::Important => Some(Priority::Important),
            Variant::Standard => Some(Priority::Standard),
        };
        p.essential || up_to.is_some_and(|max| p.priority <= max)
    }

    fn name(self) -> &'static str {
        match self {
            Variant::Essential => "essential",
            Variant::Apt => "apt",
            Variant::Required => "required",
            Variant::Buildd => "buildd",
            Variant::Important => "important",
            Variant::Standard => "standard",
            Variant::Custom => "custom",
        }
    }
}

/// One candidate package from a Packages index.
#[derive(Debug, Clone)]
pub(crate) struct Package<'a> {
    pub(crate) name: &'a str,
    pub(crate) version: Version<'a>,
    pub(crate) arch: &'a str,
    /// Raw `Depends` / `Pre-Depends`, parsed only for the packages selected: the
    /// universe holds tens of thousands of packages, a bootstrap a few hundred.
    pub(crate) depends: &'a str,
    pub(crate) pre_depends: &'a str,
    pub(crate) provides: Vec<Relation<'a>>,
    pub(crate) priority: Priority,
    pub(crate) essential: bool,
    pub(crate) multi_arch: MultiArch,
    /// Path relative to the archive root; checked to stay inside it.
    pub(crate) filename: &'a str,
    pub(crate) size: u64,
    pub(crate) sha256: Digest,
}

impl<'a> Package<'a> {
    fn relations(
        &self,
        field: &'static str,
        raw: &'a str,
    ) -> Result<Vec<Alternatives<'a>>, ResolveError> {
        parse_relations(raw).map_err(|source| ResolveError::BadRelation {
            package: self.name.to_string(),
            field,
            source,
        })
    }

    /// `Pre-Depends` then `Depends`, tagged.
    fn all_relations(&self) -> Result<Vec<(DepKind, Alternatives<'a>)>, ResolveError> {
        let mut out = Vec::new();
        for g in self.relations("Pre-Depends", self.pre_depends)? {
            out.push((DepKind::PreDepends, g));
        }
        for g in self.relations("Depends", self.depends)? {
            out.push((DepKind::Depends, g));
        }
        Ok(out)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum DepKind {
    /// Must be configured before the dependent is even unpacked.
    PreDepends,
    Depends,
}

impl DepKind {
    fn field(self) -> &'static str {
        match self {
            DepKind::PreDepends => "Pre-Depends",
            DepKind::Depends => "Depends",
        }
    }
}

/// The candidates of one or more Packages indices for one architecture.
pub(crate) struct Universe<'a> {
    arch: String,
    /// Sorted by name, so an index order is a name order.
    packages: Vec<Package<'a>>,
    by_name: HashMap<&'a str, usize>,
    /// Virtual name → (provider index, provided version), providers by name.
    providers: HashMap<&'a str, Vec<(usize, Option<Version<'a>>)>>,
}

impl<'a> Universe<'a> {
    /// Builds the universe from the text of (already verified, decompressed) Packages
    /// indices for `arch`. Paragraphs of other architectures are skipped; of several
    /// versions of one package the highest is the candidate (the first index wins a
    /// tie).
    pub(crate) fn from_indices(indices: &[&'a str], arch: &str) -> Result<Self, ResolveError> {
        let mut best: HashMap<&'a str, Package<'a>> = HashMap::new();
        for text in indices {
            for para in deb822::paragraphs(text, Syntax::Control) {
                let para = para?;
                let Some(pkg) = package_from(&para, arch)? else {
                    continue;
                };
                match best.get(pkg.name) {
                    Some(old) if old.version >= pkg.version => {}
                    _ => {
                        best.insert(pkg.name, pkg);
                    }
                }
            }
        }
        let mut packages: Vec<Package<'a>> = best.into_values().collect();
        packages.sort_by(|a, b| a.name.cmp(b.name));
        let by_name = packages
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name, i))
            .collect();
        let mut providers: HashMap<&'a str, Vec<(usize, Option<Version<'a>>)>> = HashMap::new();
        for (i, p) in packages.iter().enumerate() {
            for prov in &p.provides {
                providers
                    .entry(prov.name)
                    .or_default()
                    .push((i, prov.constraint.map(|(_, v)| v)));
            }
        }
        // Preferred providers first: Essential, then by Priority, then by name (the
        // index), as apt ranks the providers of a virtual package (pkgPrioSortList).
        // Without it `awk` would resolve to gawk instead of the required mawk.
        for list in providers.values_mut() {
            list.sort_by_key(|&(i, _)| (!packages[i].essential, packages[i].priority, i));
        }
        Ok(Universe {
            arch: arch.to_string(),
            packages,
            by_name,
            providers,
        })
    }

    #[cfg(test)]
    pub(crate) fn arch(&self) -> &str {
        &self.arch
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.packages.len()
    }

    #[cfg(test)]
    pub(crate) fn get(&self, name: &str) -> Option<&Package<'a>> {
        self.by_name.get(name).map(|&i| &self.packages[i])
    }

    /// Whether package `p` may satisfy a relation with qualifier `q`, as dpkg's
    /// `archsatisfied()` (lib/dpkg/depcon.c) decides in a single-architecture world:
    /// `:any` needs `Multi-Arch: allowed`; an explicit architecture must be ours
    /// (`all` counts as native).
    fn arch_ok(&self, q: Option<ArchQualifier<'_>>, p: &Package<'_>) -> bool {
        match q {
            None | Some(ArchQualifier::Native) => true,
            Some(ArchQualifier::Any) => p.multi_arch == MultiArch::Allowed,
            Some(ArchQualifier::Arch(a)) => a == self.arch,
        }
    }

    /// Packages that satisfy `rel`: the real package first (if its version fits),
    /// then providers in preference order (a versioned relation only by a versioned Provides
    /// whose version fits, as dpkg ≥ 1.17.11).
    fn satisfiers<'s>(&'s self, rel: &'s Relation<'_>) -> impl Iterator<Item = usize> + 's {
        let real = self.by_name.get(rel.name).copied().filter(|&i| {
            let p = &self.packages[i];
            self.arch_ok(rel.arch, p)
                && rel
                    .constraint
                    .as_ref()
                    .is_none_or(|(op, want)| op.allows(&p.version, want))
        });
        let provided = self
            .providers
            .get(rel.name)
            .into_iter()
            .flatten()
            .filter(move |(i, pv)| {
                self.arch_ok(rel.arch, &self.packages[*i])
                    && match (&rel.constraint, pv) {
                        (None, _) => true,
                        (Some((op, want)), Some(have)) => op.allows(have, want),
                        (Some(_), None) => false,
                    }
            })
            .map(|(i, _)| *i);
        real.into_iter().chain(provided)
    }

    /// The seeds of `variant` plus `include`, then every hard dependency, sorted by
    /// name. All unmet dependencies are reported together.
    pub(crate) fn resolve(
        &self,
        variant: Variant,
        include: &[&str],
    ) -> Result<Selection<'_, 'a>, ResolveError> {
        let mut selected = vec![false; self.packages.len()];
        let mut queue = VecDeque::new();
        let select = |selected: &mut Vec<bool>, queue: &mut VecDeque<usize>, i: usize| {
            if !selected[i] {
                selected[i] = true;
                queue.push_back(i);
            }
        };

        for (i, p) in self.packages.iter().enumerate() {
            if variant.wants(p) {
                select(&mut selected, &mut queue, i);
            }
        }
        let wanted_by_variant = format!("variant {}", variant.name());
        let named = variant
            .named()
            .iter()
            .map(|n| (*n, wanted_by_variant.as_str()));
        let included = include.iter().map(|n| (*n, "--include"));
        for (name, wanted_by) in named.chain(included) {
            let unknown = || ResolveError::UnknownPackage {
                name: name.to_string(),
                arch: self.arch.clone(),
                wanted_by: wanted_by.to_string(),
            };
            let rel = parse_relations(name)
                .ok()
                .filter(|g| g.len() == 1 && g[0].len() == 1)
                .map(|mut g| g.remove(0).remove(0))
                .ok_or_else(unknown)?;
            let i = self.satisfiers(&rel).next().ok_or_else(unknown)?;
            select(&mut selected, &mut queue, i);
        }

        let requested = selected.clone();
        let mut unmet = Vec::new();
        while let Some(i) = queue.pop_front() {
            let p = &self.packages[i];
            for (kind, group) in p.all_relations()? {
                let alts: Vec<_> = group.iter().filter(|r| r.applies_to(&self.arch)).collect();
                if alts.is_empty() || alts.iter().any(|r| self.satisfiers(r).any(|q| selected[q])) {
                    continue;
                }
                match alts.iter().find_map(|r| self.satisfiers(r).next()) {
                    Some(q) => select(&mut selected, &mut queue, q),
                    None => unmet.push(Unmet {
                        package: p.name.to_string(),
                        version: p.version.to_string(),
                        field: kind.field(),
                        dependency: show_group(&group),
                    }),
                }
            }
        }
        if !unmet.is_empty() {
            unmet.sort_by(|a, b| (&a.package, &a.dependency).cmp(&(&b.package, &b.dependency)));
            return Err(ResolveError::Unsatisfiable(unmet));
        }
        let chosen = (0..self.packages.len()).filter(|&i| selected[i]).collect();
        Ok(Selection {
            universe: self,
            chosen,
            requested,
        })
    }
}

fn show_group(group: &[Relation<'_>]) -> String {
    group
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The candidate in `para`, or `None` if it is for another architecture.
fn package_from<'a>(para: &Paragraph<'a>, arch: &str) -> Result<Option<Package<'a>>, ResolveError> {
    let line = para.line();
    let field = |name: &'static str| para.get_str(name);
    let required =
        |name: &'static str| field(name).ok_or(ResolveError::MissingField { line, field: name });

    let name = required("Package")?;
    let pkg_arch = required("Architecture")?;
    if pkg_arch != arch && pkg_arch != "all" {
        return Ok(None);
    }
    let bad = |field: &'static str, reason: String| ResolveError::BadField {
        package: name.to_string(),
        field,
        reason,
    };
    let version =
        Version::parse(required("Version")?).map_err(|source| ResolveError::BadVersion {
            package: name.to_string(),
            field: "Version",
            source,
        })?;
    let provides = parse_provides(field("Provides").unwrap_or("")).map_err(|source| {
        ResolveError::BadRelation {
            package: name.to_string(),
            field: "Provides",
            source,
        }
    })?;
    let essential = match field("Essential") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("yes") => true,
        Some(v) if v.eq_ignore_ascii_case("no") => false,
        Some(v) => return Err(bad("Essential", format!("{v:?} is not yes or no"))),
    };
    let multi_arch = match field("Multi-Arch").map(str::to_ascii_lowercase).as_deref() {
        None | Some("no") => MultiArch::No,
        Some("same") => MultiArch::Same,
        Some("foreign") => MultiArch::Foreign,
        Some("allowed") => MultiArch::Allowed,
        Some(v) => return Err(bad("Multi-Arch", format!("unknown value {v:?}"))),
    };
    let filename = required("Filename")?;
    // The path becomes part of a URL and of a download path: it must stay inside the
    // archive (no absolute path, no `..`).
    if filename.starts_with('/')
        || filename.split('/').any(|c| c == ".." || c.is_empty())
        || filename.contains(['\\', '?', '#'])
    {
        return Err(bad("Filename", format!("{filename:?} leaves the archive")));
    }
    let size_text = required("Size")?;
    let size = size_text
        .parse()
        .map_err(|_| bad("Size", format!("{size_text:?} is not a number")))?;
    let sha256 = required("SHA256")?
        .parse()
        .map_err(|e: crate::store::digest::BadDigest| bad("SHA256", e.to_string()))?;
    Ok(Some(Package {
        name,
        version,
        arch: pkg_arch,
        depends: field("Depends").unwrap_or(""),
        pre_depends: field("Pre-Depends").unwrap_or(""),
        provides,
        priority: Priority::parse(field("Priority")),
        essential,
        multi_arch,
        filename,
        size,
        sha256,
    }))
}

/// A closed set of packages, sorted by name.
pub(crate) struct Selection<'u, 'a> {
    universe: &'u Universe<'a>,
    chosen: Vec<usize>,
    /// What the variant and `--include` asked for, before dependencies.
    requested: Vec<bool>,
}

/// A dependency edge the configure order could not honour because of a cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrokenEdge<'a> {
    /// Configured before ...
    pub(crate) package: &'a str,
    /// ... this, which it depends on.
    pub(crate) needs: &'a str,
    pub(crate) kind: DepKind,
}

#[derive(Debug)]
pub(crate) struct ConfigureOrder<'u, 'a> {
    pub(crate) order: Vec<&'u Package<'a>>,
    pub(crate) broken: Vec<BrokenEdge<'a>>,
}

impl<'u, 'a> Selection<'u, 'a> {
    pub(crate) fn packages(&self) -> impl Iterator<Item = &'u Package<'a>> + '_ {
        self.chosen.iter().map(|&i| &self.universe.packages[i])
    }

    #[cfg(test)]
    pub(crate) fn names(&self) -> Vec<&'a str> {
        self.packages().map(|p| p.name).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.chosen.len()
    }

    /// The selected packages that satisfy `p`'s Pre-Depends (the first satisfier of
    /// each entry, as `configure_order` counts them).
    pub(crate) fn pre_depends(&self, p: &Package<'a>) -> Result<Vec<&'a str>, ResolveError> {
        let u = self.universe;
        let mut out = Vec::new();
        for group in p.relations("Pre-Depends", p.pre_depends)? {
            let chosen = group
                .iter()
                .filter(|r| r.applies_to(&u.arch))
                .find_map(|r| u.satisfiers(r).find(|q| self.chosen.contains(q)));
            if let Some(q) = chosen {
                out.push(u.packages[q].name);
            }
        }
        Ok(out)
    }

    /// Whether `name` was asked for (by the variant or `--include`) rather than
    /// pulled in as a dependency: apt marks the others automatically installed.
    pub(crate) fn requested(&self, name: &str) -> bool {
        self.chosen
            .iter()
            .any(|&i| self.requested[i] && self.universe.packages[i].name == name)
    }

    /// Total download size in bytes.
    pub(crate) fn download_size(&self) -> u64 {
        self.packages().map(|p| p.size).sum()
    }

    /// Dependencies before dependents. Each dependency entry counts once, through
    /// the first alternative a selected package satisfies. Strongly connected
    /// components are ordered among themselves by their dependencies (ties by the
    /// smallest name); inside a cycle, a package whose Pre-Depends are all configured
    /// goes first (ties by name) and its remaining Depends edges are reported broken.
    pub(crate) fn configure_order(&self) -> Result<ConfigureOrder<'u, 'a>, ResolveError> {
        let u = self.universe;
        let n = self.chosen.len();
        let local: HashMap<usize, usize> = self
            .chosen
            .iter()
            .enumerate()
            .map(|(l, &g)| (g, l))
            .collect();
        // needs[i]: j → kind, i needs j configured first (PreDepends dominates).
        let mut needs: Vec<BTreeMap<usize, DepKind>> = vec![BTreeMap::new(); n];
        for (i, &g) in self.chosen.iter().enumerate() {
            for (kind, group) in u.packages[g].all_relations()? {
                let target = group
                    .iter()
                    .filter(|r| r.applies_to(&u.arch))
                    .find_map(|r| u.satisfiers(r).find_map(|q| local.get(&q).copied()));
                if let Some(j) = target.filter(|&j| j != i) {
                    let e = needs[i].entry(j).or_insert(kind);
                    *e = (*e).min(kind);
                }
            }
        }
        let adj: Vec<Vec<usize>> = needs.iter().map(|m| m.keys().copied().collect()).collect();
        let (comp, ncomp) = tarjan(&adj);

        // Components, each with its members (ascending = by name) and its smallest
        // member as the tie-break key.
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); ncomp];
        for (i, &c) in comp.iter().enumerate() {
            members[c].push(i);
        }
        let mut pending = vec![0usize; ncomp];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); ncomp];
        let mut seen = std::collections::HashSet::new();
        for (i, js) in adj.iter().enumerate() {
            for &j in js {
                let (ci, cj) = (comp[i], comp[j]);
                if ci != cj && seen.insert((ci, cj)) {
                    pending[ci] += 1;
                    dependents[cj].push(ci);
                }
            }
        }
        let mut ready: BinaryHeap<Reverse<(usize, usize)>> = (0..ncomp)
            .filter(|&c| pending[c] == 0)
            .map(|c| Reverse((members[c][0], c)))
            .collect();
        let mut order = Vec::with_capacity(n);
        let mut broken = Vec::new();
        while let Some(Reverse((_, c))) = ready.pop() {
            for i in order_cycle(&members[c], &needs, &mut |i, j, kind| {
                broken.push(BrokenEdge {
                    package: u.packages[self.chosen[i]].name,
                    needs: u.packages[self.chosen[j]].name,
                    kind,
                })
            }) {
                order.push(&u.packages[self.chosen[i]]);
            }
            for &d in &dependents[c] {
                pending[d] -= 1;
                if pending[d] == 0 {
                    ready.push(Reverse((members[d][0], d)));
                }
            }
        }
        debug_assert_eq!(order.len(), n);
        Ok(ConfigureOrder { order, broken })
    }
}

/// Orders the members of one strongly connected component (ascending indices).
/// Calls `broke(i, j, kind)` for each edge i→j ignored to break a cycle.
fn order_cycle(
    members: &[usize],
    needs: &[BTreeMap<usize, DepKind>],
    broke: &mut dyn FnMut(usize, usize, DepKind),
) -> Vec<usize> {
    if members.len() == 1 {
        return members.to_vec();
    }
    let inside = |j: &usize| members.binary_search(j).is_ok();
    let mut is_done = vec![false; needs.len()];
    let mut done: Vec<usize> = Vec::with_capacity(members.len());
    while done.len() < members.len() {
        let remaining: Vec<usize> = members.iter().copied().filter(|&i| !is_done[i]).collect();
        let unmet = |i: usize, pre_only: bool| {
            needs[i]
                .iter()
                .any(|(j, k)| inside(j) && !is_done[*j] && (!pre_only || *k == DepKind::PreDepends))
        };
        // Everything met, else Pre-Depends met, else the smallest name.
        let pick = remaining
            .iter()
            .copied()
            .find(|&i| !unmet(i, false))
            .or_else(|| remaining.iter().copied().find(|&i| !unmet(i, true)))
            .unwrap_or(remaining[0]);
        for (&j, &k) in &needs[pick] {
            if inside(&j) && !is_done[j] {
                broke(pick, j, k);
            }
        }
        is_done[pick] = true;
        done.push(pick);
    }
    done
}

/// Tarjan's strongly connected components, iteratively (a long dependency chain must
/// not overflow a thread's stack). Returns each node's component id and the count.
fn tarjan(adj: &[Vec<usize>]) -> (Vec<usize>, usize) {
    let n = adj.len();
    const UNSEEN: usize = usize::MAX;
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut comp = vec![UNSEEN; n];
    let mut ncomp = 0;
    let mut next = 0;
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        calls.push((root, 0));
        while let Some(&mut (v, ref mut child)) = calls.last_mut() {
            if let Some(&w) = adj[v].get(*child) {
                *child += 1;
                if index[w] == UNSEEN {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if low[v] == index[v] {
                loop {
                    let w = stack.pop().expect("v is on the stack");
                    on_stack[w] = false;
                    comp[w] = ncomp;
                    if w == v {
                        break;
                    }
                }
                ncomp += 1;
            }
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
        }
    }
    (comp, ncomp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One Packages paragraph; `extra` holds further `Field: value` lines and may
    /// override Architecture.
    fn p(name: &str, version: &str, extra: &str) -> String {
        let arch = if extra.contains("Architecture:") {
            String::new()
        } else {
            "Architecture: amd64\n".to_string()
        };
        format!(
            "Package: {name}\nVersion: {version}\n{arch}{extra}{nl}Filename: pool/main/{name}_{version}_amd64.deb\nSize: 1000\nSHA256: {}\n\n",
            Digest::of(name.as_bytes()).hex(),
            nl = if extra.is_empty() || extra.ends_with('\n') { "" } else { "\n" },
        )
    }

    fn universe(text: &str) -> Universe<'_> {
        Universe::from_indices(&[text], "amd64").unwrap_or_else(|e| panic!("{e}"))
    }

    fn names(u: &Universe<'_>, variant: Variant, include: &[&str]) -> Vec<String> {
        u.resolve(variant, include)
            .unwrap_or_else(|e| panic!("{e}"))
            .names()
            .into_iter()
            .map(String::from)
            .collect()
    }

    fn order(u: &Universe<'_>, include: &[&str]) -> (Vec<String>, Vec<String>) {
        let sel = u.resolve(Variant::Custom, include).unwrap();
        let o = sel.configure_order().unwrap();
        (
            o.order.iter().map(|p| p.name.to_string()).collect(),
            o.broken
                .iter()
                .map(|b| format!("{}->{} {:?}", b.package, b.needs, b.kind))
                .collect(),
        )
    }

    /// A tiny archive shaped like Debian's base: essential, required, important,
    /// standard and optional packages, a virtual package and an alternative.
    fn archive() -> String {
        [
            p(
                "base-files",
                "12.4",
                "Essential: yes\nPriority: required\nPre-Depends: awk",
            ),
            p(
                "dpkg",
                "1.21.22",
                "Essential: yes\nPriority: required\nPre-Depends: libc6 (>= 2.34), tar (>= 1.28-1)",
            ),
            p(
                "tar",
                "1.34+dfsg-1",
                "Essential: yes\nPriority: required\nPre-Depends: libc6 (>= 2.28)",
            ),
            p(
                "libc6",
                "2.36-9",
                "Priority: optional\nMulti-Arch: same\nDepends: libgcc-s1",
            ),
            p(
                "libgcc-s1",
                "12.2.0-14",
                "Priority: optional\nMulti-Arch: same\nDepends: gcc-12-base, libc6 (>= 2.35)",
            ),
            p(
                "gcc-12-base",
                "12.2.0-14",
                "Architecture: all\nPriority: required\nMulti-Arch: same",
            ),
            p("mawk", "1.3.4", "Priority: required\nProvides: awk"),
            p("gawk", "5.2.1", "Priority: optional\nProvides: awk"),
            p(
                "apt",
                "2.6.1",
                "Priority: required\nDepends: libapt-pkg6.0 (>= 2.6.1), gpgv | gpgv2",
            ),
            p(
                "libapt-pkg6.0",
                "2.6.1",
                "Priority: optional\nDepends: libc6",
            ),
            p("gpgv", "2.2.40-1", "Priority: important"),
            p("gpgv2", "2.2.40-1", "Priority: optional"),
            p("login", "1:4.13", "Priority: required\nPre-Depends: libc6"),
            p("cron", "3.0pl1", "Priority: important\nDepends: libc6"),
            p("less", "590-2", "Priority: standard"),
            p("vim", "2:9.0", "Priority: optional"),
            p(
                "build-essential",
                "12.9",
                "Priority: optional\nDepends: dpkg (>= 1.14)",
            ),
        ]
        .concat()
    }

    #[test]
    fn variant_names_follow_mmdebstrap() {
        for (name, v) in [
            ("essential", Variant::Essential),
            ("apt", Variant::Apt),
            ("required", Variant::Required),
            ("minbase", Variant::Required),
            ("buildd", Variant::Buildd),
            ("important", Variant::Important),
            ("debootstrap", Variant::Important),
            ("-", Variant::Important),
            ("standard", Variant::Standard),
            ("custom", Variant::Custom),
        ] {
            assert_eq!(name.parse::<Variant>().unwrap(), v);
        }
        let e = "fat".parse::<Variant>().unwrap_err();
        assert!(e.to_string().contains("\"fat\""), "{e}");
    }

    #[test]
    fn essential_variant_is_essential_closure() {
        let text = archive();
        let u = universe(&text);
        assert_eq!(
            names(&u, Variant::Essential, &[]),
            [
                "base-files",
                "dpkg",
                "gcc-12-base",
                "libc6",
                "libgcc-s1",
                "mawk",
                "tar"
            ]
        );
    }

    #[test]
    fn apt_minbase_buildd_important_standard() {
        let text = archive();
        let u = universe(&text);
        let apt = names(&u, Variant::Apt, &[]);
        assert!(apt.contains(&"apt".into()) && apt.contains(&"libapt-pkg6.0".into()));
        assert!(
            !apt.contains(&"login".into()),
            "login is required, not essential"
        );

        let minbase = names(&u, Variant::Required, &[]);
        assert!(minbase.contains(&"login".into()) && minbase.contains(&"apt".into()));
        assert!(!minbase.contains(&"cron".into()));

        let buildd = names(&u, Variant::Buildd, &[]);
        assert!(buildd.contains(&"build-essential".into()));

        let important = names(&u, Variant::Important, &[]);
        assert!(important.contains(&"cron".into()) && important.contains(&"gpgv".into()));
        assert!(!important.contains(&"less".into()));

        let standard = names(&u, Variant::Standard, &[]);
        assert!(standard.contains(&"less".into()));
        assert!(!standard.contains(&"vim".into()) && !standard.contains(&"gawk".into()));

        assert_eq!(names(&u, Variant::Custom, &["less"]), ["less"]);
    }

    #[test]
    fn pre_depends_resolve_to_selected_packages() {
        let text = archive();
        let u = universe(&text);
        let sel = u.resolve(Variant::Required, &[]).unwrap();
        let dpkg = u.get("dpkg").unwrap();
        assert_eq!(sel.pre_depends(dpkg).unwrap(), ["libc6", "tar"]);
        // Through Provides: base-files Pre-Depends awk, which mawk provides.
        let base = u.get("base-files").unwrap();
        assert_eq!(sel.pre_depends(base).unwrap(), ["mawk"]);
        assert!(sel.pre_depends(u.get("apt").unwrap()).unwrap().is_empty());
    }

    #[test]
    fn requested_is_what_the_variant_and_include_named() {
        let text = archive();
        let u = universe(&text);
        let sel = u.resolve(Variant::Required, &["less"]).unwrap();
        for name in ["apt", "login", "less", "mawk", "dpkg"] {
            assert!(sel.requested(name), "{name} was asked for");
        }
        // Pulled in only as dependencies: apt marks these automatically installed.
        for name in ["libapt-pkg6.0", "gpgv", "libc6"] {
            assert!(!sel.requested(name), "{name} is a dependency");
        }
        assert!(!sel.requested("vim"), "not selected at all");
    }

    #[test]
    fn alternatives_take_first_satisfiable_or_already_selected() {
        let text = archive();
        let u = universe(&text);
        // apt: "gpgv | gpgv2" → gpgv, the first alternative.
        let minbase = names(&u, Variant::Required, &[]);
        assert!(minbase.contains(&"gpgv".into()) && !minbase.contains(&"gpgv2".into()));
        // With gpgv2 already included, it satisfies the entry; gpgv is not added.
        let with = names(&u, Variant::Required, &["gpgv2"]);
        assert!(with.contains(&"gpgv2".into()) && !with.contains(&"gpgv".into()));
    }

    #[test]
    fn virtual_packages_resolve_through_provides() {
        let text = archive();
        let u = universe(&text);
        // base-files Pre-Depends awk: mawk (required) is preferred over gawk
        // (optional) although gawk sorts first by name.
        let ess = names(&u, Variant::Essential, &[]);
        assert!(ess.contains(&"mawk".into()) && !ess.contains(&"gawk".into()));
        // gawk included first satisfies awk; mawk is then not pulled in.
        let ess = names(&u, Variant::Essential, &["gawk"]);
        assert!(ess.contains(&"gawk".into()) && !ess.contains(&"mawk".into()));
        // A virtual name may be included: the preferred provider.
        assert_eq!(names(&u, Variant::Custom, &["awk"]), ["mawk"]);
        // Equal priority: by name.
        let text = [p("zz", "1", "Provides: v"), p("aa", "1", "Provides: v")].concat();
        assert_eq!(names(&universe(&text), Variant::Custom, &["v"]), ["aa"]);
    }

    #[test]
    fn versioned_provides_are_respected() {
        let text = [
            p("want-any", "1", "Depends: virt"),
            p("want-new", "1", "Depends: virt (>= 2)"),
            p("want-old", "1", "Depends: virt (<< 2)"),
            p("prov-unversioned", "9", "Provides: virt"),
            p("prov-v1", "1", "Provides: virt (= 1.5)"),
            p("prov-v3", "1", "Provides: virt (= 3)"),
        ]
        .concat();
        let u = universe(&text);
        assert_eq!(
            names(&u, Variant::Custom, &["want-any"]),
            ["prov-unversioned", "want-any"]
        );
        assert_eq!(
            names(&u, Variant::Custom, &["want-new"]),
            ["prov-v3", "want-new"]
        );
        assert_eq!(
            names(&u, Variant::Custom, &["want-old"]),
            ["prov-v1", "want-old"]
        );
    }

    #[test]
    fn version_constraints_pick_alternatives_and_report_unmet() {
        let text = [
            p("a", "1", "Depends: b (>= 2) | c"),
            p("b", "1.5", ""),
            p("c", "1", ""),
            p("d", "1", "Depends: b (>= 2)"),
            p(
                "e",
                "1",
                "Pre-Depends: nosuch | b (>> 9)\nDepends: c, missing (= 1)",
            ),
        ]
        .concat();
        let u = universe(&text);
        assert_eq!(names(&u, Variant::Custom, &["a"]), ["a", "c"]);
        let err = u.resolve(Variant::Custom, &["d", "e"]).err().unwrap();
        let ResolveError::Unsatisfiable(unmet) = &err else {
            panic!("{err}")
        };
        let shown: Vec<_> = unmet.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "d 1 Depends: b (>= 2)",
                "e 1 Depends: missing (= 1)",
                "e 1 Pre-Depends: nosuch | b (>> 9)",
            ]
        );
        assert!(err
            .to_string()
            .starts_with("unsatisfiable dependencies: d 1 Depends: b (>= 2); "));
    }

    #[test]
    fn unknown_include_and_missing_variant_package_are_named() {
        let text = p("x", "1", "");
        let u = universe(&text);
        let e = u.resolve(Variant::Custom, &["nope"]).err().unwrap();
        assert_eq!(
            e.to_string(),
            "no package nope for amd64 (wanted by --include)"
        );
        let e = u.resolve(Variant::Apt, &[]).err().unwrap();
        assert_eq!(
            e.to_string(),
            "no package apt for amd64 (wanted by variant apt)"
        );
        assert!(u.resolve(Variant::Custom, &["Bad Name"]).is_err());
    }

    #[test]
    fn arch_qualifiers_follow_multi_arch() {
        let text = [
            p("py-allowed", "3", "Multi-Arch: allowed"),
            p("py-plain", "3", ""),
            p("py-foreign", "3", "Multi-Arch: foreign"),
            p("uses-any", "1", "Depends: py-allowed:any"),
            p("uses-any-bad", "1", "Depends: py-plain:any"),
            p("uses-any-foreign", "1", "Depends: py-foreign:any"),
            p("uses-native", "1", "Depends: py-plain:native"),
            p("uses-amd64", "1", "Depends: py-plain:amd64"),
            p("uses-i386", "1", "Depends: py-plain:i386"),
            p(
                "uses-restricted",
                "1",
                "Depends: py-plain [amd64], nothere [!amd64]",
            ),
        ]
        .concat();
        let u = universe(&text);
        assert_eq!(
            names(&u, Variant::Custom, &["uses-any"]),
            ["py-allowed", "uses-any"]
        );
        assert_eq!(
            names(&u, Variant::Custom, &["uses-native"]),
            ["py-plain", "uses-native"]
        );
        assert_eq!(
            names(&u, Variant::Custom, &["uses-amd64"]),
            ["py-plain", "uses-amd64"]
        );
        assert_eq!(
            names(&u, Variant::Custom, &["uses-restricted"]),
            ["py-plain", "uses-restricted"]
        );
        for bad in ["uses-any-bad", "uses-any-foreign", "uses-i386"] {
            assert!(
                matches!(
                    u.resolve(Variant::Custom, &[bad]),
                    Err(ResolveError::Unsatisfiable(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn universe_keeps_native_and_all_and_the_highest_version() {
        let main = [
            p("tool", "1.0", ""),
            p("tool", "1.0", "Architecture: i386"),
            p("doc", "1", "Architecture: all"),
            p("armonly", "1", "Architecture: arm64"),
            p("lib", "2.0-1", ""),
        ]
        .concat();
        let updates = [p("lib", "2.0-1+deb12u1", ""), p("tool", "1.0~rc1", "")].concat();
        let u = Universe::from_indices(&[&main, &updates], "amd64").unwrap();
        assert_eq!(u.len(), 3);
        assert_eq!(u.arch(), "amd64");
        assert!(u.get("armonly").is_none());
        assert_eq!(u.get("doc").unwrap().arch, "all");
        assert_eq!(u.get("lib").unwrap().version.to_string(), "2.0-1+deb12u1");
        assert_eq!(u.get("tool").unwrap().version.to_string(), "1.0");
        let lib = u.get("lib").unwrap();
        assert_eq!(lib.filename, "pool/main/lib_2.0-1+deb12u1_amd64.deb");
        assert_eq!(lib.size, 1000);
        assert_eq!(lib.sha256, Digest::of(b"lib"));
        assert_eq!(lib.priority, Priority::Unknown);
        assert_eq!(lib.multi_arch, MultiArch::No);
    }

    #[test]
    fn bad_paragraphs_are_named() {
        let check = |text: String, want: &str| {
            let e = Universe::from_indices(&[&text], "amd64")
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(want), "{e:?} lacks {want:?}");
        };
        check(
            "Package: x\nVersion: 1\n\n".into(),
            "line 1: missing field Architecture",
        );
        check(
            "Package: x\nArchitecture: amd64\nVersion: 1\nSize: 1\nSHA256: x\n\n".into(),
            "missing field Filename",
        );
        check(p("x", "1:", ""), "package x: Version:");
        check(
            p("x", "1", "Essential: maybe"),
            "package x: bad Essential field",
        );
        check(p("x", "1", "Multi-Arch: sometimes"), "bad Multi-Arch field");
        check(p("x", "1", "Provides: y (>= 1)"), "package x: Provides:");
        check(
            p("x", "1", "").replace("Size: 1000", "Size: lots"),
            "bad Size field",
        );
        check(
            p("x", "1", "").replace(&Digest::of(b"x").hex(), "abc"),
            "bad SHA256 field",
        );
        for path in [
            "/etc/passwd",
            "pool/../../x.deb",
            "pool//x.deb",
            "pool/x.deb?a",
        ] {
            let text = p("x", "1", "").replace("pool/main/x_1_amd64.deb", path);
            check(text, "bad Filename field");
        }
        // Depends are parsed lazily: the error appears when the package is selected.
        let text = p("x", "1", "Depends: (>= 1)");
        let u = universe(&text);
        let e = u
            .resolve(Variant::Custom, &["x"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("package x: Depends:"), "{e}");
    }

    #[test]
    fn resolution_is_deterministic() {
        let text = archive();
        let a = names(&universe(&text), Variant::Standard, &["vim"]);
        // Same packages, paragraphs in reverse order.
        let mut paras: Vec<&str> = text.split_inclusive("\n\n").collect();
        paras.reverse();
        let reversed = paras.concat();
        let b = names(&universe(&reversed), Variant::Standard, &["vim"]);
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(a, sorted);
    }

    #[test]
    fn configure_order_puts_dependencies_first() {
        let text = archive();
        let u = universe(&text);
        let sel = u.resolve(Variant::Required, &[]).unwrap();
        let o = sel.configure_order().unwrap();
        assert_eq!(o.order.len(), sel.len());
        let pos = |n: &str| o.order.iter().position(|p| p.name == n).unwrap();
        assert!(pos("tar") < pos("dpkg"));
        assert!(pos("mawk") < pos("base-files"));
        assert!(pos("libapt-pkg6.0") < pos("apt"));
        assert!(pos("gpgv") < pos("apt"));
        assert!(pos("gcc-12-base") < pos("libgcc-s1"));
        // libc6 <-> libgcc-s1 is a Depends cycle; everything else is acyclic.
        assert_eq!(o.broken.len(), 1, "{:?}", o.broken);
        assert!(sel.download_size() >= 1000 * sel.len() as u64);
    }

    #[test]
    fn cycles_keep_pre_depends() {
        // b Pre-Depends a, a Depends b: a must go first, whatever the names say.
        let text = [p("b", "1", "Pre-Depends: a"), p("a", "1", "Depends: b")].concat();
        let (o, broken) = order(&universe(&text), &["a"]);
        assert_eq!(o, ["a", "b"]);
        assert_eq!(broken, ["a->b Depends"]);
        // Same with the names swapped.
        let text = [p("a", "1", "Pre-Depends: b"), p("b", "1", "Depends: a")].concat();
        let (o, broken) = order(&universe(&text), &["a"]);
        assert_eq!(o, ["b", "a"]);
        assert_eq!(broken, ["b->a Depends"]);
    }

    #[test]
    fn plain_cycles_break_by_name_and_feed_dependents() {
        // z → (x ↔ y) → w; c is independent.
        let text = [
            p("z", "1", "Depends: x"),
            p("x", "1", "Depends: y, w"),
            p("y", "1", "Depends: x"),
            p("w", "1", ""),
            p("c", "1", ""),
        ]
        .concat();
        let (o, broken) = order(&universe(&text), &["z", "c"]);
        assert_eq!(o, ["c", "w", "x", "y", "z"]);
        assert_eq!(broken, ["x->y Depends"]);
    }

    #[test]
    fn pre_depends_cycle_falls_back_to_name() {
        let text = [p("m", "1", "Pre-Depends: n"), p("n", "1", "Pre-Depends: m")].concat();
        let (o, broken) = order(&universe(&text), &["n"]);
        assert_eq!(o, ["m", "n"]);
        assert_eq!(broken, ["m->n PreDepends"]);
    }

    #[test]
    fn long_chains_do_not_overflow_the_stack() {
        let n = 20_000;
        let text: String = (0..n)
            .map(|i| {
                let dep = if i + 1 < n {
                    format!("Depends: p{}", i + 1)
                } else {
                    String::new()
                };
                p(&format!("p{i}"), "1", &dep)
            })
            .collect();
        let u = universe(&text);
        let sel = u.resolve(Variant::Custom, &["p0"]).unwrap();
        let o = sel.configure_order().unwrap();
        assert_eq!(o.order.first().unwrap().name, format!("p{}", n - 1));
        assert_eq!(o.order.last().unwrap().name, "p0");
    }

    #[test]
    fn universe_build_time_of_50k_packages() {
        let text: String = (0..50_000)
            .map(|i| {
                p(
                    &format!("pkg{i}"),
                    &format!("1:{i}.2-3"),
                    "Priority: optional\nDepends: libc6 (>= 2.34), libfoo | libbar\nProvides: virt (= 1)\nDescription: synthetic\n more text\n",
                )
            })
            .collect();
        let start = std::time::Instant::now();
        let u = universe(&text);
        let elapsed = start.elapsed();
        assert_eq!(u.len(), 50_000);
        println!("resolve: universe of {} packages in {elapsed:?}", u.len());
        assert!(
            elapsed.as_secs() < 30,
            "universe build too slow: {elapsed:?}"
        );
    }
}
