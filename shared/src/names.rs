//! Name rules as Kubernetes applies them: DNS-1123 labels and subdomains, DNS-1035 labels,
//! IANA service (port) names, label keys and values, C identifiers.
//!
//! Each check returns `Err(predicate)` phrased to follow a field path, for example
//! `metadata.name must be a DNS-1123 subdomain ...`.

/// A lowercase RFC 1123 label: at most 63 characters of `a-z`, `0-9` and `-`, starting and
/// ending with an alphanumeric character (namespaces, container names, node names).
pub fn dns1123_label(s: &str) -> Result<(), String> {
    if is_dns1123_label(s) {
        Ok(())
    } else {
        Err(format!(
            "must be a DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit (got {})",
            got(s, 63)
        ))
    }
}

/// `"value"`, with its length when that is what breaks the rule.
fn got(s: &str, max: usize) -> String {
    if s.len() > max {
        format!("{} characters, more than {max}", s.len())
    } else {
        format!("{s:?}")
    }
}

/// A lowercase RFC 1123 subdomain: dot-separated labels, at most 253 characters (most object
/// names).
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if is_dns1123_subdomain(s) {
        Ok(())
    } else {
        Err(format!(
            "must be a DNS-1123 subdomain: at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (got {})",
            got(s, 253)
        ))
    }
}

/// An RFC 1035 label: like a DNS-1123 label but starting with a letter (Service names).
pub fn dns1035_label(s: &str) -> Result<(), String> {
    if is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase() {
        Ok(())
    } else {
        Err(format!(
            "must be a DNS-1035 label: at most 63 lowercase letters, digits and '-', starting with a letter and ending with a letter or digit (got {})",
            got(s, 63)
        ))
    }
}

pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// An IANA service name, as container port names must be: at most 15 characters of `a-z`,
/// `0-9` and `-`, at least one letter, no leading, trailing or doubled `-`.
pub fn iana_svc_name(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 15
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(|c| c.is_ascii_lowercase())
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be an IANA service name: at most 15 lowercase letters, digits and '-', with at least one letter and no leading, trailing or doubled '-' (got {})",
            if s.len() > 15 { format!("{s:?}, {} characters", s.len()) } else { format!("{s:?}") }
        ))
    }
}

/// A label or annotation key: an optional DNS subdomain prefix and `/`, then a name of at most
/// 63 characters of alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
pub fn qualified_name(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let prefix_ok = prefix.is_none_or(is_dns1123_subdomain);
    if prefix_ok && is_label_value(name) && !name.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "has an invalid key {s:?}: expected an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        ))
    }
}

/// A label value: empty, or at most 63 characters of alphanumerics, `-`, `_`, `.`, starting and
/// ending alphanumeric.
pub fn label_value(s: &str) -> Result<(), String> {
    if is_label_value(s) {
        Ok(())
    } else {
        Err(format!(
            "has an invalid value {s:?}: expected at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        ))
    }
}

fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return true;
    }
    b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// An environment variable name: printable ASCII without `=` (Kubernetes' relaxed rule).
pub fn env_var_name(s: &str) -> Result<(), String> {
    if !s.is_empty() && s.bytes().all(|c| (b' '..=b'~').contains(&c) && c != b'=') {
        Ok(())
    } else {
        Err(format!(
            "must be a non-empty environment variable name of printable ASCII without '=' (got {s:?})"
        ))
    }
}

/// A ConfigMap or Secret key: at most 253 characters of alphanumerics, `-`, `_` and `.`.
pub fn config_key(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && s != "."
        && s != "..";
    if ok {
        Ok(())
    } else {
        Err(format!("has an invalid key {s:?}: expected at most 253 letters, digits, '-', '_' and '.'"))
    }
}

/// The closest candidate within two edits of `word`, for "did you mean" hints.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2 && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        for ok in ["a", "web", "web-1", "0abc", &"a".repeat(63)] {
            assert!(dns1123_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Web", "-a", "a-", "a.b", "a_b", &"a".repeat(64)] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
        assert!(dns1123_subdomain("my.app-1.example").is_ok());
        assert!(dns1123_subdomain("a..b").is_err());
        assert!(dns1123_subdomain(&"a.".repeat(127)).is_err());
        assert!(dns1035_label("web").is_ok());
        assert!(dns1035_label("1web").is_err());
    }

    #[test]
    fn port_names() {
        assert!(iana_svc_name("http").is_ok());
        assert!(iana_svc_name("http-alt2").is_ok());
        for bad in ["80", "http--x", "-http", "a-very-long-port-name", "HTTP"] {
            assert!(iana_svc_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        for ok in ["app", "app.kubernetes.io/name", "a_b.c-d", "x/y"] {
            assert!(qualified_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/app", "Foo.com/x", "a/b/c", "-app", "app/"] {
            assert!(qualified_name(bad).is_err(), "{bad}");
        }
        assert!(label_value("").is_ok());
        assert!(label_value("v1.2_3").is_ok());
        assert!(label_value("bad value").is_err());
        assert!(label_value("-x").is_err());
    }

    #[test]
    fn did_you_mean() {
        let c = ["image", "imagePullPolicy", "name"];
        assert_eq!(closest("imagee", c), Some("image"));
        assert_eq!(closest("imagePullPolicyy", c), Some("imagePullPolicy"));
        assert_eq!(closest("lifecycle", c), None);
    }
}
