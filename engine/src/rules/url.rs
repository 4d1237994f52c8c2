//! Webhook target validation (SECURITY.md: "webhook targets are validated").
//!
//! A deliberately strict, small parser: only what a webhook needs, and nothing that different
//! HTTP clients could read differently (backslashes, credentials, whitespace, bare `%` in the
//! host). Whether loopback or private addresses are allowed is a server policy applied to the
//! returned [`WebhookUrl::host`].

/// Longest accepted webhook URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// The parts of a validated webhook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    /// `true` for `https`, `false` for `http`.
    pub https: bool,
    /// The host as written, lower-cased; an IPv6 literal keeps its brackets (`[::1]`).
    pub host: String,
    /// The explicit port, or 443 / 80 by scheme.
    pub port: u16,
    /// Path, query and fragment as written (`/` when empty).
    pub path: String,
}

/// Checks a webhook URL: `http` or `https`, a host, an optional port in 1..=65535, no
/// `user:password@`, no whitespace, control characters or backslashes, at most
/// [`MAX_URL_LEN`] bytes. The error says what is wrong.
pub fn validate_webhook_url(url: &str) -> Result<WebhookUrl, String> {
    if url.is_empty() {
        return Err("must not be empty".into());
    }
    if url.len() > MAX_URL_LEN {
        return Err(format!("is {} bytes, longer than {MAX_URL_LEN}", url.len()));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".into());
    }
    if url.contains('\\') {
        return Err("must not contain backslashes".into());
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "must start with http:// or https://".to_string())?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        _ => return Err(format!("scheme must be http or https, got `{scheme}`")),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains('@') {
        return Err("must not contain credentials (user:password@)".into());
    }
    let (host, port) = split_host_port(authority)?;
    if host.is_empty() {
        return Err("has no host".into());
    }
    let port = match port {
        None => {
            if https {
                443
            } else {
                80
            }
        }
        Some(p) => p,
    };
    Ok(WebhookUrl {
        https,
        host: host.to_ascii_lowercase(),
        port,
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
    })
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let close = inner
            .find(']')
            .ok_or_else(|| "has an unterminated IPv6 literal".to_string())?;
        let literal = &inner[..close];
        if literal.is_empty()
            || !literal
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!("has an invalid IPv6 literal `[{literal}]`"));
        }
        let after = &inner[close + 1..];
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("has unexpected `{p}` after the host"))?,
            ),
        };
        (&authority[..close + 2], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if !host.starts_with('[') {
        if let Some(c) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        {
            return Err(format!("host `{host}` contains `{c}`"));
        }
        if host.len() > 253 || host.starts_with('.') || host.contains("..") {
            return Err(format!("host `{host}` is not a valid host name"));
        }
    }
    let port = match port {
        None => None,
        Some(p) => {
            let n = p
                .parse::<u16>()
                .ok()
                .filter(|n| *n > 0 && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("port `{p}` is not in 1..=65535"))?;
            Some(n)
        }
    };
    Ok((host, port))
}

/// How a webhook URL is shown in every answer and log line: without the parts that may be
/// secret. Slack incoming-webhook URLs carry their secret in the path, so only
/// `scheme://host/***` is kept; any other URL keeps its scheme, host and path but its query
/// string and fragment (where tokens travel) become `***`.
pub fn redact_url(kind: super::ActionKind, url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    if kind == super::ActionKind::Slack {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        return format!("{scheme}://{host}/***");
    }
    match url.find(['?', '#']) {
        Some(i) => format!("{}{}***", &url[..i], &url[i..=i]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_no_secret() {
        use crate::rules::ActionKind;
        assert_eq!(
            redact_url(
                ActionKind::Slack,
                "https://hooks.slack.com/services/T0/B0/SECRET"
            ),
            "https://hooks.slack.com/***"
        );
        assert_eq!(
            redact_url(ActionKind::Slack, "https://hooks.slack.com?x=SECRET"),
            "https://hooks.slack.com/***"
        );
        assert_eq!(
            redact_url(
                ActionKind::Webhook,
                "https://ci.example.com/hook?token=SECRET&x=1"
            ),
            "https://ci.example.com/hook?***"
        );
        assert_eq!(
            redact_url(ActionKind::Retrain, "http://10.0.0.1:8080/go#SECRET"),
            "http://10.0.0.1:8080/go#***"
        );
        assert_eq!(
            redact_url(
                ActionKind::Pagerduty,
                "https://events.pagerduty.com/v2/enqueue"
            ),
            "https://events.pagerduty.com/v2/enqueue"
        );
    }

    #[test]
    fn accepts_ordinary_targets() {
        let u = validate_webhook_url("https://events.pagerduty.com/v2/enqueue").unwrap();
        assert_eq!(
            u,
            WebhookUrl {
                https: true,
                host: "events.pagerduty.com".into(),
                port: 443,
                path: "/v2/enqueue".into()
            }
        );
        let u = validate_webhook_url("http://127.0.0.1:8089").unwrap();
        assert_eq!(
            (u.https, u.host.as_str(), u.port, u.path.as_str()),
            (false, "127.0.0.1", 8089, "/")
        );
        let u = validate_webhook_url("HTTP://[::1]:9000/hook?x=1#f").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("[::1]", 9000, "/hook?x=1#f")
        );
        let u = validate_webhook_url("https://hooks.slack.com/services/T0/B0/XYZ").unwrap();
        assert_eq!(u.host, "hooks.slack.com");
    }

    #[test]
    fn rejects_bad_targets_with_reasons() {
        let cases = [
            ("", "must not be empty"),
            (
                "ftp://example.com/x",
                "scheme must be http or https, got `ftp`",
            ),
            ("example.com/hook", "must start with http:// or https://"),
            (
                "https://user:pw@example.com/",
                "must not contain credentials (user:password@)",
            ),
            (
                "https://@example.com/",
                "must not contain credentials (user:password@)",
            ),
            ("https:///path", "has no host"),
            ("https://:8080/path", "has no host"),
            ("https://example.com:0/", "port `0` is not in 1..=65535"),
            (
                "https://example.com:99999/",
                "port `99999` is not in 1..=65535",
            ),
            ("https://example.com:+80/", "port `+80` is not in 1..=65535"),
            (
                "https://exa mple.com/",
                "must not contain whitespace or control characters",
            ),
            (
                "https://example.com\\@evil.com/",
                "must not contain backslashes",
            ),
            (
                "https://exa%6dple.com/",
                "host `exa%6dple.com` contains `%`",
            ),
            ("https://a..b/", "host `a..b` is not a valid host name"),
            ("https://[::1/", "has an unterminated IPv6 literal"),
            ("https://[zz]/", "has an invalid IPv6 literal `[zz]`"),
            ("https://[::1]x/", "has unexpected `x` after the host"),
        ];
        for (url, why) in cases {
            assert_eq!(validate_webhook_url(url), Err(why.to_string()), "{url}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(
            validate_webhook_url(&long)
                .unwrap_err()
                .contains("longer than 2048")
        );
    }
}
