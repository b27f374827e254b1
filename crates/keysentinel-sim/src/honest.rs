//! Honest families: the ways real customers use their own keys that look, to a naive detector,
//! like someone else using them.

use crate::gen::{pick, Access, Gen, Hours, Trading, HOUR};
use crate::person::{jitter, moment, Person, Use};
use crate::world::{self, client};
use crate::{Registry, Truth};
use rand::Rng;
use std::net::IpAddr;

/// Honest retail and pro families with their share of accounts.
pub const FAMILIES: &[(&str, u32)] = &[
    ("home_only", 20),
    ("home_and_phone", 18),
    ("phone_only", 6),
    ("home_and_office", 9),
    ("commuter", 6),
    ("vpn_user", 6),
    ("traveller", 5),
    ("expat", 2),
    ("cloud_bot_and_laptop", 7),
    ("home_server_bot", 4),
    ("vendor_customer", 5),
    ("client_switch", 3),
    ("strategy_change", 3),
    ("cloud_bot", 5),
    ("multi_cloud_bot", 2),
    ("hotspot_laptop", 4),
    ("corporate_vpn", 4),
    ("market_maker", 1),
    ("corporate_desk", 1),
];

/// Runs honest family `family` for account `i`; returns the keys with their truth.
pub fn run(g: &mut Gen<'_>, reg: &mut Registry, family: &'static str, i: usize) -> Vec<Truth> {
    let account = format!("acct-{i:05}");
    let key = format!("key-{i:05}");
    match family {
        "cloud_bot" | "multi_cloud_bot" => return bots(g, reg, family, &account, &key),
        "market_maker" => return market_maker(g, reg, &account, &key),
        "corporate_desk" => return corporate(g, reg, &account, &key),
        _ => {}
    }
    let mut p = Person::new(g, &account);
    let segment = "retail";
    let mut declared = vec!["KR"];
    let mut allow: Vec<String> = Vec::new();
    match family {
        "home_and_office" | "commuter" => {
            let asn = pick(&mut g.rng, world::KR_OFFICE);
            p.office = Some(Access::fixed(g, asn));
            if family == "commuter" {
                p.hotspots = reg.hotspots.clone();
            }
        }
        "vpn_user" => {
            let asn = pick(&mut g.rng, world::VPN);
            p.vpn = Some((Access::Vpn { asn }, g.rng.gen_range(0.3..1.0)));
        }
        "traveller" => p.plan_trip(g, 2 * HOUR),
        "hotspot_laptop" => {
            // A laptop, online through the phone's hotspot away from home: the carrier's
            // network, under the same ASN as homes on KT and LG U+; a café's Wi-Fi now and then.
            p.tethers = true;
            if g.rng.gen_bool(0.5) {
                p.hotspots = reg.hotspots.clone();
            }
        }
        "corporate_vpn" => {
            // An employee whose work traffic leaves through the employer's remote access: a
            // security proxy's exit (anywhere in the world), the head office abroad, or the
            // Korean office's own line; at home too, when the laptop is on the VPN.
            let (egress, hq) = match g.rng.gen_range(0..10) {
                0..=4 => {
                    let asn = pick(&mut g.rng, world::CORPORATE_EDGE);
                    (if g.rng.gen_bool(0.5) { Access::server(g, asn) } else { Access::line(g, asn) }, None)
                }
                5..=7 => {
                    let dest = &world::ABROAD[g.rng.gen_range(0..world::ABROAD.len())];
                    let asn = dest.networks[g.rng.gen_range(0..dest.networks.len())];
                    (Access::fixed(g, asn), Some(dest.country))
                }
                _ => {
                    let asn = pick(&mut g.rng, world::KR_OFFICE);
                    (Access::fixed(g, asn), None)
                }
            };
            p.office = Some(egress);
            p.work_vpn = Some((egress, g.rng.gen_range(0.1..0.7)));
            if let Some(c) = hq.filter(|_| g.rng.gen_bool(0.5)) {
                declared.push(c);
            }
        }
        "expat" => {
            let dest = &world::ABROAD[g.rng.gen_range(0..world::ABROAD.len())];
            let asn = dest.networks[g.rng.gen_range(0..dest.networks.len())];
            p.home = Access::line(g, asn);
            if g.rng.gen_bool(0.5) {
                declared.push(dest.country);
            }
            // Their phone is on a local carrier's network, which the data calls access.
            p.carrier = asn;
        }
        _ => {}
    }
    reg.account(&account, segment, &declared);
    let key_ref = key.as_str();
    match family {
        "cloud_bot_and_laptop" => {
            // The bot on a cloud server, allowlisted; the owner checks the account by hand from
            // home, where the allowlist may or may not reach.
            let server = {
                let x = pick(&mut g.rng, world::CLOUD);
                Access::server(g, x)
            };
            let server_ip = g.session_addr(server, 0);
            allow.push(format!("{server_ip}/32"));
            let home_allowed = g.rng.gen_bool(0.4);
            if home_allowed {
                let home_ip = g.session_addr(p.home, g.start);
                allow.push(crate::gen::ip24(home_ip));
            }
            reg.key(key_ref, &account, &allow, None);
            let bot = Use::bot(key_ref, p.pc_client.clone(), jitter(g, 3.0, 0.6), Some(Trading::bot(&mut g.rng)));
            bot.run(g, g.start, g.end, |_, _| Some((server_ip, "VALID")));
            let hand = client(world::HAND_CLIENTS, g.rng.gen_range(0..6), 0);
            let by_hand = Use::by_hand(key_ref, hand, p.hours, p.per_hour * 0.5, None);
            let allowlist = allow.clone();
            by_hand.run(g, g.start, g.end, |g, at| {
                let ip = p.pc_addr(g, at, false)?;
                let ok = allowlist.iter().any(|c| contains(c, ip));
                Some((ip, if ok { "VALID" } else { "IP_NOT_ALLOWED" }))
            });
        }
        "home_server_bot" => {
            // A small server at home runs the bot; the owner also uses the key by hand from the
            // same line, and from the phone.
            reg.key(key_ref, &account, &allow, None);
            let bot = Use::bot(key_ref, p.pc_client.clone(), jitter(g, 2.0, 0.6), Some(Trading::bot(&mut g.rng)));
            let home = p.home;
            bot.run(g, g.start, g.end, |g, at| Some((g.session_addr(home, at), "VALID")));
            let hand = client(world::HAND_CLIENTS, g.rng.gen_range(0..6), 1);
            Use::by_hand(key_ref, hand, p.hours, p.per_hour * 0.4, None)
                .run(g, g.start, g.end, |g, at| Some((p.pc_addr(g, at, false)?, "VALID")));
            Use::by_hand(key_ref, p.phone_client.clone(), p.hours, p.per_hour * 0.3, Some(p.trading.clone())).run(
                g,
                g.start,
                g.end,
                |g, at| Some((p.phone_addr(g, at)?, "VALID")),
            );
        }
        "vendor_customer" => {
            // An approved vendor runs the key from its registered egress; the owner looks in by
            // hand from home now and then.
            let vendor = reg.vendor_id.clone();
            reg.key(key_ref, &account, &allow, Some(&vendor));
            let egress = reg.vendor_egress;
            let vendor_bot =
                Use::bot(key_ref, "VendorBot/3.2".into(), jitter(g, 1.5, 0.5), Some(Trading::bot(&mut g.rng)));
            vendor_bot.run(g, g.start, g.end, |g, _| {
                let ip = g.session_addr(egress, 0);
                Some((vary_last_octet(g, ip), "VALID"))
            });
            let hand = if g.rng.gen_bool(0.5) {
                p.pc_client.clone()
            } else {
                client(world::HAND_CLIENTS, g.rng.gen_range(0..6), 0)
            };
            Use::by_hand(key_ref, hand, p.hours, p.per_hour * 0.3, None)
                .run(g, g.start, g.end, |g, at| Some((p.pc_addr(g, at, false)?, "VALID")));
        }
        _ => {
            reg.key(key_ref, &account, &allow, None);
            person_uses(g, &p, key_ref, family, g.end);
        }
    }
    p.logins(g, g.start, g.end);
    vec![Truth::honest(&key, &account, segment, family)]
}

/// The uses of a key by a person of `family` (the retail families without a server).
pub fn person_uses(g: &mut Gen<'_>, p: &Person, key: &str, family: &str, until: i64) {
    let pc = !matches!(family, "phone_only");
    let phone = matches!(family, "home_and_phone" | "phone_only" | "commuter" | "traveller") || g.rng.gen_bool(0.2);
    let office_pc = matches!(family, "home_and_office" | "commuter" | "corporate_vpn");
    let change = moment(g, 0.3, 0.7, 6 * HOUR);
    if pc {
        let mut first = Use::by_hand(key, p.pc_client.clone(), p.hours, p.per_hour, Some(p.trading.clone()));
        match family {
            "client_switch" => {
                // A new program from some day on (not an upgrade: another family).
                first.run(g, g.start, change, |g, at| Some((p.pc_addr(g, at, office_pc)?, "VALID")));
                let other = client(world::BOT_CLIENTS, g.rng.gen_range(0..world::BOT_CLIENTS.len()), 2);
                let then = Use::by_hand(key, other, p.hours, p.per_hour, Some(p.trading.clone()));
                then.run(g, change, until, |g, at| Some((p.pc_addr(g, at, office_pc)?, "VALID")));
            }
            "strategy_change" => {
                // Same person, same place, same program; new markets, bigger orders, more often.
                first.run(g, g.start, change, |g, at| Some((p.pc_addr(g, at, office_pc)?, "VALID")));
                let mut t = Trading::retail(&mut g.rng);
                t.symbols = vec![world::SMALL_CAPS[g.rng.gen_range(0..world::SMALL_CAPS.len())]];
                t.orders_per_call = (p.trading.orders_per_call * 3.0).min(0.6);
                let mut then = Use::by_hand(key, p.pc_client.clone(), p.hours, p.per_hour * 2.0, Some(t));
                then.scale = g.rng.gen_range(3.0..20.0);
                then.run(g, change, until, |g, at| Some((p.pc_addr(g, at, office_pc)?, "VALID")));
            }
            _ => {
                if office_pc && g.rng.gen_bool(0.5) {
                    // The office machine runs another version of the same program.
                    first.ua = first.ua.replacen('.', ".1", 1);
                }
                first.run(g, g.start, until, |g, at| Some((p.pc_addr(g, at, office_pc)?, "VALID")));
            }
        }
    }
    if phone {
        let rate = if family == "phone_only" { p.per_hour } else { p.per_hour * 0.5 };
        let mut t = p.trading.clone();
        t.orders_per_call *= 0.5;
        Use::by_hand(key, p.phone_client.clone(), p.hours, rate, Some(t))
            .run(g, g.start, until, |g, at| Some((p.phone_addr(g, at)?, "VALID")));
    }
}

/// Pro traders' bots on cloud servers, allowlisted: one site, or two (another region or
/// provider, for failover or latency).
fn bots(g: &mut Gen<'_>, reg: &mut Registry, family: &'static str, account: &str, key: &str) -> Vec<Truth> {
    let sites = if family == "multi_cloud_bot" { 2 } else { 1 };
    let ips: Vec<IpAddr> = (0..sites)
        .map(|_| {
            let s = {
                let x = pick(&mut g.rng, world::CLOUD);
                Access::server(g, x)
            };
            g.session_addr(s, 0)
        })
        .collect();
    let allow: Vec<String> =
        ips.iter().map(|ip| if g.rng.gen_bool(0.5) { format!("{ip}/32") } else { crate::gen::ip24(*ip) }).collect();
    reg.account(account, "pro", &["KR"]);
    reg.key(key, account, &allow, None);
    let ua = client(world::BOT_CLIENTS, g.rng.gen_range(0..world::BOT_CLIENTS.len()), g.rng.gen_range(0..3));
    let bot = Use::bot(key, ua, jitter(g, 6.0, 0.7), Some(Trading::bot(&mut g.rng)));
    bot.run(g, g.start, g.end, |g, _| Some((ips[g.rng.gen_range(0..ips.len())], "VALID")));
    let p = Person::new(g, account);
    p.logins(g, g.start, g.end);
    vec![Truth::honest(key, account, "pro", family)]
}

/// A market maker: several data centres within its allowlist, high rates, many markets
/// (small caps it is mandated to quote, too).
fn market_maker(g: &mut Gen<'_>, reg: &mut Registry, account: &str, key: &str) -> Vec<Truth> {
    let sites = g.rng.gen_range(2..5);
    let ips: Vec<IpAddr> = (0..sites)
        .map(|_| {
            let s = {
                let x = pick(&mut g.rng, world::CLOUD);
                Access::server(g, x)
            };
            g.session_addr(s, 0)
        })
        .collect();
    let allow: Vec<String> = ips.iter().map(|ip| crate::gen::ip24(*ip)).collect();
    reg.account(account, "market_maker", &["KR", "SG", "JP"]);
    reg.key(key, account, &allow, None);
    let mut t = Trading::bot(&mut g.rng);
    t.symbols = world::MAJORS.iter().chain(world::SMALL_CAPS.iter().take(4)).copied().collect();
    reg.mandate(account, &t.symbols);
    t.size_ln_mu += 2.0;
    let ua = client(world::BOT_CLIENTS, g.rng.gen_range(0..world::BOT_CLIENTS.len()), 1);
    let mut bot = Use::bot(key, ua, jitter(g, 20.0, 0.5), Some(t));
    bot.calls = (10, 60);
    bot.run(g, g.start, g.end, |g, _| Some((ips[g.rng.gen_range(0..ips.len())], "VALID")));
    vec![Truth::honest(key, account, "market_maker", "market_maker")]
}

/// A corporate treasury desk: several operators at the office, each with their own tool,
/// within the office's allowlist, in office hours.
fn corporate(g: &mut Gen<'_>, reg: &mut Registry, account: &str, key: &str) -> Vec<Truth> {
    let office = {
        let x = pick(&mut g.rng, world::KR_OFFICE);
        Access::fixed(g, x)
    };
    let ip = g.session_addr(office, 0);
    reg.account(account, "corporate", &["KR"]);
    reg.key(key, account, &[crate::gen::ip24(ip)], None);
    for op in 0..g.rng.gen_range(2..5) {
        let ua = client(world::HAND_CLIENTS, op, 0);
        let t = Trading::retail(&mut g.rng);
        Use::by_hand(key, ua, Hours::office(), jitter(g, 1.0, 0.5), Some(t))
            .run(g, g.start, g.end, |_, _| Some((ip, "VALID")));
    }
    vec![Truth::honest(key, account, "corporate", "corporate_desk")]
}

/// Unrelated honest customers behind one address: an office's or a campus's NAT, a PC café.
/// Each uses their own key with their own program there, and at home.
pub fn shared_nat(g: &mut Gen<'_>, reg: &mut Registry, group: usize) -> Vec<Truth> {
    let asn = if g.rng.gen_bool(0.3) { world::KR_CAMPUS } else { pick(&mut g.rng, world::KR_OFFICE) };
    let nat = Access::fixed(g, asn);
    let members = g.rng.gen_range(4..12);
    let mut out = Vec::new();
    for m in 0..members {
        let account = format!("nat-{group:03}-{m}");
        let key = format!("key-nat-{group:03}-{m}");
        let mut p = Person::new(g, &account);
        p.office = Some(nat);
        reg.account(&account, "retail", &["KR"]);
        reg.key(&key, &account, &[], None);
        person_uses(g, &p, &key, "home_and_office", g.end);
        p.logins(g, g.start, g.end);
        out.push(Truth::honest(&key, &account, "retail", "shared_nat"));
    }
    out
}

/// A household: two to four people, each with their own account and key, on one home line; the
/// family PC (one device, often one program) that some of them share; one carrier's family plan;
/// sometimes the same coins, talked over at dinner.
pub fn household(g: &mut Gen<'_>, reg: &mut Registry, h: usize) -> Vec<Truth> {
    let home = {
        let asn = pick(&mut g.rng, world::KR_FIXED);
        Access::line(g, asn)
    };
    let carrier = pick(&mut g.rng, world::KR_MOBILE);
    let family_pc = client(world::BOT_CLIENTS, g.rng.gen_range(0..world::BOT_CLIENTS.len()), g.rng.gen_range(0..3));
    let family_device = format!("pc-{:012x}", g.rng.gen::<u64>() & 0xffff_ffff_ffff);
    let coins = g.rng.gen_bool(0.4).then(|| Trading::retail(&mut g.rng));
    let mut out = Vec::new();
    for m in 0..g.rng.gen_range(2..5) {
        let account = format!("fam-{h:03}-{m}");
        let key = format!("key-fam-{h:03}-{m}");
        let mut p = Person::new(g, &account);
        p.home = home;
        if g.rng.gen_bool(0.7) {
            p.carrier = carrier;
        }
        if g.rng.gen_bool(0.6) {
            p.pc_client = family_pc.clone();
            p.pc_device = family_device.clone();
        }
        if let Some(t) = &coins {
            p.trading.symbols = t.symbols.clone();
        }
        let family = if g.rng.gen_bool(0.4) {
            let asn = pick(&mut g.rng, world::KR_OFFICE);
            p.office = Some(Access::fixed(g, asn));
            "home_and_office"
        } else {
            "home_and_phone"
        };
        reg.account(&account, "retail", &["KR"]);
        reg.key(&key, &account, &[], None);
        person_uses(g, &p, &key, family, g.end);
        p.logins(g, g.start, g.end);
        out.push(Truth::honest(&key, &account, "retail", "family_pc"));
    }
    out
}

/// A broker's desk trading for its clients from its office (documented relationships), and
/// its own key.
pub fn broker(g: &mut Gen<'_>, reg: &mut Registry, b: usize) -> Vec<Truth> {
    let office = {
        let x = pick(&mut g.rng, world::KR_OFFICE);
        Access::fixed(g, x)
    };
    let ip = g.session_addr(office, 0);
    let account = format!("broker-{b:03}");
    reg.account(&account, "broker", &["KR"]);
    let mut out = Vec::new();
    let desk = client(world::HAND_CLIENTS, 5, 1);
    let clients = g.rng.gen_range(3..8);
    for c in 0..=clients {
        let (acct, key, segment) = if c == 0 {
            (account.clone(), format!("key-broker-{b:03}"), "broker")
        } else {
            let a = format!("client-{b:03}-{c}");
            reg.account(&a, "retail", &["KR"]);
            reg.relationship(&account, &a, "broker_client");
            (a, format!("key-client-{b:03}-{c}"), "retail")
        };
        reg.key(&key, &acct, &[], None);
        let t = Trading::retail(&mut g.rng);
        Use::by_hand(&key, desk.clone(), Hours::office(), jitter(g, 1.5, 0.5), Some(t)).run(
            g,
            g.start,
            g.end,
            |_, _| Some((ip, "VALID")),
        );
        out.push(Truth::honest(&key, &acct, segment, "broker_desk"));
    }
    out
}

/// Public Wi-Fi hotspots (subway, cafés) on the big carriers: addresses many people share.
pub fn hotspots(g: &mut Gen<'_>) -> Vec<IpAddr> {
    (0..24)
        .map(|_| {
            let asn = pick(&mut g.rng, &[(world::KT, 2), (world::SKB, 1), (world::LGU, 1)]);
            let a = Access::fixed(g, asn);
            g.session_addr(a, 0)
        })
        .collect()
}

/// Whether `ip` is within `cidr` (the simulator's own allowlist strings).
pub fn contains(cidr: &str, ip: IpAddr) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else { return false };
    let (Ok(net), Ok(bits), IpAddr::V4(ip)) = (net.parse::<std::net::Ipv4Addr>(), bits.parse::<u32>(), ip) else {
        return false;
    };
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits.min(32)) };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// Another address in the same /24 (a vendor's egress pool).
fn vary_last_octet(g: &mut Gen<'_>, ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            IpAddr::V4(std::net::Ipv4Addr::new(o[0], o[1], o[2], g.rng.gen_range(1..255)))
        }
        v6 => v6,
    }
}
