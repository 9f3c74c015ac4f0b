//! Who is looking. A viewer is named by a bearer token from a tokens file
//! (the collector's format: `name:token` per line, see
//! [`audit_collector::auth`]), sent as `authorization: Bearer …` by a
//! script, or kept by a browser in an HttpOnly cookie after signing in;
//! or, opt-in, by a header that an authenticating reverse proxy sets,
//! believed only on connections from the proxy's address. A tokens file
//! is read again on SIGHUP, as the collector's is: a token added works
//! from then on, a removed one is refused.

use std::net::{IpAddr, SocketAddr};

use audit_collector::auth::LiveTokens;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};

/// The cookie a signed-in browser sends (the token, hex-encoded: a token
/// may hold characters a cookie value may not).
pub const COOKIE: &str = "audit_console";

/// How viewers are identified.
#[derive(Debug)]
pub struct Auth {
    /// Accepted tokens, if any, as they are at each request.
    pub tokens: Option<LiveTokens>,
    /// The proxy's address and the header it names the viewer in.
    pub proxy: Option<(IpAddr, HeaderName)>,
}

/// The longest viewer name a proxy header may give.
const MAX_PROXY_NAME: usize = 256;

impl Auth {
    /// The viewer's name, or `None` (a 401).
    pub fn viewer(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<String> {
        if let (Some((ip, name)), Some(peer)) = (&self.proxy, peer) {
            if peer.ip() == *ip {
                let named = headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|v| !v.is_empty() && v.len() <= MAX_PROXY_NAME);
                if let Some(v) = named {
                    return Some(v.to_owned());
                }
            }
        }
        let tokens = self.tokens.as_ref()?.current();
        if let Some(a) = headers.get(header::AUTHORIZATION) {
            return tokens.check(a.to_str().ok()).ok().map(str::to_owned);
        }
        let token = cookie_token(headers)?;
        tokens
            .check(Some(&format!("Bearer {token}")))
            .ok()
            .map(str::to_owned)
    }

    /// The name a token stands for, if it is on the list.
    pub fn check_token(&self, token: &str) -> Option<String> {
        self.tokens
            .as_ref()?
            .current()
            .check(Some(&format!("Bearer {}", token.trim())))
            .ok()
            .map(str::to_owned)
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .and_then(|(_, v)| hex::decode(v).ok())
        .and_then(|b| String::from_utf8(b).ok())
}

/// The `set-cookie` value that signs a browser in with `token`: not
/// readable by scripts, never sent by another site's page.
pub fn sign_in_cookie(token: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        hex::encode(token.trim())
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(proxy: bool) -> Auth {
        Auth {
            tokens: Some(LiveTokens::new(
                audit_collector::auth::Tokens::parse("ann:aaaaaaaaaaaaaaaa").unwrap(),
            )),
            proxy: proxy.then(|| {
                (
                    IpAddr::from([127, 0, 0, 2]),
                    HeaderName::from_static("x-forwarded-user"),
                )
            }),
        }
    }

    fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn tokens_cookies_and_the_proxy_header() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let proxy: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        let a = auth(true);
        assert_eq!(a.viewer(&HeaderMap::new(), Some(peer)), None);
        let bearer = headers(&[(header::AUTHORIZATION, "Bearer aaaaaaaaaaaaaaaa")]);
        assert_eq!(a.viewer(&bearer, Some(peer)).as_deref(), Some("ann"));
        let wrong = headers(&[(header::AUTHORIZATION, "Bearer bbbbbbbbbbbbbbbb")]);
        assert_eq!(a.viewer(&wrong, Some(peer)), None);
        let cookie = sign_in_cookie("aaaaaaaaaaaaaaaa").unwrap();
        let pair = cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let jar = headers(&[(header::COOKIE, &format!("x=1; {pair}"))]);
        assert_eq!(a.viewer(&jar, Some(peer)).as_deref(), Some("ann"));
        let named = headers(&[(
            HeaderName::from_static("x-forwarded-user"),
            "bob@example.com",
        )]);
        assert_eq!(
            a.viewer(&named, Some(proxy)).as_deref(),
            Some("bob@example.com")
        );
        // The same header from anyone else names nobody.
        assert_eq!(a.viewer(&named, Some(peer)), None);
        assert_eq!(auth(false).viewer(&named, Some(proxy)), None);
    }
}
