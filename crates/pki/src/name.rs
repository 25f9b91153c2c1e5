//! Distinguished names: read from certificates and CSRs, compared attribute by attribute,
//! and written back with the same string types so issuer and subject names match byte for
//! byte.
use std::fmt;

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
