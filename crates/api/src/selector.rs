//! Label selectors written as text (`app=x,tier in (a,b),!legacy`), checked as the API server
//! parses them: a selector it would refuse is an error naming the field before anything uses it
//! (an upgrade's drain with a broken selector fails on every node).

use crate::FieldError;
use regex::Regex;
use std::sync::LazyLock;

static NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").expect("valid pattern"));
static PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").expect("valid pattern")
});
static SET: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(\S+)\s+(in|notin)\s*\((.*)\)$").expect("valid pattern"));

/// Checks the label selector `text`, the value of the policy field `field` (empty selects
/// everything).
pub fn check(field: &str, text: &str) -> Result<(), FieldError> {
    if text.trim().is_empty() {
        return Ok(());
    }
    for requirement in requirements(text).map_err(|why| FieldError::new(field, format!("{text:?}: {why}")))? {
        check_requirement(requirement.trim())
            .map_err(|why| FieldError::new(field, format!("{text:?}: {requirement:?} {why}")))?;
    }
    Ok(())
}

/// The requirements of `text`: split at the commas outside parentheses.
fn requirements(text: &str) -> Result<Vec<&str>, &'static str> {
    let (mut depth, mut start, mut parts) = (0usize, 0, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '(' if depth == 0 => depth = 1,
            '(' => return Err("has nested parentheses"),
            ')' if depth == 1 => depth = 0,
            ')' => return Err("has a ')' without its '('"),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("has a '(' without its ')'");
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn check_requirement(requirement: &str) -> Result<(), String> {
    if requirement.is_empty() {
        return Err("is empty (a stray comma?)".into());
    }
    if let Some(key) = requirement.strip_prefix('!') {
        return check_key(key.trim());
    }
    if let Some(set) = SET.captures(requirement) {
        check_key(&set[1])?;
        let values: Vec<&str> = set[3].split(',').map(str::trim).collect();
        if values.iter().all(|v| v.is_empty()) {
            return Err(format!("needs at least one value for {}", &set[2]));
        }
        return values.into_iter().try_for_each(check_value);
    }
    for operator in ["!=", "==", "=", ">", "<"] {
        if let Some((key, value)) = requirement.split_once(operator) {
            check_key(key.trim())?;
            let value = value.trim();
            if matches!(operator, ">" | "<") && value.parse::<i64>().is_err() {
                return Err(format!("compares with {value:?}, which is not an integer"));
            }
            return check_value(value);
        }
    }
    if requirement.contains(['(', ')']) || requirement.split_whitespace().count() > 1 {
        return Err("is neither `key`, `!key`, `key=value`, `key!=value` nor `key in (v1,v2)`".into());
    }
    check_key(requirement)
}

/// Checks a label key (an optional DNS-subdomain prefix and a name), as the API server does.
pub(crate) fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.len() > 253 || !PREFIX.is_match(prefix))
    {
        return Err(format!("has key {key:?}, whose prefix is not a DNS subdomain"));
    }
    if name.len() > 63 || !NAME.is_match(name) {
        return Err(format!(
            "has key {key:?}: a label name is 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks a label value (empty, or a name of at most 63 characters), as the API server does.
pub(crate) fn check_value(value: &str) -> Result<(), String> {
    if !value.is_empty() && (value.len() > 63 || !NAME.is_match(value)) {
        return Err(format!(
            "has value {value:?}: a label value is empty or 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_the_api_server_accepts_pass() {
        for good in [
            "",
            "app=web",
            "app==web,tier!=db",
            "app in (a, b),!legacy",
            "nvidia.com/ofed-driver-upgrade-drain.skip!=true",
            "environment notin (qa)",
            "app",
            "app=",
            "count>3",
        ] {
            assert_eq!(check("f", good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn broken_selectors_are_errors_naming_the_field_and_the_requirement() {
        let err = check("spec.ofedDriver.upgradePolicy.drain.podSelector", "a in (b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.ofedDriver.upgradePolicy.drain.podSelector: \"a in (b\": has a '(' without its ')'"
        );
        for bad in ["a,,b", "a in ()", "-a=b", "a=b c", "a=(b)", "Prefix.COM/a=b", "a>b", "a b", "a)"] {
            assert!(check("f", bad).is_err(), "{bad:?} should be refused");
        }
    }
}
