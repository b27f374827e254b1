//! Documented delegation judged against its mandate: a market maker's key trades the markets
//! its account's market-making mandates name (docs/registry.md). Orders outside every mandate
//! in effect are someone using the desk's key for something it has no mandate for — a key lent
//! on, or a desk trading for itself under a mandate's cover.

use super::state::h64;
use super::Engine;
use crate::event::Millis;
use crate::indicator::Indicator;

/// The terms of one mandate in effect on the market maker's account: which record, and the
/// markets it names.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct MandateTerms {
    /// The registry's record (its id, or its two accounts when it has none).
    pub id: u64,
    pub markets: Vec<u64>,
}

/// A market, whatever the exchange's spelling: `KRW-BTC` (Upbit), `BTC-KRW`, `btc_krw`
/// (Bithumb) and `BTC/KRW` are one market, its currencies taken as a set. A symbol without a
/// separator (`BTCKRW`) is taken as written, upper-cased.
pub fn market(symbol: &str) -> u64 {
    let upper = symbol.trim().to_ascii_uppercase();
    let mut parts: Vec<&str> = upper.split(['-', '_', '/']).filter(|p| !p.is_empty()).collect();
    parts.sort_unstable();
    h64(parts.join("-").as_bytes())
}

/// The record's identity: its counterparty id, or its two accounts.
pub fn mandate_id(counterparty_id: Option<&str>, from: &str, to: &str) -> u64 {
    match counterparty_id {
        Some(id) => h64(id.as_bytes()),
        None => h64(format!("{from}\u{0}{to}").as_bytes()),
    }
}

impl Engine<'_> {
    /// A mandate came into effect (or its terms changed) on account `a`, the market maker's.
    pub(super) fn mandate_in_effect(&mut self, a: usize, id: u64, symbols: &[&str]) {
        let terms = MandateTerms { id, markets: symbols.iter().map(|s| market(s)).collect() };
        let list = &mut self.accounts[a].mandates;
        match list.iter_mut().find(|m| m.id == id) {
            Some(m) => *m = terms,
            None => list.push(terms),
        }
    }

    /// The mandate no longer holds.
    pub(super) fn mandate_ended(&mut self, a: usize, id: u64) {
        self.accounts[a].mandates.retain(|m| m.id != id);
    }

    /// An order through key `k` in `symbol`: outside every mandate its account holds, when it
    /// holds any (an account without one is judged as any other; that is the registry's to
    /// require, at issuance).
    pub(super) fn within_mandate(&mut self, k: usize, ts: Millis, symbol: &str) {
        let account = &self.accounts[self.keys[k].account_ix];
        if account.mandates.is_empty() {
            return;
        }
        let m = market(symbol);
        if account.mandates.iter().any(|t| t.markets.contains(&m)) {
            return;
        }
        let evidence = format!(
            "an order in {symbol}, outside the markets of the account's {} market-making mandate(s) in effect",
            account.mandates.len()
        );
        self.fire(k, ts, Indicator::OutsideMandate, None, evidence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_market_whatever_the_spelling() {
        for s in ["KRW-BTC", "BTC-KRW", "btc_krw", "BTC/KRW", " krw-btc "] {
            assert_eq!(market(s), market("KRW-BTC"), "{s}");
        }
        assert_ne!(market("KRW-ETH"), market("KRW-BTC"));
        assert_eq!(market("btckrw"), market("BTCKRW"));
    }
}
