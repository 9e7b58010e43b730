//! Maven's `ComparableVersion` ordering (Maven 3.8.x/3.9 algorithm, including MNG-7644's
//! "`.X` nests like `-X`", without 3.9's CombinationItem): the version is split on
//! `.`, `-` and digit/letter transitions into numbers and qualifiers; `-` and transitions open a
//! nested list; trailing "null" items (`0`, `""`, `ga`, `final`, `release`) are trimmed from
//! every list; qualifiers order alpha < beta < milestone < rc = cr < snapshot < "" = ga = final =
//! release < sp < any other qualifier (lexically); `a1`/`b1`/`m1` are alpha/beta/milestone when
//! followed by a digit; numbers sort after qualifiers and lists.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::{cmp_digits, ord_from_cmp, VersionError};

#[derive(Debug, Clone)]
enum Item {
    Int(Box<str>),
    /// The comparable form of a qualifier: its rank, then the text for unknown qualifiers.
    Str(u8, Box<str>),
    List(Vec<Item>),
}

const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];
const RELEASE_RANK: u8 = 5;

fn string_item(value: &str, followed_by_digit: bool) -> Item {
    let mut v = value;
    if followed_by_digit && v.len() == 1 {
        v = match v {
            "a" => "alpha",
            "b" => "beta",
            "m" => "milestone",
            other => other,
        };
    }
    v = match v {
        "ga" | "final" | "release" => "",
        "cr" => "rc",
        other => other,
    };
    match QUALIFIERS.iter().position(|q| *q == v) {
        Some(rank) => Item::Str(rank as u8, "".into()),
        None => Item::Str(QUALIFIERS.len() as u8, v.into()),
    }
}

fn parse_item(is_digit: bool, buf: &str, followed_by_digit: bool) -> Item {
    if is_digit {
        Item::Int(buf.trim_start_matches('0').into())
    } else {
        string_item(buf, followed_by_digit)
    }
}

impl Item {
    fn is_null(&self) -> bool {
        match self {
            Item::Int(d) => d.is_empty(),
            Item::Str(rank, _) => *rank == RELEASE_RANK,
            Item::List(l) => l.is_empty(),
        }
    }

    /// `ComparableVersion`'s `Item.compareTo`, where `None` stands for Java's `null` (the
    /// shorter list ran out).
    fn compare(&self, other: Option<&Item>) -> Ordering {
        match (self, other) {
            (Item::Int(d), None) => {
                if d.is_empty() {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                }
            }
            (Item::Int(a), Some(Item::Int(b))) => cmp_digits(a, b),
            (Item::Int(_), Some(_)) => Ordering::Greater,
            (Item::Str(rank, text), None) => (*rank, &**text).cmp(&(RELEASE_RANK, "")),
            (Item::Str(_, _), Some(Item::Int(_) | Item::List(_))) => Ordering::Less,
            (Item::Str(ra, ta), Some(Item::Str(rb, tb))) => (ra, ta).cmp(&(rb, tb)),
            (Item::List(l), None) => match l.first() {
                None => Ordering::Equal,
                Some(first) => first.compare(None),
            },
            (Item::List(_), Some(Item::Int(_))) => Ordering::Less,
            (Item::List(_), Some(Item::Str(_, _))) => Ordering::Greater,
            (Item::List(a), Some(Item::List(b))) => compare_lists(a, b),
        }
    }
}

fn compare_lists(a: &[Item], b: &[Item]) -> Ordering {
    let n = a.len().max(b.len());
    for i in 0..n {
        let o = match (a.get(i), b.get(i)) {
            (None, None) => Ordering::Equal,
            (None, Some(r)) => r.compare(None).reverse(),
            (Some(l), r) => l.compare(r),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn normalize(list: &mut Vec<Item>) {
    for item in list.iter_mut() {
        if let Item::List(inner) = item {
            normalize(inner);
        }
    }
    // Scan backwards removing null items, stepping over non-null lists, stopping at the first
    // non-null number or qualifier (`ListItem.normalize`).
    let mut i = list.len();
    while i > 0 {
        i -= 1;
        if list[i].is_null() {
            list.remove(i);
        } else if !matches!(list[i], Item::List(_)) {
            break;
        }
    }
}

#[derive(Debug, Clone)]
pub struct MavenVersion {
    original: Box<str>,
    items: Vec<Item>,
}

/// Builds the nested item lists: a path of indices from the root to the list being filled.
struct Builder {
    root: Vec<Item>,
    depth: usize,
}

impl Builder {
    fn current(&mut self) -> &mut Vec<Item> {
        let mut list = &mut self.root;
        for _ in 0..self.depth {
            list = match list.last_mut() {
                Some(Item::List(l)) => l,
                _ => unreachable!("every level ends with its child list"),
            };
        }
        list
    }
    fn push(&mut self, item: Item) {
        self.current().push(item);
    }
    fn open_list(&mut self) {
        self.current().push(Item::List(Vec::new()));
        self.depth += 1;
    }
}

impl FromStr for MavenVersion {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, VersionError> {
        let version = input.trim().to_ascii_lowercase();
        if version.is_empty() {
            return Err(VersionError::new("Maven", input, "empty version"));
        }
        let bytes = version.as_bytes();
        let mut b = Builder {
            root: Vec::new(),
            depth: 0,
        };
        let mut is_digit = false;
        let mut start = 0;
        for (i, &c) in bytes.iter().enumerate() {
            if c == b'.' || c == b'-' {
                if i == start {
                    b.push(Item::Int("".into()));
                } else {
                    b.push(parse_item(is_digit, &version[start..i], false));
                }
                start = i + 1;
                if c == b'-' {
                    b.open_list();
                }
            } else if c.is_ascii_digit() {
                if !is_digit && i > start {
                    // MNG-7644: `1.0.0.X1` < `1.0.0-X2`, a qualifier after `.` nests like `-X`.
                    if !b.current().is_empty() {
                        b.open_list();
                    }
                    b.push(string_item(&version[start..i], true));
                    start = i;
                    b.open_list();
                }
                is_digit = true;
            } else {
                if is_digit && i > start {
                    b.push(parse_item(true, &version[start..i], false));
                    start = i;
                    b.open_list();
                }
                is_digit = false;
            }
        }
        if bytes.len() > start {
            if !is_digit && !b.current().is_empty() {
                b.open_list();
            }
            b.push(parse_item(is_digit, &version[start..], false));
        }
        let mut items = b.root;
        normalize(&mut items);
        Ok(MavenVersion {
            original: input.trim().into(),
            items,
        })
    }
}

impl Ord for MavenVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_lists(&self.items, &other.items)
    }
}
ord_from_cmp!(MavenVersion);

impl fmt::Display for MavenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> MavenVersion {
        s.parse().unwrap()
    }

    fn assert_order(order: &[&str]) {
        for w in order.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
            assert!(v(w[1]) > v(w[0]), "{} > {}", w[1], w[0]);
        }
    }

    #[test]
    fn documented_qualifier_order() {
        // Maven's "Version Order Specification".
        assert_order(&[
            "1-alpha",
            "1-beta",
            "1-milestone",
            "1-rc",
            "1-snapshot",
            "1",
            "1-sp",
        ]);
        assert_order(&["1-foo2", "1-foo10"]);
    }

    #[test]
    fn equalities_from_the_specification() {
        for (a, b) in [
            ("1", "1.0"),
            ("1", "1.0.0"),
            ("1.0", "1.0.0-ga"),
            ("1-ga", "1-final"),
            ("1-final", "1-release"),
            ("1-rc", "1-cr"),
            ("1-a1", "1-alpha-1"),
            ("1-b2", "1-beta-2"),
            ("1-m3", "1-milestone-3"),
            ("1.0.RC1", "1.0-rc1"),
            ("1X", "1x"),
        ] {
            assert_eq!(v(a), v(b), "{a} == {b}");
        }
    }

    #[test]
    fn comparable_version_test_suite_orderings() {
        // From Maven's ComparableVersionTest.VERSIONS_QUALIFIER and VERSIONS_NUMBER.
        assert_order(&[
            "1-alpha2snapshot",
            "1-alpha2",
            "1-alpha-123",
            "1-beta-2",
            "1-beta123",
            "1-m2",
            "1-m11",
            "1-rc",
            "1-cr2",
            "1-rc123",
            "1-SNAPSHOT",
            "1",
            "1-sp",
            "1-sp2",
            "1-sp123",
            "1-abc",
            "1-def",
            "1-pom-1",
            "1-1-snapshot",
            "1-1",
            "1-2",
            "1-123",
        ]);
        assert_order(&[
            "2.0", "2.0.a", "2-1", "2.0.2", "2.0.123", "2.1.0", "2.1-a", "2.1b", "2.1-c", "2.1-1",
            "2.1.0.1", "2.2", "2.123", "11.a2", "11.a11", "11.b2", "11.b11", "11.m2", "11.m11",
            "11", "11.a", "11b", "11c", "11m",
        ]);
    }

    #[test]
    fn log4j_versions_order() {
        assert_order(&[
            "2.0-beta9",
            "2.0-rc1",
            "2.0",
            "2.3.1",
            "2.12.2",
            "2.15.0",
            "2.16.0",
            "2.17.1",
        ]);
    }
}
