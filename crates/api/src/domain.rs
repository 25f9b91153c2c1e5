//! The API's words, as types: a named certificate's scope, type and usage, and a
//! certificate's status. On the wire each is its lowercase word; an unknown word is
//! refused naming the ones there are. The datastore keeps the words as text; they become
//! these types where they are read.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Defines a word enum: `as_str`, `ALL`, `Display`, `FromStr` (the refusal names `what`
/// and every word), and serde through the same parse.
macro_rules! words {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "lowercase", try_from = "String")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every word, in the order they are listed to people.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|w| w.as_str() == s)
                    .ok_or_else(|| format!("unknown {} {s:?}; use {}", $what, listed($name::ALL)))
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

/// `a, b or c`.
fn listed<T: fmt::Display>(words: &[T]) -> String {
    let words: Vec<String> = words.iter().map(ToString::to_string).collect();
    match words.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => words.concat(),
    }
}

words! {
    /// Who holds a named certificate.
    #[derive(Default)]
    Scope, "scope" {
        /// One certificate and key for every node, issued or set on the server.
        #[default]
        Cluster = "cluster",
        /// One per node, its key made on the node.
        Node = "node",
    }
}

words! {
    /// Where a named certificate comes from.
    #[derive(Default)]
    Kind, "type" {
        /// Issued by the cluster's CA.
        #[default]
        Selfsigned = "selfsigned",
        /// Uploaded by an admin.
        Provided = "provided",
        /// Read from a directory the server watches.
        Secret = "secret",
    }
}

words! {
    /// What a named certificate is used for, and so which CA issues it.
    #[derive(Default)]
    Usage, "usage" {
        /// TLS server (`server-ca`).
        #[default]
        Server = "server",
        /// TLS client (`client-ca`).
        Client = "client",
        /// Both, between peers (`peer-ca`).
        Peer = "peer",
    }
}

words! {
    /// Where a certificate stands, judged now.
    Status, "status" {
        /// Valid, not revoked, not replaced.
        Active = "active",
        /// Past its not-after.
        Expired = "expired",
        /// Replaced by another (a renewal, a new version): still valid until it expires.
        Superseded = "superseded",
        Revoked = "revoked",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_read_and_write_as_they_did_as_text() {
        assert_eq!(
            serde_json::to_string(&Kind::Selfsigned).unwrap(),
            "\"selfsigned\""
        );
        assert_eq!(
            serde_json::from_str::<Status>("\"superseded\"").unwrap(),
            Status::Superseded
        );
        let refused = serde_json::from_str::<Scope>("\"fleet\"").unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("unknown scope \"fleet\"; use cluster or node"),
            "{refused}"
        );
        assert_eq!(
            "x".parse::<Kind>().unwrap_err(),
            "unknown type \"x\"; use selfsigned, provided or secret"
        );
        assert_eq!(
            "x".parse::<Status>().unwrap_err(),
            "unknown status \"x\"; use active, expired, superseded or revoked"
        );
        for usage in Usage::ALL {
            assert_eq!(usage.as_str().parse::<Usage>().unwrap(), *usage);
        }
        assert!(Scope::Node == "node");
    }
}
