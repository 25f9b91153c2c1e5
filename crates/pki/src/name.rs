//! Distinguished names: read from certificates and CSRs, compared attribute by attribute,
//! and written back with the same string types so issuer and subject names match byte for
//! byte.
use std::fmt;
use std::str::FromStr;

use rcgen::string::{BmpString, Ia5String, PrintableString, TeletexString, UniversalString};
use rcgen::{DnType, DnValue};
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::x509::X509Name;

use crate::Error;

/// An attribute type of a distinguished name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NameAttribute {
    CommonName,
    Organization,
    OrganizationalUnit,
    Country,
    StateOrProvince,
    Locality,
    /// Any other attribute, by its dotted OID.
    Other(String),
}

impl NameAttribute {
    fn oid(&self) -> Vec<u64> {
        match self {
            NameAttribute::CommonName => vec![2, 5, 4, 3],
            NameAttribute::Country => vec![2, 5, 4, 6],
            NameAttribute::Locality => vec![2, 5, 4, 7],
            NameAttribute::StateOrProvince => vec![2, 5, 4, 8],
            NameAttribute::Organization => vec![2, 5, 4, 10],
            NameAttribute::OrganizationalUnit => vec![2, 5, 4, 11],
            NameAttribute::Other(dotted) => {
                dotted.split('.').filter_map(|p| p.parse().ok()).collect()
            }
        }
    }

    fn from_oid(oid: &[u64]) -> NameAttribute {
        match oid {
            [2, 5, 4, 3] => NameAttribute::CommonName,
            [2, 5, 4, 6] => NameAttribute::Country,
            [2, 5, 4, 7] => NameAttribute::Locality,
            [2, 5, 4, 8] => NameAttribute::StateOrProvince,
            [2, 5, 4, 10] => NameAttribute::Organization,
            [2, 5, 4, 11] => NameAttribute::OrganizationalUnit,
            other => NameAttribute::Other(
                other
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join("."),
            ),
        }
    }

    /// The largest value RFC 5280 allows for the attribute (its `ub-*` bound), in
    /// characters; attributes it gives no bound get 256.
    fn upper_bound(&self) -> usize {
        match self {
            NameAttribute::CommonName
            | NameAttribute::Organization
            | NameAttribute::OrganizationalUnit => 64,
            NameAttribute::StateOrProvince | NameAttribute::Locality => 128,
            NameAttribute::Country => 2,
            NameAttribute::Other(_) => 256,
        }
    }

    fn dn_type(&self) -> DnType {
        match self {
            NameAttribute::CommonName => DnType::CommonName,
            NameAttribute::Organization => DnType::OrganizationName,
            NameAttribute::OrganizationalUnit => DnType::OrganizationalUnitName,
            NameAttribute::Country => DnType::CountryName,
            NameAttribute::StateOrProvince => DnType::StateOrProvinceName,
            NameAttribute::Locality => DnType::LocalityName,
            NameAttribute::Other(_) => DnType::CustomDnType(self.oid()),
        }
    }
}

/// `CN`, `O`, `OU`, `C`, `ST`, `L` (any case) or a dotted OID such as `2.5.4.5`.
impl FromStr for NameAttribute {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "CN" => NameAttribute::CommonName,
            "O" => NameAttribute::Organization,
            "OU" => NameAttribute::OrganizationalUnit,
            "C" => NameAttribute::Country,
            "ST" => NameAttribute::StateOrProvince,
            "L" => NameAttribute::Locality,
            oid if !oid.is_empty()
                && oid.split('.').count() >= 2
                && oid
                    .split('.')
                    .all(|p| !p.is_empty() && p.parse::<u64>().is_ok()) =>
            {
                NameAttribute::Other(oid.to_owned())
            }
            _ => {
                return Err(format!(
                    "unknown name attribute {s:?}; use CN, O, OU, C, ST, L or a dotted OID"
                ));
            }
        })
    }
}

impl fmt::Display for NameAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameAttribute::CommonName => "CN",
            NameAttribute::Organization => "O",
            NameAttribute::OrganizationalUnit => "OU",
            NameAttribute::Country => "C",
            NameAttribute::StateOrProvince => "ST",
            NameAttribute::Locality => "L",
            NameAttribute::Other(oid) => oid,
        })
    }
}

/// How a value was encoded, kept so a name is written back exactly as it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StringKind {
    Utf8,
    Printable,
    Ia5,
    Teletex,
    Bmp,
    Universal,
}

#[derive(Debug, Clone)]
struct Entry {
    attribute: NameAttribute,
    value: String,
    kind: StringKind,
    /// Shares its RDN with the previous entry (a multi-valued RDN such as `CN=a+O=b`).
    joined: bool,
}

/// The most attributes a name Evergreen issues may hold.
const MAX_ATTRIBUTES: usize = 16;

/// A distinguished name: an ordered list of attributes.
///
/// Two names are equal when they hold the same attributes with the same values in the
/// same order, whatever string type each value was encoded with.
#[derive(Debug, Clone, Default)]
pub struct DistinguishedName {
    entries: Vec<Entry>,
}

impl DistinguishedName {
    pub fn new() -> Self {
        Self::default()
    }

    /// A name with one common name, the usual case for names Evergreen mints.
    pub fn common_name(cn: impl Into<String>) -> Self {
        Self::new().with(NameAttribute::CommonName, cn)
    }

    /// Appends an attribute, encoded as a UTF8String (PrintableString for a country).
    pub fn with(mut self, attribute: NameAttribute, value: impl Into<String>) -> Self {
        let kind = if attribute == NameAttribute::Country {
            StringKind::Printable
        } else {
            StringKind::Utf8
        };
        self.entries.push(Entry {
            attribute,
            value: value.into(),
            kind,
            joined: false,
        });
        self
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The attributes in order.
    pub fn attributes(&self) -> impl Iterator<Item = (&NameAttribute, &str)> {
        self.entries
            .iter()
            .map(|e| (&e.attribute, e.value.as_str()))
    }

    /// The first value of an attribute.
    pub fn get(&self, attribute: &NameAttribute) -> Option<&str> {
        self.attributes()
            .find(|(a, _)| *a == attribute)
            .map(|(_, v)| v)
    }

    /// Describes the first difference from `other`, or `None` when the names are equal.
    pub fn difference(&self, other: &DistinguishedName) -> Option<String> {
        for (i, mine) in self.entries.iter().enumerate() {
            match other.entries.get(i) {
                None => {
                    return Some(format!("{}={} is extra", mine.attribute, mine.value));
                }
                Some(theirs) if theirs.attribute != mine.attribute => {
                    return Some(format!(
                        "attribute {} is {}, expected {}",
                        i + 1,
                        mine.attribute,
                        theirs.attribute
                    ));
                }
                Some(theirs) if theirs.value != mine.value => {
                    return Some(format!(
                        "{} is {:?}, expected {:?}",
                        mine.attribute, mine.value, theirs.value
                    ));
                }
                Some(_) => {}
            }
        }
        other
            .entries
            .get(self.entries.len())
            .map(|missing| format!("{}={} is missing", missing.attribute, missing.value))
    }

    /// The name as [`fmt::Display`] writes it, cut to `max` characters: for messages
    /// that quote a name a client sent.
    pub fn abbreviated(&self, max: usize) -> String {
        let full = self.to_string();
        match full.char_indices().nth(max) {
            None => full,
            Some((i, _)) => format!("{}…", &full[..i]),
        }
    }

    /// Whether the name may go into a certificate Evergreen issues and into its logs: at
    /// most 16 attributes, each value non-empty, within RFC 5280's upper bound for its
    /// attribute (64 characters for CN, O and OU) and free of control characters.
    pub fn check_bounds(&self) -> Result<(), String> {
        if self.entries.len() > MAX_ATTRIBUTES {
            return Err(format!(
                "has {} attributes; at most {MAX_ATTRIBUTES} are allowed",
                self.entries.len()
            ));
        }
        for e in &self.entries {
            let chars = e.value.chars().count();
            if chars == 0 {
                return Err(format!("{} is empty", e.attribute));
            }
            let bound = e.attribute.upper_bound();
            if chars > bound {
                return Err(format!(
                    "{} is {chars} characters long; RFC 5280 allows at most {bound}",
                    e.attribute
                ));
            }
            if e.value.chars().any(char::is_control) {
                return Err(format!(
                    "{} holds a control character ({:?}); names may hold printable characters only",
                    e.attribute,
                    e.value.escape_debug().to_string()
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn from_x509(name: &X509Name<'_>) -> Result<Self, Error> {
        let mut entries = Vec::new();
        for rdn in name.iter() {
            for (i, atv) in rdn.iter().enumerate() {
                let oid: Vec<u64> = atv
                    .attr_type()
                    .iter()
                    .ok_or_else(|| name_error(name, "an attribute type OID is too large"))?
                    .collect();
                let value = atv.attr_value();
                let data = value.data;
                let utf8 = |kind| {
                    std::str::from_utf8(data)
                        .map(|s| (s.to_owned(), kind))
                        .map_err(|_| name_error(name, "an attribute value is not valid text"))
                };
                let (value, kind) = match value.header.tag() {
                    Tag::Utf8String => utf8(StringKind::Utf8)?,
                    Tag::PrintableString => utf8(StringKind::Printable)?,
                    Tag::Ia5String => utf8(StringKind::Ia5)?,
                    Tag::T61String => utf8(StringKind::Teletex)?,
                    Tag::BmpString => {
                        if data.len() % 2 != 0 {
                            return Err(name_error(name, "a BMPString value has an odd length"));
                        }
                        let units: Vec<u16> = data
                            .chunks_exact(2)
                            .map(|c| u16::from_be_bytes([c[0], c[1]]))
                            .collect();
                        let s = String::from_utf16(&units)
                            .map_err(|_| name_error(name, "a BMPString value is not valid"))?;
                        (s, StringKind::Bmp)
                    }
                    Tag::UniversalString => {
                        let s: Option<String> = data
                            .chunks(4)
                            .map(|c| {
                                let c: [u8; 4] = c.try_into().ok()?;
                                char::from_u32(u32::from_be_bytes(c))
                            })
                            .collect();
                        let s = s.ok_or_else(|| {
                            name_error(name, "a UniversalString value is not valid")
                        })?;
                        (s, StringKind::Universal)
                    }
                    other => {
                        return Err(name_error(
                            name,
                            &format!("an attribute value has unsupported type {other}"),
                        ));
                    }
                };
                entries.push(Entry {
                    attribute: NameAttribute::from_oid(&oid),
                    value,
                    kind,
                    joined: i > 0,
                });
            }
        }
        Ok(DistinguishedName { entries })
    }

    /// The name as rcgen writes it. rcgen cannot repeat an attribute or join several in
    /// one RDN; such names are refused rather than silently changed.
    pub(crate) fn to_rcgen(&self) -> Result<rcgen::DistinguishedName, Error> {
        let mut dn = rcgen::DistinguishedName::new();
        for (i, e) in self.entries.iter().enumerate() {
            if e.joined {
                return Err(Error::Name {
                    name: self.to_string(),
                    reason:
                        "has a multi-valued RDN (joined with '+'), which Evergreen cannot issue"
                            .into(),
                });
            }
            if self.entries[..i].iter().any(|p| p.attribute == e.attribute) {
                return Err(Error::Name {
                    name: self.to_string(),
                    reason: format!(
                        "repeats the attribute {}, which Evergreen cannot issue; use it once",
                        e.attribute
                    ),
                });
            }
            let bad = |reason: rcgen::Error| Error::Name {
                name: self.to_string(),
                reason: format!("{}={:?} cannot be encoded: {reason}", e.attribute, e.value),
            };
            let value = match e.kind {
                StringKind::Utf8 => DnValue::Utf8String(e.value.clone()),
                StringKind::Printable => DnValue::PrintableString(
                    PrintableString::try_from(e.value.as_str()).map_err(bad)?,
                ),
                StringKind::Ia5 => {
                    DnValue::Ia5String(Ia5String::try_from(e.value.as_str()).map_err(bad)?)
                }
                StringKind::Teletex => {
                    DnValue::TeletexString(TeletexString::try_from(e.value.as_str()).map_err(bad)?)
                }
                StringKind::Bmp => {
                    DnValue::BmpString(BmpString::try_from(e.value.as_str()).map_err(bad)?)
                }
                StringKind::Universal => DnValue::UniversalString(
                    UniversalString::try_from(e.value.as_str()).map_err(bad)?,
                ),
            };
            dn.push(e.attribute.dn_type(), value);
        }
        Ok(dn)
    }
}

fn name_error(name: &X509Name<'_>, reason: &str) -> Error {
    Error::Name {
        name: name.to_string(),
        reason: reason.to_owned(),
    }
}

impl PartialEq for DistinguishedName {
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len()
            && self.entries.iter().zip(&other.entries).all(|(a, b)| {
                a.attribute == b.attribute && a.value == b.value && a.joined == b.joined
            })
    }
}

impl Eq for DistinguishedName {}

/// RFC 4514 style, in the order the attributes are encoded: `CN=node-1, O=evergreen:nodes`.
impl fmt::Display for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entries.is_empty() {
            return f.write_str("(empty)");
        }
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(if e.joined { "+" } else { ", " })?;
            }
            write!(f, "{}=", e.attribute)?;
            for (j, c) in e.value.chars().enumerate() {
                let leading = j == 0 && (c == '#' || c == ' ');
                if leading || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Reads a name as people write it: `CN=app, O=team` (in the order Evergreen prints names,
/// a backslash before a `,`, `+` or `=` that is part of a value), or OpenSSL's
/// `/CN=app/O=team`.
impl FromStr for DistinguishedName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (text, separator) = match s.strip_prefix('/') {
            Some(rest) => (rest, '/'),
            None => (s, ','),
        };
        let mut name = DistinguishedName::new();
        let mut part = String::new();
        let mut parts = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(next) => {
                        part.push('\\');
                        part.push(next);
                    }
                    None => return Err(format!("{s:?} ends with a lone backslash")),
                },
                c if c == separator => parts.push(std::mem::take(&mut part)),
                '+' if separator == ',' => {
                    return Err(format!(
                        "{s:?} has a multi-valued RDN ('+'), which Evergreen cannot issue; escape it as \\+"
                    ));
                }
                c => part.push(c),
            }
        }
        parts.push(part);
        for part in parts {
            if part.trim().is_empty() && separator == ',' {
                return Err(format!("{s:?} has an empty attribute"));
            }
            let Some((attribute, value)) = part.split_once('=') else {
                return Err(format!("{part:?} in {s:?} is not ATTRIBUTE=VALUE"));
            };
            let attribute: NameAttribute = attribute.parse()?;
            let mut unescaped = String::new();
            let mut value_chars = value.trim().chars();
            while let Some(c) = value_chars.next() {
                if c == '\\' {
                    unescaped.extend(value_chars.next());
                } else {
                    unescaped.push(c);
                }
            }
            name = name.with(attribute, unescaped);
        }
        if name.is_empty() {
            return Err("the name is empty".into());
        }
        Ok(name)
    }
}
