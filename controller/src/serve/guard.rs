//! Who may look and who may act: the token, its cookie, and the checks against requests from other sites.
//!
//! The server makes a random token when it starts and prints it once, in the link to open (as a notebook server
//! does); it never logs it and never writes it to the record. A browser that opens the link gets the token as a
//! cookie (`HttpOnly`, `SameSite=Strict`, `Secure` under TLS) and is sent on to the same page without it, so the
//! token leaves the address bar and the history at once; pages send no `Referer` to other sites.
//!
//! - Looking needs no token from this machine (a loopback peer); from anywhere else it needs the cookie.
//! - Acting (pause, resume, abort, confirm, clear) needs the cookie, a request from the server's own pages (the
//!   `Origin` and `Sec-Fetch-Site` headers, where the browser sends them), and the form's anti-forgery field, which
//!   only pages served to a signed-in browser carry. A request that fails any of these is refused before anything
//!   is written.
//! - A server that listens on loopback only answers requests addressed to a loopback name (`Host`), so a web page
//!   elsewhere cannot reach it by pointing a name of its own at 127.0.0.1 (DNS rebinding).

use axum::http::HeaderMap;
use axum::http::header::{COOKIE, HOST, ORIGIN};

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The request carries no valid token.
    #[error(
        "this browser has not signed in: open the link `lab serve` printed (it carries the token), or sign in with \
         the token at /login"
    )]
    NotSignedIn,
    /// The request came from a page of another site.
    #[error("the request came from another site ({0}); actions are only taken from this server's own pages")]
    CrossSite(String),
    /// The form lacks the server's anti-forgery value.
    #[error("the form is not one this server made (its anti-forgery field is missing or wrong); reload the page")]
    Forged,
}

/// The server's secrets and the rules that use them.
#[derive(Clone)]
pub struct Guard {
    token: String,
    csrf: String,
    cookie: String,
    loopback_only: bool,
    tls: bool,
}

/// 32 random bytes as hex, from the operating system's generator; a server with a predictable token must not start,
/// so a failure is an error.
fn random_hex() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("the system gave no randomness for a token: {e}"))?;
    Ok(crate::record::hex::hex(&bytes))
}

impl Guard {
    /// A guard with fresh secrets for a server on `port`; `loopback_only` if it listens on loopback addresses only.
    pub fn new(port: u16, loopback_only: bool, tls: bool) -> Result<Guard, String> {
        Guard::with_token(random_hex()?, port, loopback_only, tls)
    }

    /// A guard whose token is `token` (tests).
    pub fn with_token(token: String, port: u16, loopback_only: bool, tls: bool) -> Result<Guard, String> {
        // Cookies are shared by every port of a host, so each server's cookie carries its port: two servers on
        // one machine keep their own sign-ins.
        Ok(Guard { token, csrf: random_hex()?, cookie: format!("lab_token_{port}"), loopback_only, tls })
    }

    /// The token, for the link printed at start. Never log it.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The anti-forgery value the forms of a signed-in browser's pages carry.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether `given` is the token.
    pub fn is_token(&self, given: &str) -> bool {
        same(given.as_bytes(), self.token.as_bytes())
    }

    /// Whether the request carries the token's cookie.
    pub fn signed_in(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == self.cookie && self.is_token(value))
    }

    /// The `Set-Cookie` value that signs a browser in.
    pub fn sign_in_cookie(&self) -> String {
        let secure = if self.tls { "; Secure" } else { "" };
        format!("{}={}; HttpOnly; SameSite=Strict; Path=/{secure}", self.cookie, self.token)
    }

    /// The `Set-Cookie` value that signs a browser out.
    pub fn sign_out_cookie(&self) -> String {
        format!("{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0", self.cookie)
    }

    /// Whether the request is addressed to a name this server answers to.
    pub fn host_allowed(&self, headers: &HeaderMap) -> bool {
        if !self.loopback_only {
            return true;
        }
        let Some(host) = headers.get(HOST).and_then(|h| h.to_str().ok()) else { return true };
        let name = match host.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or_default(),
            None => host.rsplit_once(':').map_or(host, |(n, _)| n),
        };
        matches!(name.to_ascii_lowercase().as_str(), "localhost" | "::1")
            || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Whether the request comes from this server's own pages, as far as the browser says: its `Origin` (sent with
    /// every form post by current browsers) names this server, and its `Sec-Fetch-Site` is `same-origin` or `none`.
    pub fn same_origin(&self, headers: &HeaderMap) -> Result<(), Refused> {
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or("(unreadable)");
            let host = headers.get(HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
            let scheme = if self.tls { "https" } else { "http" };
            if host.is_empty() || origin != format!("{scheme}://{host}") {
                return Err(Refused::CrossSite(format!("Origin: {origin}")));
            }
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            let site = site.to_str().unwrap_or("(unreadable)");
            if !matches!(site, "same-origin" | "none") {
                return Err(Refused::CrossSite(format!("Sec-Fetch-Site: {site}")));
            }
        }
        Ok(())
    }

    /// Checks an action: a signed-in browser, on this server's own page, with its form's anti-forgery value.
    pub fn check_action(&self, headers: &HeaderMap, csrf: &str) -> Result<(), Refused> {
        self.same_origin(headers)?;
        if !self.signed_in(headers) {
            return Err(Refused::NotSignedIn);
        }
        if !same(csrf.as_bytes(), self.csrf.as_bytes()) {
            return Err(Refused::Forged);
        }
        Ok(())
    }
}

/// Compares two secrets in time that depends only on their lengths, so a wrong guess says nothing about how much
/// of it was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_the_cookie_of_this_servers_token_signs_in() {
        let g = Guard::with_token("t0ken".into(), 8765, true, false).unwrap();
        assert!(g.signed_in(&headers(&[("cookie", "a=b; lab_token_8765=t0ken")])));
        assert!(!g.signed_in(&headers(&[("cookie", "lab_token_8765=t0kem")])));
        assert!(!g.signed_in(&headers(&[("cookie", "lab_token_9999=t0ken")])), "another server's cookie");
        assert!(!g.signed_in(&headers(&[])));
        assert!(g.sign_in_cookie().contains("HttpOnly; SameSite=Strict"));
        assert!(!g.sign_in_cookie().contains("Secure"));
        assert!(Guard::with_token("x".into(), 1, true, true).unwrap().sign_in_cookie().ends_with("; Secure"));
    }

    #[test]
    fn a_loopback_server_answers_loopback_names_only() {
        let g = Guard::with_token("t".into(), 8765, true, false).unwrap();
        for host in ["127.0.0.1:8765", "localhost:8765", "[::1]:8765", "LOCALHOST", "127.0.0.2"] {
            assert!(g.host_allowed(&headers(&[("host", host)])), "{host}");
        }
        for host in ["evil.example:8765", "127.0.0.1.evil.example", "192.168.1.10:8765"] {
            assert!(!g.host_allowed(&headers(&[("host", host)])), "{host}");
        }
        let open = Guard::with_token("t".into(), 8765, false, false).unwrap();
        assert!(open.host_allowed(&headers(&[("host", "lab-pc.example:8765")])));
    }

    #[test]
    fn actions_need_the_cookie_the_same_origin_and_the_form_value() {
        let g = Guard::with_token("t".into(), 8765, true, false).unwrap();
        let csrf = g.csrf().to_owned();
        let ok = [("host", "127.0.0.1:8765"), ("cookie", "lab_token_8765=t")];
        assert_eq!(g.check_action(&headers(&ok), &csrf), Ok(()));
        let same_site = [ok[0], ok[1], ("origin", "http://127.0.0.1:8765"), ("sec-fetch-site", "same-origin")];
        assert_eq!(g.check_action(&headers(&same_site), &csrf), Ok(()));
        assert_eq!(g.check_action(&headers(&[ok[0]]), &csrf), Err(Refused::NotSignedIn));
        assert_eq!(g.check_action(&headers(&ok), "guess"), Err(Refused::Forged));
        let other = [ok[0], ok[1], ("origin", "http://evil.example")];
        assert!(matches!(g.check_action(&headers(&other), &csrf), Err(Refused::CrossSite(_))));
        let null = [ok[0], ok[1], ("origin", "null")];
        assert!(matches!(g.check_action(&headers(&null), &csrf), Err(Refused::CrossSite(_))));
        let cross = [ok[0], ok[1], ("sec-fetch-site", "cross-site")];
        assert!(matches!(g.check_action(&headers(&cross), &csrf), Err(Refused::CrossSite(_))));
    }

    #[test]
    fn fresh_guards_have_fresh_secrets() {
        let (a, b) = (Guard::new(1, true, false).unwrap(), Guard::new(1, true, false).unwrap());
        assert_eq!(a.token().len(), 64);
        assert_ne!(a.token(), b.token());
        assert_ne!(a.csrf(), b.csrf());
        assert_ne!(a.token(), a.csrf());
    }
}
