//! The run's report: one JSON document, the goals it is judged against, and a readable
//! table.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{coldstart, ingest, limiter, sync};

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub started_at: String,
    pub duration_s: f64,
    /// Seconds per part (`coldstart` includes the release build of the Lambda binaries
    /// when it was not current).
    pub part_durations_s: std::collections::BTreeMap<&'static str, f64>,
    pub machine: Machine,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest: Option<ingest::Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<sync::Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limiter: Option<limiter::Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coldstart: Option<coldstart::Report>,
    pub goals: Vec<Goal>,
}

/// Where it ran: numbers from a shared 2-core box differ from an idle one.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub load_average_start: String,
    pub load_average_end: String,
    pub git_commit: String,
    pub dynamodb: String,
}

/// One goal and how the run did against it.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub name: String,
    pub goal: String,
    pub measured: String,
    /// `None`: reported, not judged.
    pub met: Option<bool>,
}

impl Goal {
    fn judged(name: impl Into<String>, goal: &str, measured: String, met: bool) -> Goal {
        Goal {
            name: name.into(),
            goal: goal.into(),
            measured,
            met: Some(met),
        }
    }
}

/// The goals of the brief, judged on what was measured.
pub fn goals(report: &Report) -> Vec<Goal> {
    let mut goals = Vec::new();
    if let Some(i) = &report.ingest {
        goals.push(Goal::judged(
            "ingest: DynamoDB calls, first delivery",
            "≤ 1",
            format!("{}", i.first_delivery.ddb_calls_per_event),
            i.first_delivery.ddb_calls_per_event <= 1.0,
        ));
        goals.push(Goal::judged(
            "ingest: DynamoDB calls, duplicate",
            "1",
            format!("{}", i.duplicate.ddb_calls_per_event),
            i.duplicate.ddb_calls_per_event <= 1.0,
        ));
        goals.push(Goal::judged(
            "flood: DynamoDB calls and messages for refused requests",
            "0",
            format!("{} / {}", i.flood.ddb_calls, i.flood.messages_enqueued),
            i.flood.ddb_calls == 0 && i.flood.messages_enqueued == 0,
        ));
        goals.push(Goal {
            name: "flood: wrong signatures refused per second, one core".into(),
            goal: "reported".into(),
            measured: format!("{:.0}", i.flood.wrong_signature_per_s),
            met: None,
        });
    }
    if let Some(s) = &report.sync {
        for (label, round) in [("new contact", &s.new_contact), ("update", &s.update)] {
            goals.push(Goal::judged(
                format!("ingest ({label}): DynamoDB calls per event"),
                "≤ 1",
                format!("{}", round.ingest_ddb_calls_per_event),
                round.ingest_ddb_calls_per_event <= 1.0,
            ));
            goals.push(Goal::judged(
                format!("(event, vendor) delivery ({label}): DynamoDB calls, worst vendor"),
                "≤ 3",
                format!("{}", round.max_ddb_calls_per_delivery),
                round.max_ddb_calls_per_delivery <= 3.0,
            ));
            goals.push(Goal {
                name: format!("synced event in all ({label}): DynamoDB calls"),
                goal: "reported".into(),
                measured: format!("{}", round.ddb_calls_per_event_in_all),
                met: None,
            });
        }
        goals.push(Goal::judged(
            "ingest (update, an instance that has not seen the person): DynamoDB calls per event",
            "≤ 1",
            format!("{}", s.update_ingest_cold_instance),
            s.update_ingest_cold_instance <= 1.0,
        ));
        goals.push(Goal::judged(
            "sandbox vendors: rule violations",
            "0",
            s.vendor_rule_violations.to_string(),
            s.vendor_rule_violations == 0,
        ));
    }
    if let Some(l) = &report.limiter {
        goals.push(Goal::judged(
            "limiter: most requests in any 1 s",
            "≤ 10",
            l.max_in_any_1s.to_string(),
            l.max_in_any_1s <= 10,
        ));
        goals.push(Goal::judged(
            "limiter: most requests in any 60 s",
            "≤ 150",
            l.max_in_any_60s.to_string(),
            l.max_in_any_60s <= 150,
        ));
        goals.push(Goal::judged(
            "limiter: 429 answers",
            "0",
            l.responses_429.to_string(),
            l.responses_429 == 0,
        ));
        goals.push(Goal::judged(
            "limiter: utilisation of 150/min",
            "≥ 0.97",
            format!("{}", l.utilisation),
            l.utilisation >= 0.97,
        ));
        goals.push(Goal::judged(
            "limiter: DynamoDB writes per permit",
            "about 1 (≤ 1.1)",
            format!("{}", l.ddb_writes_per_permit),
            l.ddb_writes_per_permit <= 1.1,
        ));
    }
    if let Some(c) = &report.coldstart {
        for f in &c.functions {
            goals.push(Goal::judged(
                format!("cold start {}: init (median)", f.name),
                "< 30 ms",
                format!("{} ms", f.init_ms_median),
                f.init_ms_median < 30.0,
            ));
            goals.push(Goal::judged(
                format!("cold start {}: peak RSS (max of runs)", f.name),
                "< 30 MiB",
                format!("{} MiB", f.peak_rss_mib_max),
                f.peak_rss_mib_max < 30.0,
            ));
        }
    }
    goals
}

/// Columns: the first and those in `left` left-aligned (text), the others right-aligned
/// (numbers).
fn table(out: &mut String, headers: &[&str], rows: &[Vec<String>], left: &[usize]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |out: &mut String, cells: Vec<String>| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            let pad = width.saturating_sub(cell.chars().count());
            if i > 0 {
                text.push_str("  ");
            }
            if i == 0 || left.contains(&i) {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            } else {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            }
        }
        let _ = writeln!(out, "  {}", text.trim_end());
    };
    line(out, headers.iter().map(|h| (*h).to_string()).collect());
    for row in rows {
        line(out, row.clone());
    }
}

fn calls(map: &std::collections::BTreeMap<String, u64>, events: usize) -> String {
    map.iter()
        .map(|(k, v)| {
            format!(
                "{k} {}",
                crate::stats::round(*v as f64 / events.max(1) as f64, 2)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The readable table.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(
        out,
        "profile-relay benchmarks — {} · commit {} · {} CPUs · load {} → {} · {:.0} s",
        r.started_at, m.git_commit, m.cpus, m.load_average_start, m.load_average_end, r.duration_s
    );
    let parts: Vec<String> = r
        .part_durations_s
        .iter()
        .map(|(part, s)| format!("{part} {s:.0} s"))
        .collect();
    let _ = writeln!(out, "time per part: {}\n", parts.join(", "));
    if let Some(i) = &r.ingest {
        let _ = writeln!(
            out,
            "Ingest — signed `{}` webhooks through the Lambda HTTP service (in process), {} in flight, {} events per phase, DynamoDB Local, memory queue",
            i.source, i.concurrency, i.first_delivery.events
        );
        let rows: Vec<Vec<String>> = [
            ("first delivery", &i.first_delivery),
            ("duplicate", &i.duplicate),
        ]
        .iter()
        .map(|(name, p)| {
            vec![
                (*name).to_string(),
                format!("{:.2}", p.p50_ms),
                format!("{:.2}", p.p99_ms),
                format!("{:.0}", p.events_per_s),
                format!("{:.2}", p.ddb_calls_per_event),
                calls(&p.ddb_calls, p.events),
            ]
        })
        .collect();
        table(
            &mut out,
            &[
                "",
                "p50 ms",
                "p99 ms",
                "events/s",
                "DynamoDB/event",
                "by operation",
            ],
            &rows,
            &[5],
        );
        let f = &i.flood;
        let _ = writeln!(
            out,
            "  messages enqueued: {} by the first deliveries, {} by the duplicates (claims are written once and never confirmed, so a duplicate enqueues its own copy; the worker recognises it for one link call)",
            i.messages_enqueued, i.messages_enqueued_by_duplicates
        );
        let _ = writeln!(
            out,
            "  flood of refused requests, one core, {} per kind: wrong signature {:.0}/s, unsigned {:.0}/s; DynamoDB calls {}, messages enqueued {}, statuses {:?}",
            f.requests,
            f.wrong_signature_per_s,
            f.unsigned_per_s,
            f.ddb_calls,
            f.messages_enqueued,
            f.statuses
        );
        out.push('\n');
    }
    if let Some(s) = &r.sync {
        let _ = writeln!(
            out,
            "Synced event — DynamoDB calls per event: ingest (the claim with its log entry and its person), then per (event, vendor) delivery `all = store (link: lease + commit carrying the log record; log record alone) + limiter [vendor HTTP calls]`; {} contacts, production assembly (delivery log on), production schedules, one message at a time",
            s.contacts
        );
        let cell = |c: Option<&sync::VendorCost>| {
            c.map_or("—".to_string(), |c| {
                format!(
                    "{:.2} = {:.2} ({:.2} + {:.2}) + {:.2} [{:.1}]",
                    c.ddb_calls,
                    c.store_calls,
                    c.link_calls,
                    c.log_calls,
                    c.limiter_calls,
                    c.vendor_calls
                )
            })
        };
        let mut rows = Vec::new();
        for (name, round) in [("new contact", &s.new_contact), ("update", &s.update)] {
            let mut row = vec![
                name.to_string(),
                format!("{:.2}", round.ingest_ddb_calls_per_event),
            ];
            for v in &s.vendors {
                row.push(cell(round.per_vendor.get(v)));
            }
            row.push(format!("{:.2}", round.ddb_calls_per_event_in_all));
            rows.push(row);
        }
        let mut row = vec!["redelivery".to_string(), "—".to_string()];
        for v in &s.vendors {
            row.push(cell(s.redelivery.get(v)));
        }
        let total: f64 = s.redelivery.values().map(|c| c.ddb_calls).sum();
        row.push(format!("{total:.2}"));
        rows.push(row);
        let mut headers = vec!["", "ingest"];
        headers.extend(s.vendors.iter().copied());
        headers.push("in all");
        table(&mut out, &headers, &rows, &[]);
        let _ = writeln!(
            out,
            "  update ingested by another instance (none of the persons seen there): {:.2} DynamoDB calls per event",
            s.update_ingest_cold_instance
        );
        let b = &s.new_contact_batched;
        let _ = writeln!(
            out,
            "  new contacts in batches of {} (as Lambda gets them): {:.2} Hood calls per contact ({:.2} of them lookups); {} contacts synced into Hood in {:.1} s = {:.1} per minute (Hood's limit: {:.0} one-call contacts per minute); {:.2} DynamoDB calls per (event, vendor) delivery, all vendors",
            b.batch_size,
            b.hood_calls_per_contact,
            b.hood_lookups_per_contact,
            b.contacts,
            b.seconds,
            b.hood_contacts_per_minute,
            b.physical_limit_per_minute,
            b.ddb_calls_per_delivery
        );
        for storm in &s.mixed_storm {
            let per: Vec<String> = storm
                .vendor_calls_per_change
                .iter()
                .map(|(v, n)| format!("{v} {n:.2}"))
                .collect();
            let _ = writeln!(
                out,
                "  mixed storm, {} (as Lambda gets them, batches of 10): {} persons × 3 changes back to back: vendor calls per contact change {:.2} ({}); {} deliveries handed on to wait; drained in {:.1} s",
                storm.worker,
                storm.persons,
                storm.vendor_calls_per_change_in_all,
                per.join(", "),
                storm.deferred,
                storm.seconds
            );
        }
        let _ = writeln!(
            out,
            "  sandbox rule violations {}, dead letters {}\n",
            s.vendor_rule_violations, s.dead_letters
        );
    }
    if let Some(l) = &r.limiter {
        let _ = writeln!(
            out,
            "Limiter — {} workers, {} s, Hood schedule from 10/1 s and 150/1 min: T = {} ms, tau = {} ms (burst {}), slot wait ≤ {} ms, against a server enforcing 10/s and 150/min fixed windows",
            l.workers,
            l.seconds,
            l.emission_interval_ms,
            l.tolerance_ms,
            l.burst,
            l.max_slot_wait_ms
        );
        let rows = vec![
            vec!["requests".into(), l.requests.to_string(), String::new()],
            vec![
                "most in any 1 s (sliding)".into(),
                l.max_in_any_1s.to_string(),
                "≤ 10".into(),
            ],
            vec![
                "most in any 60 s (sliding)".into(),
                l.max_in_any_60s.to_string(),
                "≤ 150".into(),
            ],
            vec![
                "most in a fixed second / minute".into(),
                format!("{} / {}", l.max_in_fixed_second, l.max_in_fixed_minute),
                "≤ 10 / 150".into(),
            ],
            vec![
                "429 answers".into(),
                l.responses_429.to_string(),
                "0".into(),
            ],
            vec![
                "requests per minute (after the first burst)".into(),
                format!("{:.1}", l.steady_requests_per_minute),
                String::new(),
            ],
            vec![
                "utilisation of 150/min".into(),
                format!(
                    "{:.3} (schedule ceiling {:.3})",
                    l.utilisation, l.utilisation_ceiling
                ),
                "≥ 0.97".into(),
            ],
            vec![
                "DynamoDB writes per permit".into(),
                format!("{:.2}", l.ddb_writes_per_permit),
                "≈ 1".into(),
            ],
            vec![
                "  of which deferrals (slot > wait) per permit".into(),
                format!("{:.2}", l.deferrals_per_permit),
                String::new(),
            ],
            vec![
                "  DynamoDB writes per reservation asked".into(),
                format!("{:.3}", l.ddb_writes_per_reservation),
                String::new(),
            ],
        ];
        table(&mut out, &["", "measured", "goal"], &rows, &[2]);
        out.push('\n');
    }
    if let Some(c) = &r.coldstart {
        let runs = c.functions.first().map_or(0, |f| f.runs);
        let _ = writeln!(
            out,
            "Cold start — release binaries against a local Lambda Runtime API, median of {runs} runs"
        );
        let rows: Vec<Vec<String>> = c
            .functions
            .iter()
            .map(|f| {
                vec![
                    f.name.to_string(),
                    format!("{:.1}", f.init_ms_median),
                    format!("{:.1}", f.first_event_ms_median),
                    format!("{:.1}", f.second_event_ms_median),
                    format!("{:.1} / {:.1}", f.peak_rss_mib_median, f.peak_rss_mib_max),
                    format!("{:.2}", f.binary_mib),
                    f.outcome.clone(),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "",
                "init ms",
                "first event ms",
                "second event ms",
                "peak RSS MiB (median / max)",
                "binary MiB",
                "answers",
            ],
            &rows,
            &[6],
        );
        out.push('\n');
    }
    let _ = writeln!(out, "Goals");
    let rows: Vec<Vec<String>> = r
        .goals
        .iter()
        .map(|g| {
            vec![
                g.name.clone(),
                g.measured.clone(),
                g.goal.clone(),
                match g.met {
                    Some(true) => "met".into(),
                    Some(false) => "MISSED".into(),
                    None => "—".into(),
                },
            ]
        })
        .collect();
    table(&mut out, &["", "measured", "goal", ""], &rows, &[2, 3]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut out = String::new();
        table(
            &mut out,
            &["", "a", "bb"],
            &[
                vec!["row".into(), "1".into(), "22".into()],
                vec!["longer".into(), "333".into(), "4".into()],
            ],
            &[2],
        );
        assert_eq!(
            out,
            "            a  bb\n  row       1  22\n  longer  333  4\n"
        );
    }
}
