//! Bounds on every input string. Anything longer or malformed is refused at the domain
//! boundary so that no layer below has to wonder about size.

use crate::FieldError;

pub const MAX_NAME: usize = 128;
pub const MAX_TEXT: usize = 4096;
pub const MAX_SHORT: usize = 256;
pub const MAX_LIST: usize = 1000;

/// Identifier-like names: usernames, role names, group names, resource type names.
/// Letters, digits and `._-@:`; must start with a letter or digit.
pub fn name(errors: &mut Vec<FieldError>, field: &str, value: &str) {
    if value.is_empty() {
        errors.push(FieldError::new(field, "must not be empty"));
        return;
    }
    if value.chars().count() > MAX_NAME {
        errors.push(FieldError::new(field, format!("must be at most {MAX_NAME} characters")));
        return;
    }
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_alphanumeric());
    let rest_ok = value.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':'));
    if !first_ok || !rest_ok {
        errors.push(FieldError::new(
            field,
            "may contain only letters, digits and . _ - @ : and must start with a letter or digit",
        ));
    }
}

/// Free text (display names, descriptions): bounded, no control characters except newline/tab.
pub fn text(errors: &mut Vec<FieldError>, field: &str, value: &str, max: usize) {
    if value.chars().count() > max {
        errors.push(FieldError::new(field, format!("must be at most {max} characters")));
    } else if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        errors.push(FieldError::new(field, "must not contain control characters"));
    }
}

pub fn opt_text(errors: &mut Vec<FieldError>, field: &str, value: &Option<String>, max: usize) {
    if let Some(v) = value {
        text(errors, field, v, max);
    }
}

pub fn non_empty_text(errors: &mut Vec<FieldError>, field: &str, value: &str, max: usize) {
    if value.trim().is_empty() {
        errors.push(FieldError::new(field, "must not be empty"));
    } else {
        text(errors, field, value, max);
    }
}

pub fn email(errors: &mut Vec<FieldError>, field: &str, value: &str) {
    text(errors, field, value, MAX_SHORT);
    let ok = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !value.contains(char::is_whitespace)
        }
        None => false,
    };
    if !ok {
        errors.push(FieldError::new(field, "must be an email address like name@example.org"));
    }
}

pub fn list_len<T>(errors: &mut Vec<FieldError>, field: &str, value: &[T], max: usize) {
    if value.len() > max {
        errors.push(FieldError::new(field, format!("must have at most {max} entries")));
    }
}

pub fn finish(errors: Vec<FieldError>) -> Result<(), crate::DomainError> {
    if errors.is_empty() { Ok(()) } else { Err(crate::DomainError::Invalid(errors)) }
}

/// At most 64 characters of `s`, for echoing bad input in messages.
pub fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}
