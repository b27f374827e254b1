//! Endpoint → scope mapping per scheme (configuration; defaults in `default-routes.toml`).

use keysentinel_domain::{Scope, SigningScheme};
use serde::Deserialize;

pub const DEFAULT_ROUTES_TOML: &str = include_str!("../default-routes.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    method: String,
    path: String,
    scope: Scope,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    schema: u32,
    binance: Option<Vec<RuleFile>>,
    upbit: Option<Vec<RuleFile>>,
    bithumb: Option<Vec<RuleFile>>,
    coinone: Option<Vec<RuleFile>>,
    korbit: Option<Vec<RuleFile>>,
}

#[derive(Debug, Clone)]
struct Rule {
    method: Option<Box<str>>,
    path: Box<str>,
    prefix: bool,
    scope: Scope,
}

impl Rule {
    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
            && if self.prefix { path.starts_with(&*self.path) } else { path == &*self.path }
    }
}

#[derive(Debug, Clone)]
pub struct RouteTable {
    rules: [Vec<Rule>; 5],
}

#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("routes file is not valid TOML or has unknown fields: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("routes file: {0}")]
    Invalid(String),
}

fn idx(s: SigningScheme) -> usize {
    SigningScheme::ALL.iter().position(|x| *x == s).unwrap_or(0)
}

impl RouteTable {
    /// Parses a routes file. A scheme the file does not mention keeps the built-in rules.
    pub fn from_toml(text: &str) -> Result<Self, RoutesError> {
        let mut table = Self::parse(DEFAULT_ROUTES_TOML)?;
        let custom = Self::parse(text)?;
        for (i, rules) in custom.rules.into_iter().enumerate() {
            if let (false, Some(slot)) = (rules.is_empty(), table.rules.get_mut(i)) {
                *slot = rules;
            }
        }
        Ok(table)
    }

    fn parse(text: &str) -> Result<Self, RoutesError> {
        let file: RoutesFile = toml::from_str(text)?;
        if file.schema != 1 {
            return Err(RoutesError::Invalid(format!(
                "schema {} is not supported (this build reads schema 1)",
                file.schema
            )));
        }
        let mut rules: [Vec<Rule>; 5] = Default::default();
        let by_scheme = [
            ("binance", SigningScheme::Binance, file.binance),
            ("upbit", SigningScheme::Upbit, file.upbit),
            ("bithumb", SigningScheme::Bithumb, file.bithumb),
            ("coinone", SigningScheme::Coinone, file.coinone),
            ("korbit", SigningScheme::Korbit, file.korbit),
        ];
        for (name, scheme, list) in by_scheme {
            for r in list.unwrap_or_default() {
                if !r.path.starts_with('/') {
                    return Err(RoutesError::Invalid(format!("[{name}] path {:?} must start with /", r.path)));
                }
                let (path, prefix) = match r.path.strip_suffix('*') {
                    Some(p) => (p.to_owned(), true),
                    None => (r.path.clone(), false),
                };
                let method = (r.method != "*").then(|| r.method.to_ascii_uppercase().into_boxed_str());
                rules[idx(scheme)].push(Rule { method, path: path.into(), prefix, scope: r.scope });
            }
        }
        Ok(Self { rules })
    }

    pub fn default_routes() -> Result<Self, RoutesError> {
        Self::parse(DEFAULT_ROUTES_TOML)
    }

    /// The scope `method path` needs under `scheme`; None when no rule matches (deny).
    pub fn required_scope(&self, scheme: SigningScheme, method: &str, path: &str) -> Option<Scope> {
        self.rules[idx(scheme)].iter().find(|r| r.matches(method, path)).map(|r| r.scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SigningScheme::*;

    #[test]
    fn defaults_map_the_main_endpoints() {
        let t = RouteTable::default_routes().unwrap();
        assert_eq!(t.required_scope(Binance, "GET", "/api/v3/account"), Some(Scope::Read));
        assert_eq!(t.required_scope(Binance, "POST", "/api/v3/order"), Some(Scope::Trade));
        assert_eq!(t.required_scope(Binance, "DELETE", "/api/v3/order"), Some(Scope::Trade));
        assert_eq!(t.required_scope(Binance, "GET", "/api/v3/order"), Some(Scope::Read));
        assert_eq!(t.required_scope(Binance, "POST", "/sapi/v1/capital/withdraw/apply"), Some(Scope::Withdraw));
        assert_eq!(t.required_scope(Upbit, "POST", "/v1/orders"), Some(Scope::Trade));
        assert_eq!(t.required_scope(Upbit, "GET", "/v1/accounts"), Some(Scope::Read));
        assert_eq!(t.required_scope(Upbit, "POST", "/v1/withdraws/coin"), Some(Scope::Withdraw));
        assert_eq!(t.required_scope(Coinone, "POST", "/v2.1/order/limit"), Some(Scope::Trade));
        assert_eq!(t.required_scope(Coinone, "POST", "/v2.1/order/open_orders"), Some(Scope::Read));
        assert_eq!(t.required_scope(Coinone, "POST", "/v2.1/transaction/coin/withdrawal/limit"), Some(Scope::Read));
        assert_eq!(t.required_scope(Upbit, "GET", "/v1/withdraws/chance"), Some(Scope::Read));
        assert_eq!(t.required_scope(Upbit, "DELETE", "/v1/withdraws/coin"), Some(Scope::Withdraw));
        assert_eq!(t.required_scope(Bithumb, "POST", "/v2/orders"), Some(Scope::Trade));
        assert_eq!(t.required_scope(Bithumb, "POST", "/v2/orders/search"), Some(Scope::Read));
        assert_eq!(t.required_scope(Coinone, "POST", "/v2.1/account/balance/all"), Some(Scope::Read));
        assert_eq!(t.required_scope(Korbit, "POST", "/v2/orders"), Some(Scope::Trade));
        assert_eq!(t.required_scope(Binance, "POST", "/api/v3/something-new"), None, "deny by default");
        assert_eq!(t.required_scope(Upbit, "PATCH", "/v2/x"), None);
    }

    /// Both were UNKNOWN_ENDPOINT: a trade key could not place an order through them.
    #[test]
    fn coinone_unified_order_and_binance_sor_need_trade() {
        let t = RouteTable::default_routes().unwrap();
        assert_eq!(t.required_scope(Coinone, "POST", "/v2.1/order"), Some(Scope::Trade));
        assert_eq!(t.required_scope(Binance, "POST", "/api/v3/sor/order"), Some(Scope::Trade));
        assert_eq!(t.required_scope(Binance, "POST", "/api/v3/sor/order/test"), Some(Scope::Trade));
        assert_eq!(t.required_scope(Binance, "GET", "/api/v3/sor/order"), Some(Scope::Read), "reads stay reads");
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(RouteTable::from_toml("schema = 2").is_err());
        assert!(RouteTable::from_toml("schema = 1\n[[okx]]\nmethod='GET'\npath='/x'\nscope='read'").is_err());
        assert!(RouteTable::from_toml("schema = 1\n[[upbit]]\nmethod='GET'\npath='x'\nscope='read'").is_err());
        assert!(RouteTable::from_toml("schema = 1\n[[upbit]]\nmethod='GET'\npath='/x'\nscope='admin'").is_err());
        let custom = RouteTable::from_toml("schema = 1\n[[upbit]]\nmethod='GET'\npath='/v9/*'\nscope='read'").unwrap();
        assert_eq!(custom.required_scope(Upbit, "GET", "/v9/x"), Some(Scope::Read));
        assert_eq!(custom.required_scope(Upbit, "GET", "/v1/accounts"), None, "a scheme in the file is replaced");
        assert_eq!(
            custom.required_scope(Binance, "GET", "/api/v3/account"),
            Some(Scope::Read),
            "others keep the defaults"
        );
    }
}
