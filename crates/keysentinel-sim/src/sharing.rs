//! Sharing families: how keys are lent, sold, leaked and resold, each on top of an honest
//! owner's own use (which goes on, or stops, as it does in life).

use crate::gen::{pick, Access, Gen, Hours, Trading, HOUR, MIN, SEC};
use crate::honest::person_uses;
use crate::person::{jitter, moment, Person, Use};
use crate::world::{self, client};
use crate::{Registry, Truth};
use rand::Rng;

/// Families that share one account's key, each on `sharing_rate` of the accounts.
pub const FAMILIES: &[&str] = &[
    "lent_abroad",
    "friend_home_line",
    "group_shared",
    "leaked_cloud",
    "leaked_quiet",
    "rental",
    "resold_abroad",
    "residential_proxy",
];

/// The honest ways the owners of shared keys use them before and alongside the sharing.
const OWNER_FAMILIES: &[(&str, u32)] = &[
    ("home_only", 30),
    ("home_and_phone", 30),
    ("phone_only", 8),
    ("home_and_office", 12),
    ("commuter", 8),
    ("vpn_user", 6),
    ("traveller", 6),
];

/// A program other than `than` (another family of client), or the very same one with
/// probability `same`.
fn other_client(g: &mut Gen<'_>, than: &str, same: f64) -> String {
    if g.rng.gen_bool(same) {
        return than.to_owned();
    }
    loop {
        let c = client(world::BOT_CLIENTS, g.rng.gen_range(0..world::BOT_CLIENTS.len()), g.rng.gen_range(0..3));
        if c.split('/').next() != than.split('/').next() {
            return c;
        }
    }
}

pub fn run(g: &mut Gen<'_>, reg: &mut Registry, family: &'static str, i: usize) -> Vec<Truth> {
    let account = format!("acct-{i:05}");
    let key = format!("key-{i:05}");
    let base = pick(&mut g.rng, OWNER_FAMILIES);
    let mut p = Person::new(g, &account);
    match base {
        "home_and_office" | "commuter" => {
            p.office = Some({
                let x = pick(&mut g.rng, world::KR_OFFICE);
                Access::fixed(g, x)
            })
        }
        "vpn_user" => p.vpn = Some((Access::Vpn { asn: pick(&mut g.rng, world::VPN) }, g.rng.gen_range(0.3..1.0))),
        "traveller" => p.plan_trip(g, 2 * HOUR),
        _ => {}
    }
    reg.account(&account, "retail", &["KR"]);
    reg.key(&key, &account, &[], None);
    // Keys are shared once they have a history (half a day at least when the run is long
    // enough; a rented or sold one, a day), and early enough in the run for it to show.
    let onset = if family == "rental" { moment(g, 0.4, 0.75, 24 * HOUR) } else { moment(g, 0.25, 0.7, 12 * HOUR) };
    // Rented and sold keys change hands: the owner stops.
    let owner_until = if family == "rental" { onset } else { g.end };
    person_uses(g, &p, &key, base, owner_until);
    p.logins(g, g.start, owner_until);
    let mark = g.mark();
    let k = key.as_str();
    match family {
        "lent_abroad" => {
            let dest = &world::ABROAD[g.rng.gen_range(0..world::ABROAD.len())];
            let line = {
                let x = dest.networks[g.rng.gen_range(0..dest.networks.len())];
                Access::line(g, x)
            };
            let ua = other_client(g, &p.pc_client, 0.2);
            let friend =
                Use::by_hand(k, ua, Hours::person(&mut g.rng), jitter(g, 1.0, 0.6), Some(Trading::retail(&mut g.rng)));
            friend.run(g, onset, g.end, |g, at| Some((g.session_addr(line, at), "VALID")));
        }
        "friend_home_line" => {
            // A friend in Korea on their own home line, often with the owner's own carrier.
            let home_asn = match p.home {
                Access::Line { asn, .. } => asn,
                _ => world::KT,
            };
            let asn = if g.rng.gen_bool(0.35) { home_asn } else { pick(&mut g.rng, world::KR_FIXED) };
            let line = Access::line(g, asn);
            let ua = other_client(g, &p.pc_client, 0.35);
            let hours = Hours::evening(&mut g.rng);
            let friend = Use::by_hand(k, ua, hours, jitter(g, 1.0, 0.6), Some(Trading::retail(&mut g.rng)));
            friend.run(g, onset, g.end, |g, at| Some((g.session_addr(line, at), "VALID")));
        }
        "group_shared" => {
            for _ in 0..g.rng.gen_range(3..7) {
                let access = if g.rng.gen_bool(0.3) {
                    Access::Phone { asn: pick(&mut g.rng, world::KR_MOBILE) }
                } else {
                    {
                        let x = pick(&mut g.rng, world::KR_FIXED);
                        Access::line(g, x)
                    }
                };
                let ua = other_client(g, &p.pc_client, 0.25);
                let member = Use::by_hand(
                    k,
                    ua,
                    Hours::person(&mut g.rng),
                    jitter(g, 0.8, 0.6),
                    Some(Trading::retail(&mut g.rng)),
                );
                member.run(g, onset, g.end, |g, at| Some((g.session_addr(access, at), "VALID")));
            }
        }
        "leaked_cloud" => {
            // Probed with guesses from cloud hosts, then used from rotating cloud addresses once
            // the secret is known.
            let mut at = onset;
            for _ in 0..g.rng.gen_range(12..40) {
                let host = {
                    let x = pick(&mut g.rng, world::CLOUD);
                    Access::server(g, x)
                };
                let ip = g.session_addr(host, at);
                g.request(at, k, ip, "python-requests/2.31.0", "BAD_SIGNATURE");
                at += g.rng.gen_range(2 * SEC..15 * SEC);
            }
            let user = Use::bot(k, "python-requests/2.31.0".into(), jitter(g, 2.0, 0.5), None);
            user.run(g, at + 10 * MIN, g.end, |g, at| {
                let host = {
                    let x = pick(&mut g.rng, world::CLOUD);
                    Access::server(g, x)
                };
                Some((g.session_addr(host, at), "VALID"))
            });
        }
        "leaked_quiet" => {
            // A leaked key watched quietly from one host, with the most common client, reading
            // balances and orders: no probing, no trading.
            let host = if g.rng.gen_bool(0.5) {
                let x = pick(&mut g.rng, world::CLOUD);
                let server = Access::server(g, x);
                g.session_addr(server, 0)
            } else {
                let vpn = Access::Vpn { asn: pick(&mut g.rng, world::VPN) };
                g.session_addr(vpn, 0)
            };
            let ua = client(world::BOT_CLIENTS, 0, 2);
            let mut watcher = Use::bot(k, ua, jitter(g, 0.5, 0.5), None);
            watcher.calls = (1, 4);
            watcher.run(g, onset, g.end, |_, _| Some((host, "VALID")));
        }
        "rental" => {
            // The key (and often the account) is rented or sold: someone else trades round the
            // clock from one new address, with another program, far more often, in small caps,
            // at many times the sizes.
            let access = match g.rng.gen_range(0..10) {
                0..=4 => {
                    let x = pick(&mut g.rng, world::KR_FIXED);
                    Access::fixed(g, x)
                }
                5..=7 => {
                    let x = pick(&mut g.rng, world::CLOUD);
                    Access::server(g, x)
                }
                _ => {
                    let x = world::ABROAD[g.rng.gen_range(0..world::ABROAD.len())].networks[0];
                    Access::fixed(g, x)
                }
            };
            let ip = g.session_addr(access, onset);
            let ua = other_client(g, &p.pc_client, 0.1);
            let mut t = Trading::bot(&mut g.rng);
            t.symbols = (0..g.rng.gen_range(2..6))
                .map(|_| world::SMALL_CAPS[g.rng.gen_range(0..world::SMALL_CAPS.len())])
                .collect();
            let mut renter = Use::bot(k, ua, p.per_hour * jitter(g, 10.0, 0.5), Some(t));
            renter.scale = jitter(g, 100.0, 0.7);
            renter.run(g, onset, g.end, |_, _| Some((ip, "VALID")));
            if g.rng.gen_bool(0.5) {
                // The buyer has the account as well and logs in from there.
                let web = world::LOGIN_WEB[0];
                let device = format!("pc-{:012x}", g.rng.gen::<u64>() & 0xffff_ffff_ffff);
                let mut at = onset + g.rng.gen_range(0..2 * HOUR);
                while at < g.end {
                    g.login(at, &account, ip, web, &device);
                    at += g.rng.gen_range(4 * HOUR..30 * HOUR);
                }
            }
        }
        "resold_abroad" => {
            // A leaked key resold to several buyers in several countries.
            for _ in 0..g.rng.gen_range(2..5) {
                let dest = &world::ABROAD[g.rng.gen_range(0..world::ABROAD.len())];
                let line = {
                    let x = dest.networks[g.rng.gen_range(0..dest.networks.len())];
                    Access::line(g, x)
                };
                let ua = other_client(g, &p.pc_client, 0.2);
                let at = onset + g.rng.gen_range(0..6 * HOUR);
                let buyer = Use::by_hand(
                    k,
                    ua,
                    Hours::person(&mut g.rng),
                    jitter(g, 0.7, 0.6),
                    Some(Trading::retail(&mut g.rng)),
                );
                buyer.run(g, at, g.end, |g, at| Some((g.session_addr(line, at), "VALID")));
            }
        }
        _ => {
            // Through rotating residential proxies in Korea: every call from another home.
            let ua = other_client(g, &p.pc_client, 0.3);
            let mut user = Use::bot(k, ua, jitter(g, 1.0, 0.5), Some(Trading::retail(&mut g.rng)));
            user.rotate = true;
            user.run(g, onset, g.end, |g, at| {
                Some((g.session_addr(Access::Proxies { asns: world::KR_FIXED }, at), "VALID"))
            });
        }
    }
    let onset_ms = g.first_since(mark).unwrap_or(onset);
    vec![Truth::shared(&key, &account, "retail", family, onset_ms)]
}

/// Rings over accounts of their own: affiliates driving each other's keys from one place with
/// coordinated orders, and an unregistered vendor running its customers' keys from one server.
pub fn ring(g: &mut Gen<'_>, reg: &mut Registry, family: &'static str, r: usize) -> Vec<Truth> {
    let size = if family == "affiliate_ring" { g.rng.gen_range(4..9) } else { g.rng.gen_range(6..14) };
    let hub_access = if family == "affiliate_ring" {
        {
            let x = pick(&mut g.rng, world::KR_FIXED);
            Access::fixed(g, x)
        }
    } else {
        {
            let x = pick(&mut g.rng, world::CLOUD);
            Access::server(g, x)
        }
    };
    let hub = g.session_addr(hub_access, 0);
    // Rings recruit accounts with a history, as the single-key families do.
    let onset = moment(g, 0.3, 0.6, 20 * HOUR);
    let mut keys = Vec::new();
    for m in 0..size {
        let account = format!("{family}-{r}-{m}");
        let key = format!("key-{family}-{r}-{m}");
        let p = Person::new(g, &account);
        reg.account(&account, "retail", &["KR"]);
        reg.key(&key, &account, &[], None);
        // Before the onset, each owner uses their own key; an unregistered vendor's customers
        // still look in now and then afterwards.
        let until = if family == "unregistered_vendor" && g.rng.gen_bool(0.5) { g.end } else { onset };
        person_uses(g, &p, &key, "home_only", until);
        p.logins(g, g.start, g.end);
        keys.push((account, key));
    }
    let mark = g.mark();
    let ua = if family == "affiliate_ring" { "AffiliateTool/1.0" } else { "SignalBot/7.4" };
    let coordinated = family == "affiliate_ring";
    let symbols: Vec<&str> = (0..3).map(|_| world::SMALL_CAPS[g.rng.gen_range(0..world::SMALL_CAPS.len())]).collect();
    let per_hour = jitter(g, 8.0, 0.4);
    g.sessions(onset, g.end, per_hour, &Hours::always(), false, (1, 1), (0, 0), |g, at, _| {
        let size = (g.rng.gen_range(11.0..15.0f64)).exp().round();
        let symbol = symbols[g.rng.gen_range(0..symbols.len())];
        let buy = g.rng.gen_bool(0.5);
        for (j, (_, key)) in keys.iter().enumerate() {
            let at = at + j as i64 * g.rng.gen_range(50..400);
            g.request(at, key, hub, ua, "VALID");
            if coordinated {
                g.order(at + 50, key, symbol, buy, true, size);
            } else if g.rng.gen_bool(0.5) {
                // Copy-trading: the same signal, each customer's own size.
                let own = (size * g.rng.gen_range(0.2..3.0f64) / 1000.0).round().max(1.0) * 1000.0;
                g.order(at + 50, key, symbol, buy, true, own);
            }
        }
    });
    let onset_ms = g.first_since(mark).unwrap_or(onset);
    keys.into_iter().map(|(a, k)| Truth::shared(&k, &a, "retail", family, onset_ms)).collect()
}
