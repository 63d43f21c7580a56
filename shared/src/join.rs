//! Join tokens (`flotilla-hub token create`, `flotilla-agent join`): the format both sides
//! parse. `FLT1.<sha256 hex of the hub's CA certificate file, or "-" for a plain-HTTP hub>.<id:
//! 12 hex digits>.<secret>`. The agent trusts the hub only if the CA it serves has that hash.

/// The parts of a join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// SHA-256 (hex) of the hub's CA certificate file; `None` for a plain-HTTP hub.
    pub ca_hash: Option<String>,
    pub id: String,
    pub secret: String,
}

impl Token {
    pub fn parse(s: &str) -> Result<Token, String> {
        let bad = |why: &str| {
            format!("not a Flotilla join token ({why}); get one with `flotilla-hub token create`")
        };
        let parts: Vec<&str> = s.trim().split('.').collect();
        let [version, ca, id, secret] = parts[..] else { return Err(bad("it has 4 dot-separated parts")) };
        if version != "FLT1" {
            return Err(bad("it starts with FLT1"));
        }
        let ca_hash = match ca {
            "-" => None,
            h if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => Some(h.to_ascii_lowercase()),
            _ => return Err(bad("the CA hash is 64 hex digits or -")),
        };
        if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the id is 12 hex digits"));
        }
        if secret.len() < 32 {
            return Err(bad("the secret is too short"));
        }
        Ok(Token { ca_hash, id: id.to_string(), secret: secret.to_string() })
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FLT1.{}.{}.{}", self.ca_hash.as_deref().unwrap_or("-"), self.id, self.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_say_why() {
        let t = Token { ca_hash: Some("ab".repeat(32)), id: "0123456789ab".into(), secret: "s".repeat(43) };
        assert_eq!(Token::parse(&t.to_string()), Ok(t.clone()));
        let plain = Token { ca_hash: None, ..t };
        assert_eq!(Token::parse(&plain.to_string()), Ok(plain));
        for (bad, why) in [
            ("K10abc::server:xyz", "4 dot-separated parts"),
            ("FLT2.-.0123456789ab.sssssssssssssssssssssssssssssssssss", "FLT1"),
            ("FLT1.abc.0123456789ab.sssssssssssssssssssssssssssssssssss", "CA hash"),
            ("FLT1.-.xyz.sssssssssssssssssssssssssssssssssss", "id"),
            ("FLT1.-.0123456789ab.short", "too short"),
        ] {
            assert!(Token::parse(bad).unwrap_err().contains(why), "{bad}");
        }
    }
}
